"""GraphiQL served from this server alone, so it works without internet access.

Strawberry's own GraphiQL page loads its scripts from unpkg.com. This module renders a page
of its own that loads the same releases from ``/static/vendor/``, which serves files of the npm
packages pinned in ``web/package.json``. ``python -m scripts.services install`` installs them
into ``.state/web/node_modules`` (another folder with ``MAILSCAN_WEB_MODULES``). Each tag
carries the Subresource Integrity hash of the unpkg.com file, so the browser rejects a local
file that differs from the published release.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

#: Folder of the project's browser files (dashboard, GraphiQL start script).
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Default ``node_modules`` folder of the packages in ``web/package.json``.
DEFAULT_WEB_MODULES = Path(__file__).resolve().parent.parent / ".state" / "web" / "node_modules"
#: URL prefix of the vendored package files.
VENDOR_PREFIX = "/static/vendor/"


@dataclass(frozen=True)
class VendorFile:
    """A file of an npm package, by its path under ``node_modules``."""

    path: str
    #: Subresource Integrity hash of the same file on unpkg.com.
    integrity: str

    @property
    def url(self) -> str:
        return VENDOR_PREFIX + self.path


REACT = VendorFile(
    "react/umd/react.production.min.js",
    "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
)
REACT_DOM = VendorFile(
    "react-dom/umd/react-dom.production.min.js",
    "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
)
GRAPHIQL_JS = VendorFile(
    "graphiql/graphiql.min.js",
    "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
)
GRAPHIQL_CSS = VendorFile(
    "graphiql/graphiql.min.css",
    "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
)
EXPLORER_JS = VendorFile(
    "@graphiql/plugin-explorer/dist/index.umd.js",
    "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
)
EXPLORER_CSS = VendorFile(
    "@graphiql/plugin-explorer/dist/style.css",
    "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
)

#: Scripts in load order: React first, then GraphiQL, then its plugin.
SCRIPTS = (REACT, REACT_DOM, GRAPHIQL_JS, EXPLORER_JS)
STYLESHEETS = (GRAPHIQL_CSS, EXPLORER_CSS)
#: The only files ``/static/vendor/`` serves, by path under ``node_modules``.
VENDOR_FILES = {file.path: file for file in (*SCRIPTS, *STYLESHEETS)}

INSTALL_HINT = "run 'python -m scripts.services install' (it runs 'npm ci' for web/package.json)"


def web_modules() -> Path:
    """Return the ``node_modules`` folder of the vendored packages."""
    configured = os.environ.get("MAILSCAN_WEB_MODULES")
    return Path(configured) if configured else DEFAULT_WEB_MODULES


def missing_vendor_files() -> list[str]:
    """Return the paths under ``node_modules`` of the vendored files that are not installed."""
    root = web_modules()
    return [path for path in VENDOR_FILES if not (root / path).is_file()]


def render_graphiql_page(endpoint: str) -> str:
    """Return the GraphiQL page for the GraphQL endpoint at path ``endpoint``."""
    stylesheets = "\n".join(
        f'    <link rel="stylesheet" href="{file.url}" integrity="{file.integrity}">'
        for file in STYLESHEETS
    )
    scripts = "\n".join(
        f'    <script src="{file.url}" integrity="{file.integrity}"></script>' for file in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>mailscan GraphiQL</title>
{stylesheets}
    <link rel="stylesheet" href="/static/graphiql.css">
  </head>
  <body>
    <div id="graphiql" data-endpoint="{html.escape(endpoint)}">Loading GraphiQL…</div>
{scripts}
    <script src="/static/graphiql.js"></script>
  </body>
</html>
"""


def graphiql_response(endpoint: str) -> Response:
    """Return the GraphiQL page, or HTTP 503 naming the install step when files are missing."""
    missing = missing_vendor_files()
    if missing:
        return PlainTextResponse(
            f"GraphiQL is not installed: {', '.join(missing)} missing under {web_modules()}; "
            f"{INSTALL_HINT}",
            status_code=503,
        )
    return HTMLResponse(render_graphiql_page(endpoint))


async def vendor_file(request: Request) -> Response:
    """Serve one of :data:`VENDOR_FILES`; any other path is 404."""
    path = request.path_params["path"]
    if path not in VENDOR_FILES:
        return PlainTextResponse(f"no vendored file {path!r}", status_code=404)
    file = web_modules() / path
    if not file.is_file():
        return PlainTextResponse(f"{path} is not installed; {INSTALL_HINT}", status_code=503)
    return FileResponse(file)
