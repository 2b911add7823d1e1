"""GraphQL clients for tests against the real uvicorn server: HTTP and both websocket protocols."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


def bearer(user_id: str) -> str:
    return f"Bearer dev:{user_id}"


async def graphql(
    client: httpx.AsyncClient, user_id: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST one operation and return its ``data``; fails the test on any GraphQL error."""
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": bearer(user_id)},
    )
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def subscribe(
    ws_url: str,
    user_id: str,
    query: str,
    variables: dict[str, Any],
    *,
    protocol: str = TRANSPORT_WS,
    timeout_s: float = 120.0,
) -> AsyncIterator[dict[str, Any]]:
    """Yield each ``data`` payload of one subscription until the server completes it."""
    async with websockets.connect(ws_url, subprotocols=[protocol]) as socket:  # type: ignore[list-item]
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": bearer(user_id)}})
        )
        while True:
            ack = json.loads(await asyncio.wait_for(socket.recv(), timeout_s))
            if ack["type"] == "connection_ack":
                break
            assert ack["type"] in {"ka", "ping"}, ack
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        await socket.send(
            json.dumps(
                {"id": "1", "type": start, "payload": {"query": query, "variables": variables}}
            )
        )
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout_s))
            kind = message["type"]
            if kind in {"ka", "ping", "pong"}:
                if kind == "ping":
                    await socket.send(json.dumps({"type": "pong"}))
                continue
            if kind in {"next", "data"}:
                payload = message["payload"]
                assert not payload.get("errors"), payload
                yield payload["data"]
                continue
            if kind == "complete":
                return
            raise AssertionError(f"unexpected websocket message {message!r}")
