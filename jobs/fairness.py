"""Fair use of the worker pool: a per-user limit on running scans and on scan starts.

* Admission: after a worker claims a task, :func:`admit` counts the user's running tasks in
  the database. Above ``Settings.max_running_scans_per_user`` the worker hands the task back
  (:func:`unclaim`) and sends its message again with a short delay, so it goes behind the
  messages of other users that are already queued. Counting after the claim is safe across
  processes: of two tasks claimed at the same time, the count made last includes the other.
* Rate limit: :func:`check_start_rate` allows ``Settings.start_scan_limit`` startScan and
  retryScan calls per user and fixed window of ``Settings.start_scan_window_s`` seconds,
  counted in Redis.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

from pymongo import ReturnDocument

from jobs.dispatch import send_scan
from jobs.documents import ScanPhase, ScanStatus, ScanTask, utcnow
from jobs.errors import QuotaExceededError
from jobs.lifecycle import parse_object_id
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

_RUNNING_STATUSES = [ScanStatus.RUNNING.value, ScanStatus.CANCELLING.value]


def start_rate_key(rt: Runtime, user_id: str, window: int) -> str:
    """Redis counter of one user's scan starts in one rate-limit window."""
    return f"{rt.keys.prefix}:start-rate:{user_id}:{window}"


async def running_scans(user_id: str) -> int:
    """Return the number of the user's tasks that run under a live lease."""
    query = {
        "user_id": user_id,
        "status": {"$in": _RUNNING_STATUSES},
        "lease_expires_at": {"$gt": utcnow()},
    }
    return int(await ScanTask.get_pymongo_collection().count_documents(query))


async def admit(rt: Runtime, task: ScanTask, worker_id: str) -> bool:
    """Return True when the claimed ``task`` may run now under the per-user limit.

    Otherwise the task is handed back to QUEUED without counting the attempt, its message is
    sent again after ``Settings.admission_retry_s`` (with jitter) and False is returned: the
    caller must then stop without touching the task. A task with a pending cancellation is
    always admitted, so that the worker ends it at once.

    NOTE: each held-back task costs about six database and Redis round trips per
    ``admission_retry_s``, so a user with thousands of queued scans keeps workers busy with
    hand-backs. While held back, a task shows RUNNING for the few milliseconds between claim
    and hand-back, and loses its ``next_retry_at``.
    """
    if task.cancel_requested:
        return True
    limit = rt.settings.max_running_scans_per_user
    running = await running_scans(task.user_id)
    if running <= limit:
        return True

    if not await unclaim(task, worker_id):
        logger.warning("task %s lost its lease while being held back", task.id)
        return False
    delay_s = rt.settings.admission_retry_s * random.uniform(1.0, 1.5)
    await send_scan(rt, task, delay_s=delay_s)
    logger.info(
        "task %s user %s held back: %d other scans running, limit %d; sent again in %.1f s",
        task.id,
        task.user_id,
        running - 1,
        limit,
        delay_s,
    )
    return False


async def unclaim(task: ScanTask, worker_id: str) -> bool:
    """Undo ``claim_task`` while ``worker_id`` still holds the lease; False when it does not.

    The task goes back to QUEUED with the attempt count it had before the claim, and without
    ``started_at`` when the claim was its first.
    """
    update: dict[str, Any] = {
        "$set": {
            "status": ScanStatus.QUEUED.value,
            "phase": ScanPhase.QUEUED.value,
            "lease_owner": None,
            "lease_expires_at": None,
        },
        "$inc": {"attempts": -1},
    }
    # claim_task counted this claim and set started_at when no earlier claim had.
    if task.attempts <= 1:
        update["$set"]["started_at"] = None
    raw = await ScanTask.get_pymongo_collection().find_one_and_update(
        {"_id": task.id, "lease_owner": worker_id},
        update,
        return_document=ReturnDocument.AFTER,
    )
    return raw is not None


async def check_start_rate(rt: Runtime, user_id: str) -> None:
    """Count one scan start of ``user_id``; raise QuotaExceededError above the limit.

    The error's ``retry_after_s`` is the time left in the current window.
    """
    window_s = rt.settings.start_scan_window_s
    now = time.time()
    window = int(now // window_s)
    key = start_rate_key(rt, user_id, window)
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
        count, _ = await pipe.execute()
    if int(count) <= rt.settings.start_scan_limit:
        return
    retry_after_s = float(math.ceil((window + 1) * window_s - now))
    raise QuotaExceededError(
        f"too many scan starts: at most {rt.settings.start_scan_limit} per {window_s} s; "
        f"try again in {retry_after_s:.0f} s",
        retry_after_s=retry_after_s,
    )


async def queue_position(user_id: str, task_id: str) -> int:
    """Return the 1-based position of a QUEUED task among its user's QUEUED tasks, oldest
    first. The caller checks that the task is QUEUED."""
    object_id = parse_object_id(task_id)
    # An ObjectId grows with its creation time, so older tasks have smaller ids.
    query = {"user_id": user_id, "status": ScanStatus.QUEUED.value, "_id": {"$lt": object_id}}
    ahead = await ScanTask.get_pymongo_collection().count_documents(query)
    return int(ahead) + 1
