"""A small synchronous GraphQL client: HTTP for queries and mutations, graphql-transport-ws
for subscriptions.

Errors, from :class:`ClientError`:

* :class:`ConnectionFailed`: the API cannot be reached or returned no GraphQL response.
* :class:`Unauthenticated`: the API rejected the token (HTTP 401 or 403, close code 4401 or
  4403).
* :class:`GraphQLFailed`: the response carries GraphQL errors; ``code`` is the first one's
  ``extensions.code``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import httpx
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import connect
from websockets.typing import Subprotocol

#: Timeout of each HTTP request and of the websocket handshake, in seconds.
REQUEST_TIMEOUT_S = 30.0
#: Close codes of graphql-transport-ws for a rejected ``connection_init``.
REJECTED_CLOSE_CODES = {4401, 4403}


class ClientError(Exception):
    """Root of the client's errors; the message is for the user."""


class ConnectionFailed(ClientError):
    pass


class Unauthenticated(ClientError):
    pass


class GraphQLFailed(ClientError):
    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


def bearer(token: str) -> str:
    """Return the Authorization value of ``token``, which may already start with Bearer."""
    token = token.strip()
    if token.lower().startswith("bearer "):
        return token
    return f"Bearer {token}"


def websocket_url(api_url: str) -> str:
    """Return the ``ws://`` or ``wss://`` address of ``/graphql`` on the API at ``api_url``."""
    url = httpx.URL(api_url.rstrip("/") + "/graphql")
    return str(url.copy_with(scheme="wss" if url.scheme == "https" else "ws"))


def _raise_errors(errors: list[dict[str, Any]]) -> None:
    first = errors[0]
    code = (first.get("extensions") or {}).get("code")
    message = str(first.get("message", "unknown error"))
    if code in {"UNAUTHENTICATED", "FORBIDDEN"}:
        raise Unauthenticated(f"sign-in rejected: {message}")
    raise GraphQLFailed(f"{code}: {message}" if code else message, code)


class Client:
    """GraphQL client of the API at ``api_url`` (for example ``http://127.0.0.1:8000``)."""

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._authorization = bearer(token)
        self._http = httpx.Client(
            base_url=self.api_url,
            timeout=REQUEST_TIMEOUT_S,
            headers={"Authorization": self._authorization},
        )

    def close(self) -> None:
        self._http.close()

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one operation and return its ``data``; raises a :class:`ClientError`."""
        try:
            response = self._http.post(
                "/graphql", json={"query": query, "variables": variables or {}}
            )
            body = response.json()
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach the API at {self.api_url}: {exc}") from exc
        except ValueError as exc:
            raise ConnectionFailed(
                f"the API at {self.api_url} returned HTTP {response.status_code} without JSON; "
                "check --api-url"
            ) from exc
        if not isinstance(body, dict):
            raise ConnectionFailed(f"the API at {self.api_url} returned {body!r}")
        if body.get("errors"):
            _raise_errors(body["errors"])
        return cast(dict[str, Any], body["data"])

    def subscribe(
        self, query: str, variables: dict[str, Any], *, timeout_s: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the ``data`` of each event of one subscription until the server completes it.

        ``timeout_s`` limits the wait for each message, in seconds (None: no limit).
        """
        try:
            with connect(
                websocket_url(self.api_url),
                subprotocols=[Subprotocol("graphql-transport-ws")],
                open_timeout=REQUEST_TIMEOUT_S,
            ) as socket:
                init = {
                    "type": "connection_init",
                    "payload": {"authorization": self._authorization},
                }
                socket.send(json.dumps(init))
                subscribe = {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables},
                }
                acknowledged = False
                while True:
                    message = json.loads(socket.recv(timeout_s))
                    kind = message.get("type")
                    if kind == "ping":
                        socket.send(json.dumps({"type": "pong"}))
                    elif kind == "connection_ack" and not acknowledged:
                        acknowledged = True
                        socket.send(json.dumps(subscribe))
                    elif kind == "next":
                        payload = message["payload"]
                        if payload.get("errors"):
                            _raise_errors(payload["errors"])
                        yield cast(dict[str, Any], payload["data"])
                    elif kind == "error":
                        _raise_errors(message["payload"])
                    elif kind == "complete":
                        return
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code in REJECTED_CLOSE_CODES:
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                raise Unauthenticated(
                    f"sign-in rejected by the websocket ({code} {reason})"
                ) from exc
            raise ConnectionFailed(f"the websocket to {self.api_url} closed: {exc}") from exc
        except TimeoutError as exc:
            raise ConnectionFailed(f"no message from {self.api_url} within {timeout_s} s") from exc
        except (OSError, WebSocketException) as exc:
            raise ConnectionFailed(f"cannot open the websocket to {self.api_url}: {exc}") from exc
