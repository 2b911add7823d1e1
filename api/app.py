"""The Starlette application: ``uvicorn api.app:create_app --factory``.

Routes: ``/graphql`` (HTTP, GraphiQL and websockets), ``/healthz``, ``/readyz``, ``/metrics``, the
dashboard at ``/`` with its ``/static/`` files, and the REST compatibility routes under ``/api/``.
The lifespan opens the process's connections and its progress hub, and closes both at
shutdown. On SIGTERM every websocket is closed with 1001 first (see ``api.shutdown``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from api.auth import create_authenticator
from api.dashboard import web_routes
from api.health import healthz, readyz
from api.metrics import metrics
from api.rest import rest_routes
from api.shutdown import install_sigterm_handler
from api.view import GraphQLApp
from api.websocket import OpenWebsockets, serve_websockets
from jobs.hub import ProgressHub
from jobs.runtime import Runtime
from jobs.settings import Settings, get_settings
from schema import build_schema

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the API application; ``settings`` defaults to the ``MAILSCAN_*`` environment.

    The process's Dramatiq broker is moved to ``settings.redis_url`` when it uses another Redis.
    """
    settings = settings if settings is not None else get_settings()
    _configure_logging()
    # Declares the actors on the broker so that the mutations can send scan jobs.
    import jobs.actors  # noqa: F401
    from jobs.broker import configure_broker

    configure_broker(settings)

    authenticator = create_authenticator(settings)
    schema = build_schema(
        settings.max_query_depth, settings.max_query_aliases, settings.max_query_tokens
    )
    graphql = GraphQLApp(schema, authenticator)
    websockets = OpenWebsockets(keepalive_s=settings.ws_keepalive_s)
    serve_websockets(graphql, websockets)
    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *rest_routes(authenticator),
        *web_routes(),
    ]
    app = Starlette(routes=routes, lifespan=_lifespan(settings))
    app.state.websockets = websockets
    return app


def _configure_logging() -> None:
    # basicConfig does nothing when the root logger already has a handler (uvicorn's
    # --log-config, pytest), so an existing configuration wins.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def _lifespan(settings: Settings) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await Runtime.open(settings)
        hub = ProgressHub(runtime.redis, runtime.keys)
        await hub.start()
        app.state.runtime = runtime
        app.state.hub = hub
        restore_sigterm = install_sigterm_handler(app.state.websockets)
        logger.info("API started")
        try:
            yield
        finally:
            restore_sigterm()
            await hub.stop()
            await runtime.close()
            logger.info("API stopped")

    return lifespan
