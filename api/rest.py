"""REST compatibility layer for frontends written before the GraphQL API.

Routes (all JSON, all signed in like GraphQL with ``Authorization: Bearer <token>``):

* ``POST /api/email-accounts/{account_id}/sync-inbox`` with ``{"months": N}`` queues a scan
  like ``startScan`` and returns 202 with ``task_id``, ``status`` and ``estimated_duration``.
* ``GET /api/email-accounts/{account_id}/sync-status`` returns the account's newest task.
* ``GET /api/admin/health`` returns the facts of the GraphQL ``systemHealth`` query, for the
  users in ``MAILSCAN_ADMIN_USERS`` only.

New clients use GraphQL. These routes call the same ``jobs`` functions as the resolvers, and
only ``estimated_duration`` is computed here. Failures are
``{"error": {"code", "message", ...}}`` with the GraphQL error codes and these HTTP statuses:
400 INVALID_INPUT, 401 UNAUTHENTICATED, 403 FORBIDDEN, 404 NOT_FOUND (also another user's
account), 409 SCAN_ALREADY_RUNNING or INVALID_STATE, 429 QUOTA_EXCEEDED with ``Retry-After``,
500 INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import AuthenticationError, Authenticator, ForbiddenError
from jobs import lifecycle, queries
from jobs.documents import ScanStatus, ScanTask
from jobs.errors import (
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    RequestError,
    ScanAlreadyRunningError,
)
from jobs.health import queue_facts, running_tasks, sending_broker
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

#: Status words of the older API, by task status.
LEGACY_STATUS = {
    ScanStatus.QUEUED: "processing",
    ScanStatus.RUNNING: "processing",
    ScanStatus.CANCELLING: "processing",
    ScanStatus.COMPLETED: "completed",
    ScanStatus.FAILED: "failed",
    ScanStatus.CANCELLED: "cancelled",
}

#: HTTP status of each request error code.
HTTP_STATUS = {
    "INVALID_INPUT": 400,
    "NOT_FOUND": 404,
    "SCAN_ALREADY_RUNNING": 409,
    "INVALID_STATE": 409,
    "QUOTA_EXCEEDED": 429,
}

Handler = Callable[[Request, str], Awaitable[Response]]


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}},
        status_code=status_code,
        headers=headers,
    )


def request_error_response(error: RequestError) -> JSONResponse:
    """Return ``error`` with its GraphQL code, its HTTP status and its extra fields."""
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(error, InvalidInputError):
        extra["field"] = error.field
    if isinstance(error, ScanAlreadyRunningError):
        extra["task_id"] = error.task_id
    if isinstance(error, QuotaExceededError):
        extra["retry_after_seconds"] = error.retry_after_s
        headers["Retry-After"] = str(math.ceil(error.retry_after_s))
    status = HTTP_STATUS.get(error.code, 400)
    return error_response(status, error.code, error.message, headers or None, **extra)


def signed_in(authenticator: Authenticator, handler: Handler) -> Callable[[Request], Any]:
    """Wrap ``handler`` so that it runs with the signed-in user's id, like GraphQL requests.

    Request errors become their JSON form, and any other exception a 500 whose text names no
    internals; the log gets the traceback.
    """

    async def endpoint(request: Request) -> Response:
        try:
            principal = await authenticator.authenticate(request.headers.get("authorization"))
        except AuthenticationError as exc:
            logger.info("REST %s %s rejected: %s", request.method, request.url.path, exc)
            return error_response(
                401, "UNAUTHENTICATED", str(exc), headers={"WWW-Authenticate": "Bearer"}
            )
        except ForbiddenError as exc:
            logger.info("REST %s %s forbidden: %s", request.method, request.url.path, exc)
            return error_response(403, "FORBIDDEN", str(exc))

        try:
            return await handler(request, principal.user_id)
        except RequestError as exc:
            logger.info(
                "user %s REST %s %s rejected: %s %s",
                principal.user_id,
                request.method,
                request.url.path,
                exc.code,
                exc.message,
            )
            return request_error_response(exc)
        except Exception:
            logger.exception(
                "user %s REST %s %s failed", principal.user_id, request.method, request.url.path
            )
            return error_response(
                500, "INTERNAL_SERVER_ERROR", "internal error; the server log has the details"
            )

    return endpoint


async def read_months(request: Request) -> int:
    """Return ``months`` of the JSON body; 1 when the body or the field is absent."""
    raw = await request.body()
    if not raw.strip():
        return 1
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError("body", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInputError("body", f"request body must be a JSON object, got {body!r}")
    months = body.get("months", 1)
    # bool is a subclass of int, and true is no month count.
    if not isinstance(months, int) or isinstance(months, bool):
        raise InvalidInputError("months", f"months must be an integer, got {months!r}")
    return months


async def estimated_duration_s(
    runtime: Runtime, user_id: str, account_id: str, months: int
) -> int | None:
    """Estimate a scan's duration in seconds from the account's newest completed scan.

    The estimate scales that scan's duration by the ratio of months; None when the account
    has no completed scan with start and end times.
    """
    page = await queries.task_history(
        runtime.settings,
        user_id,
        first=1,
        after=None,
        statuses=[ScanStatus.COMPLETED],
        account_id=account_id,
    )
    if not page.items:
        return None
    done = page.items[0]
    if done.started_at is None or done.finished_at is None:
        return None
    seconds = (done.finished_at - done.started_at).total_seconds() * months / done.months
    return max(1, math.ceil(seconds))


def task_status(task: ScanTask) -> dict[str, Any]:
    """Return the task in the older API's shape, plus the fields of the GraphQL ScanTask."""
    error = task.error
    summary = task.summary
    return {
        "task_id": str(task.id),
        "account_id": task.account_id,
        "status": LEGACY_STATUS[task.status],
        "scan_status": task.status.value,
        "phase": task.phase.value,
        "progress": task.percent,
        "processed": task.processed,
        "total": task.total,
        "months": task.months,
        "attempts": task.attempts,
        "created_at": task.created_at.isoformat(),
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
        "error": error.model_dump() if error is not None else None,
        "summary": summary.model_dump() if summary is not None else None,
    }


