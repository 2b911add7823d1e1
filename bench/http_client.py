"""A minimal HTTP/1.1 keep-alive client for load generation.

With 50 concurrent clients, the httpx connection pool used more CPU than the API it loaded:
80 % of a core against 31 % for uvicorn in a 5 s run of ``{ __typename }`` on 2 cores. The
latency it measured was then mostly its own. This client keeps one connection per load
client and parses only the status line, ``Content-Length`` and the body.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class HttpError(Exception):
    """The server returned a status other than 200, or a response without Content-Length."""


class KeepAliveClient:
    """One persistent connection to ``host:port``; requests on it are sequential."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def post_json(self, path: str, payload: Any, headers: dict[str, str]) -> Any:
        """POST ``payload`` as JSON and return the decoded JSON response body."""
        body = json.dumps(payload).encode()
        lines = [
            f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()), "", "",
        ]  # fmt: skip
        reader, writer = await self._connection()
        writer.write("\r\n".join(lines).encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
        length = {name.strip().lower(): value.strip() for name, value in fields.items()}.get(
            "content-length"
        )
        if length is None:
            raise HttpError(f"response to POST {path} has no Content-Length: {head[:3]!r}")
        data = await reader.readexactly(int(length))
        if status != 200:
            raise HttpError(f"POST {path} returned {status}: {data[:200]!r}")
        return json.loads(data)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
