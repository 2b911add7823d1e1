"""The GraphQL endpoint: Strawberry's ASGI view with authentication and the request context.

HTTP requests are authenticated before Strawberry handles them, except the GET that renders
GraphiQL. A request without valid credentials gets HTTP 401 with a GraphQL error whose
``extensions.code`` is ``UNAUTHENTICATED``. A valid user who is not allowed in gets HTTP 403
coded ``FORBIDDEN``, and a request that cannot be checked now (Google's certificates cannot be
fetched) gets HTTP 503 coded ``UNAVAILABLE``.

Websockets authenticate with the ``authorization`` field of the ``connection_init`` payload.
A graphql-transport-ws connection is closed with 4401 for missing or invalid credentials and
with 4403 for a user who is not allowed in. Strawberry 0.341 closes with 4403 on
ConnectionRejectionError, so :class:`TransportWSHandler` closes with 4401 itself.
A rejected legacy graphql-ws connection gets ``connection_error``.

Each websocket runs at most ``Settings.max_ws_operations`` operations at once; another
``subscribe`` gets an ``error`` message for its id.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, cast

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET, UnsetType

from api.auth import AuthenticationError, Authenticator, AuthUnavailableError, ForbiddenError
from api.graphiql import graphiql_response
from schema.context import RequestContext

logger = logging.getLogger(__name__)

#: Default of ``Settings.connection_init_timeout_s``; each websocket handler applies the setting.
CONNECTION_INIT_TIMEOUT_S = 5


def unauthenticated_response(message: str) -> Response:
    """Return the HTTP 401 response with a GraphQL error coded UNAUTHENTICATED."""
    body = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
    }
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def error_response(status_code: int, code: str, message: str) -> Response:
    """Return an HTTP error response with one GraphQL error coded ``code``."""
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status_code)


class WebSocketUnauthenticated(Exception):
    """Raised by ``on_ws_connect`` for graphql-transport-ws, which then closes with 4401."""


class TransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """graphql-transport-ws with the limits of the settings and 4401 for bad tokens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.context.runtime.settings
        self.max_subscriptions_per_connection = settings.max_ws_operations
        self.connection_init_wait_timeout = timedelta(seconds=settings.connection_init_timeout_s)
        self.context.closes_unauthenticated = True

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except WebSocketUnauthenticated:
            await self.websocket.close(code=4401, reason="Unauthorized")


class LegacyWSHandler(BaseGraphQLWSHandler[RequestContext, None]):
    """Legacy graphql-ws with the same limits; a connection that is not acknowledged within
    ``Settings.connection_init_timeout_s`` is closed with 4408, as graphql-transport-ws is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_subscriptions_per_connection = self.context.runtime.settings.max_ws_operations

    async def handle(self) -> None:
        timer = asyncio.create_task(self._close_unless_acknowledged())
        try:
            await super().handle()
        finally:
            timer.cancel()

    async def _close_unless_acknowledged(self) -> None:
        await asyncio.sleep(self.context.runtime.settings.connection_init_timeout_s)
        if not self.connection_acknowledged:
            logger.info("legacy websocket closed: no connection_init in time")
            await self.websocket.close(code=4408, reason="Connection initialisation timeout")


class GraphQLApp(GraphQL[RequestContext, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, schema: BaseSchema, authenticator: Authenticator) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            connection_init_wait_timeout=timedelta(seconds=CONNECTION_INIT_TIMEOUT_S),
        )
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._renders_ide(scope, receive):
            await super().__call__(scope, receive, send)
            return
        try:
            principal = await self._authenticator.authenticate(
                Headers(scope=scope).get("authorization")
            )
        except AuthenticationError as exc:
            logger.info("HTTP request from %s rejected: %s", _client(scope), exc)
            await unauthenticated_response(str(exc))(scope, receive, send)
            return
        except ForbiddenError as exc:
            logger.info("HTTP request from %s forbidden: %s", _client(scope), exc)
            await error_response(403, "FORBIDDEN", str(exc))(scope, receive, send)
            return
        except AuthUnavailableError as exc:
            logger.warning("HTTP request from %s not authenticated: %s", _client(scope), exc)
            await error_response(503, "UNAVAILABLE", str(exc))(scope, receive, send)
            return
        Request(scope, receive).state.user_id = principal.user_id
        await super().__call__(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        # A page of this project's own that loads GraphiQL from this server, not unpkg.com.
        return graphiql_response(request.url.path)

    def _renders_ide(self, scope: Scope, receive: Receive) -> bool:
        request = self.request_adapter_class(Request(scope, receive))
        return bool(self.graphql_ide) and self.should_render_graphql_ide(request)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        state = request.app.state
        # Only HTTP requests are authenticated by now; a websocket is in on_ws_connect.
        is_http = request.scope["type"] == "http"
        return RequestContext(
            runtime=state.runtime,
            hub=state.hub,
            user_id=getattr(request.state, "user_id", None) if is_http else None,
        )

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        authorization = params.get("authorization", params.get("Authorization"))
        try:
            principal = await self._authenticator.authenticate(
                authorization if isinstance(authorization, str) else None
            )
        except AuthenticationError as exc:
            logger.info("websocket connection rejected: %s", exc)
            if context.closes_unauthenticated:
                raise WebSocketUnauthenticated(str(exc)) from exc
            raise ConnectionRejectionError(
                {"message": str(exc), "code": "UNAUTHENTICATED"}
            ) from exc
        except ForbiddenError as exc:
            logger.info("websocket connection forbidden: %s", exc)
            raise ConnectionRejectionError({"message": str(exc), "code": "FORBIDDEN"}) from exc
        except AuthUnavailableError as exc:
            # NOTE: graphql-transport-ws closes this with 4403 too, because the protocol has
            # no code for a temporary failure of the check.
            logger.warning("websocket connection not authenticated: %s", exc)
            raise ConnectionRejectionError({"message": str(exc), "code": "UNAVAILABLE"}) from exc
        context.user_id = principal.user_id
        logger.debug("user %s websocket connection accepted", principal.user_id)
        # UNSET makes Strawberry send connection_ack without a payload.
        return cast(UnsetType, UNSET)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown client"