async def sync_inbox(request: Request, user_id: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    account_id = request.path_params["account_id"]
    months = await read_months(request)
    task = await lifecycle.start_scan(runtime, user_id, account_id, months)
    estimate = await estimated_duration_s(runtime, user_id, account_id, months)
    body = {
        "task_id": str(task.id),
        "status": LEGACY_STATUS[task.status],
        "estimated_duration": estimate,
    }
    return JSONResponse(body, status_code=202)


async def sync_status(request: Request, user_id: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    account_id = request.path_params["account_id"]
    await lifecycle.find_user_account(user_id, account_id)
    page = await queries.task_history(
        runtime.settings, user_id, first=1, after=None, account_id=account_id
    )
    if not page.items:
        raise NotFoundError(f"account {account_id!r} has no scan yet; POST sync-inbox first")
    return JSONResponse(task_status(page.items[0]))


async def admin_health(request: Request, user_id: str) -> Response:
    """Return the queue, worker and progress facts that ``systemHealth`` returns.

    NOTE: this mirrors ``schema.admin.resolve_system_health`` field by field, so a field added
    to ``systemHealth`` must be added here too.
    """
    runtime: Runtime = request.app.state.runtime
    if user_id not in runtime.settings.admin_users:
        logger.info("user %s REST GET /api/admin/health forbidden: not an admin", user_id)
        return error_response(403, "FORBIDDEN", "admin access required")

    queue = await queue_facts(
        runtime.redis,
        runtime.keys,
        runtime.settings.queue_name,
        exclude_broker=sending_broker().broker_id,
    )
    hub = request.app.state.hub
    workers = [
        {"id": worker.broker_id, "last_heartbeat_seconds_ago": worker.age_s}
        for worker in queue.workers
    ]
    body = {
        "queue_name": queue.queue_name,
        "queued_messages": queue.queued,
        "delayed_messages": queue.delayed,
        "oldest_queued_seconds": queue.oldest_queued_age_s,
        "running_tasks": await running_tasks(),
        "live_workers": len(queue.workers),
        "workers": workers,
        "progress_subscribers": hub.subscriber_count,
        "progress_channels": hub.channel_count,
    }
    return JSONResponse(body)


def rest_routes(authenticator: Authenticator) -> list[Route]:
    """Return the routes of the compatibility layer, signed in with ``authenticator``."""
    prefix = "/api/email-accounts/{account_id}"
    return [
        Route(f"{prefix}/sync-inbox", signed_in(authenticator, sync_inbox), methods=["POST"]),
        Route(f"{prefix}/sync-status", signed_in(authenticator, sync_status), methods=["GET"]),
        Route("/api/admin/health", signed_in(authenticator, admin_health), methods=["GET"]),
    ]
