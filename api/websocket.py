"""Websocket behaviour added to Strawberry's protocol handlers: keepalive, error isolation,
and closing every connection with 1001 when the process shuts down.

graphql-transport-ws: the server sends ``ping`` every ``keepalive_s`` after ``connection_ack``.
Strawberry 0.341 sends none, and a client may treat a silent socket as dead. An operation whose
document does not parse gets an ``error`` message for its id, where Strawberry would close the
whole socket with 4400, so one bad operation never ends the other operations of the socket.
A ``next`` message whose payload has only ``data`` is encoded once per ``data`` object: the
subscribers of one operation share the result of each event (see ``schema.sharing``), so the
payload text is reused and only the operation id differs between their frames.
Legacy graphql-ws: Strawberry's own ``ka`` messages, at the same interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.base import BaseView
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from schema.sharing import IdentityCache

logger = logging.getLogger(__name__)

#: Close code sent to every websocket when the API shuts down (RFC 6455: going away).
GOING_AWAY = 1001

#: JSON text of recent ``next`` payloads, keyed by the identity of their ``data`` object.
_encoded_payloads: IdentityCache[str] = IdentityCache()


def encode_next(view: BaseView[Any], message: Message) -> str | None:
    """Return the text frame of a ``next`` message that carries only ``data``, else None.

    The payload text is cached by the identity of ``data``, so ``data`` must not change once
    sent. The frame is the one ``view.encode_json(message)`` returns when ``encode_json``
    writes compact JSON (Strawberry's default) and the message lists id, type, payload in
    that order, as Strawberry's ``Operation.send_next`` does.
    """
    if message["type"] != "next" or message["payload"].keys() != {"data"}:
        return None
    data = message["payload"]["data"]
    payload = _encoded_payloads.get(data)
    if payload is None:
        encoded = view.encode_json(message["payload"])
        if not isinstance(encoded, str):
            return None
        payload = encoded
        _encoded_payloads.put(data, payload)
    operation_id = view.encode_json(message["id"])
    if not isinstance(operation_id, str):
        return None
    return '{"id":' + operation_id + ',"type":"next","payload":' + payload + "}"


async def _send_text(websocket: ASGIWebSocketAdapter, text: str) -> None:
    # The same translation as Strawberry's ASGIWebSocketAdapter.send_json.
    try:
        await websocket.ws.send_text(text)
    except WebSocketDisconnect as exc:
        raise WebSocketDisconnected from exc


class OpenWebsockets:
    """The protocol handlers of the open websockets of one app."""

    def __init__(self, keepalive_s: float) -> None:
        #: Seconds between keepalive messages (graphql-transport-ws ``ping``, legacy ``ka``).
        self.keepalive_s = keepalive_s
        self._handlers: set[TransportWSLifecycle | LegacyWSLifecycle] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._handlers)

    def add(self, handler: TransportWSLifecycle | LegacyWSLifecycle) -> None:
        self._handlers.add(handler)

    def discard(self, handler: TransportWSLifecycle | LegacyWSLifecycle) -> None:
        self._handlers.discard(handler)

    async def close_all(self, reason: str) -> int:
        """Stop every operation and close every websocket with 1001; return how many."""
        self.closing = True
        handlers = list(self._handlers)
        await asyncio.gather(*(handler.go_away(reason) for handler in handlers))
        return len(handlers)


def _registry(websocket: object) -> OpenWebsockets | None:
    if not isinstance(websocket, ASGIWebSocketAdapter):
        return None
    registry = getattr(websocket.ws.app.state, "websockets", None)
    return registry if isinstance(registry, OpenWebsockets) else None


async def _handle_registered(
    handler: Any, registry: OpenWebsockets | None, handle: Callable[[], Awaitable[None]]
) -> None:
    """Run ``handle`` while ``handler`` is listed in ``registry``, so a shutdown reaches it.

    A websocket that arrives while the server shuts down is closed at once with 1001.
    """
    if registry is not None and registry.closing:
        await _close(handler.websocket, "server shutting down")
        return
    if registry is not None:
        registry.add(handler)
    try:
        await handle()
    finally:
        if registry is not None:
            registry.discard(handler)


async def _close(websocket: AsyncWebSocketAdapter, reason: str) -> None:
    # The client may be gone already, or Strawberry may have closed the socket itself.
    with contextlib.suppress(WebSocketDisconnected, RuntimeError, OSError):
        await websocket.close(GOING_AWAY, reason)


class TransportWSLifecycle(BaseGraphQLTransportWSHandler[Any, Any]):
    """Keepalive pings, error isolation and shutdown for graphql-transport-ws; a mixin that
    :func:`serve_websockets` puts in front of the view's own handler class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registry = _registry(self.websocket)
        self._keepalive: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        await _handle_registered(self, self._registry, super().handle)

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._registry and self._keepalive is None:
            self._keepalive = asyncio.create_task(self._send_pings(), name="websocket-keepalive")

    async def _send_pings(self) -> None:
        assert self._registry is not None
        with contextlib.suppress(WebSocketDisconnected, RuntimeError, OSError):
            while True:
                await asyncio.sleep(self._registry.keepalive_s)
                await self.send_message({"type": "ping"})

    async def send_message(self, message: Message) -> None:
        if isinstance(self.websocket, ASGIWebSocketAdapter):
            frame = encode_next(self.view, message)
            if frame is not None:
                await _send_text(self.websocket, frame)
                return
        await super().send_message(message)

    async def shutdown(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        await super().shutdown()

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        return None

    async def go_away(self, reason: str) -> None:
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await _close(self.websocket, reason)


class LegacyWSLifecycle(BaseGraphQLWSHandler[Any, Any]):
    """Shutdown for legacy graphql-ws; a mixin like :class:`TransportWSLifecycle`."""

    async def handle(self) -> None:
        await _handle_registered(self, _registry(self.websocket), super().handle)

    async def go_away(self, reason: str) -> None:
        await self.cleanup()
        await _close(self.websocket, reason)


def serve_websockets(view: GraphQL[Any, Any], registry: OpenWebsockets) -> None:
    """Add keepalive and the shutdown behaviour to the websocket handlers of ``view``.

    The view's app must store ``registry`` as ``app.state.websockets``.
    """
    transport = view.graphql_transport_ws_handler_class
    legacy = view.graphql_ws_handler_class
    view.graphql_transport_ws_handler_class = type(
        f"Served{transport.__name__}", (TransportWSLifecycle, transport), {}
    )
    view.graphql_ws_handler_class = type(
        f"Served{legacy.__name__}", (LegacyWSLifecycle, legacy), {}
    )
    view.keep_alive = True
    view.keep_alive_interval = registry.keepalive_s
