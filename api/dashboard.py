"""Browser routes: the dashboard at ``/`` and the files under ``/static/``.

The dashboard is plain HTML, CSS and a script in ``api/static/`` that talk to ``/graphql``
like any other client, so the server renders nothing per user.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.graphiql import STATIC_DIR, VENDOR_PREFIX, vendor_file


async def dashboard(request: Request) -> FileResponse:
    return FileResponse(STATIC_DIR / "dashboard.html")


def web_routes() -> list[BaseRoute]:
    """Return the dashboard route, the vendored GraphiQL files and the static files."""
    return [
        Route("/", dashboard, methods=["GET"]),
        # Listed before the /static mount, which would otherwise return 404 for these paths.
        Route(VENDOR_PREFIX + "{path:path}", vendor_file, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
