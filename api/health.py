"""Liveness and readiness endpoints.

``/healthz`` reports that the process serves requests. ``/readyz`` also pings Redis, the
database and the Dramatiq broker (through the broker's own Redis client, which sends the scan
jobs), so a load balancer stops sending traffic to a replica that lost any of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import JSONResponse

from jobs.health import sending_broker
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

#: Timeout of each readiness ping, in seconds.
PING_TIMEOUT_S = 2.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ping Redis, the database and the broker; return 200, or 503 naming those that failed."""
    runtime: Runtime = request.app.state.runtime
    checks = {
        "redis": _ping(runtime.redis.ping()),
        "database": _ping(runtime.mongo.admin.command("ping")),
        # The broker's client is synchronous; a thread keeps it off the event loop.
        "broker": _ping(asyncio.to_thread(sending_broker().client.ping)),
    }
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    failed = {name: error for name, error in results.items() if error is not None}
    if failed:
        logger.warning(
            "not ready: %s", "; ".join(f"{name}: {error}" for name, error in failed.items())
        )
        # The details can name internal hosts, so only the log gets them.
        return JSONResponse({"status": "unavailable", "failed": sorted(failed)}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _ping(check: Awaitable[object]) -> str | None:
    """Return None when ``check`` succeeds in time, else a short description of the failure."""
    try:
        await asyncio.wait_for(check, PING_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {PING_TIMEOUT_S} s"
    except Exception as exc:
        # Whatever the failure, the component is not ready; the caller logs it.
        return f"{type(exc).__name__}: {exc}"
    return None
