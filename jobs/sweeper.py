"""The periodic sweep of each worker process: rescue stalled tasks, resend lost ones, clean up.

* A RUNNING or CANCELLING task whose lease expired, because its worker died or stalled, is
  sent again. That delivery claims the task and resumes it from its checkpoints. The
  conditional update that selects the task also sets ``rescued_at``, so of several sweepers
  only one sends it, and at most once per lease length. A task whose last rescue message
  still waits in the queue is not sent again.
* A QUEUED task whose broker message is gone (see :func:`jobs.dispatch.message_queued`) is
  sent again after ``lost_message_grace_s``.
* Tasks finished more than ``retention_days`` ago are deleted with their findings, and so are
  the scanned messages that no remaining task refers to.

Recovery therefore takes at most ``lease_s + sweep_interval_s`` plus the time a worker needs
to pick up the message, without waiting for Dramatiq's own requeue of unacknowledged messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jobs.dispatch import message_queued, send_scan
from jobs.documents import Finding, ScannedMessage, ScanStatus, ScanTask, utcnow
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

_LIVE_STATUSES = [ScanStatus.RUNNING.value, ScanStatus.CANCELLING.value]
_FINISHED_STATUSES = [
    ScanStatus.COMPLETED.value,
    ScanStatus.FAILED.value,
    ScanStatus.CANCELLED.value,
]
#: Tasks examined per sweep and per kind, so one sweep stays short after a long outage.
SWEEP_BATCH = 100


@dataclass
class SweepCounts:
    rescued: int = 0
    resent: int = 0
    deleted_tasks: int = 0
    deleted_messages: int = 0


async def _take_for_rescue(task_id: Any, lease_s: float) -> ScanTask | None:
    """Mark an expired task as rescued now, unless another sweeper did so within a lease.

    Returns the task as it was before, or None when it is not due for a rescue.
    """
    now = utcnow()
    raw = await ScanTask.get_pymongo_collection().find_one_and_update(
        {
            "_id": task_id,
            "status": {"$in": _LIVE_STATUSES},
            "lease_expires_at": {"$lt": now},
            "$or": [
                {"rescued_at": None},
                {"rescued_at": {"$lt": now - timedelta(seconds=lease_s)}},
            ],
        },
        {"$set": {"rescued_at": now}},
        return_document=ReturnDocument.BEFORE,
    )
    return None if raw is None else ScanTask.model_validate(raw)


async def rescue_expired(rt: Runtime) -> int:
    """Send every live task whose lease expired again; return how many were sent."""
    expired = ScanTask.get_pymongo_collection().find(
        {"status": {"$in": _LIVE_STATUSES}, "lease_expires_at": {"$lt": utcnow()}},
        {"_id": 1},
        limit=SWEEP_BATCH,
    )
    sent = 0
    async for row in expired:
        task = await _take_for_rescue(row["_id"], rt.settings.lease_s)
        if task is None:
            continue
        if task.rescued_at is not None and await message_queued(rt, task):
            # The rescue message sent earlier still waits for a free worker thread, so
            # another copy would only lengthen the queue.
            continue
        message_id = await send_scan(rt, task)
        sent += 1
        logger.warning(
            "task %s user %s: lease of %s expired at %s; sent again as message %s",
            task.id,
            task.user_id,
            task.lease_owner,
            task.lease_expires_at,
            message_id,
        )
    return sent


async def resend_lost(rt: Runtime) -> int:
    """Send every QUEUED task again whose message is no longer in the broker."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.lost_message_grace_s)
    waiting = ScanTask.find(
        {
            "status": ScanStatus.QUEUED.value,
            "queued_at": {"$lt": cutoff},
            "$or": [{"next_retry_at": None}, {"next_retry_at": {"$lt": cutoff}}],
        }
    ).limit(SWEEP_BATCH)
    sent = 0
    async for task in waiting:
        if await message_queued(rt, task):
            continue
        message_id = await send_scan(rt, task)
        sent += 1
        logger.warning(
            "task %s user %s: QUEUED but its message %s is missing from the broker; "
            "sent again as message %s",
            task.id,
            task.user_id,
            task.message_id,
            message_id,
        )
    return sent


async def delete_expired(rt: Runtime) -> tuple[int, int]:
    """Delete tasks finished before the retention period, with their findings and the
    messages no remaining task refers to; return (tasks, messages) deleted."""
    cutoff = utcnow() - timedelta(days=rt.settings.retention_days)
    tasks = ScanTask.get_pymongo_collection()
    old = [
        row["_id"]
        async for row in tasks.find(
            {"status": {"$in": _FINISHED_STATUSES}, "finished_at": {"$lt": cutoff}},
            {"_id": 1},
            limit=SWEEP_BATCH * 10,
        )
    ]
    if not old:
        return 0, 0
    old_ids = [str(task_id) for task_id in old]

    await Finding.get_pymongo_collection().delete_many({"task_id": {"$in": old_ids}})
    messages = ScannedMessage.get_pymongo_collection()
    # $pullAll and not $pull with $in: FerretDB 1.24 ignores the condition form of $pull.
    await messages.update_many({"task_ids": {"$in": old_ids}}, {"$pullAll": {"task_ids": old_ids}})
    orphans = await messages.delete_many({"task_ids": {"$size": 0}})
    deleted = await tasks.delete_many({"_id": {"$in": old}})
    logger.info(
        "deleted %d tasks finished before %s and %d messages no task refers to",
        deleted.deleted_count,
        cutoff,
        orphans.deleted_count,
    )
    return deleted.deleted_count, orphans.deleted_count


class Sweeper:
    """Runs :meth:`sweep` every ``sweep_interval_s`` on the worker's event loop."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._next_cleanup = 0.0
        #: Totals of this process, logged when the sweeper stops.
        self.totals = SweepCounts()

    async def sweep(self) -> SweepCounts:
        counts = SweepCounts()
        counts.rescued = await rescue_expired(self._rt)
        counts.resent = await resend_lost(self._rt)
        if time.monotonic() >= self._next_cleanup:
            self._next_cleanup = time.monotonic() + self._rt.settings.cleanup_interval_s
            counts.deleted_tasks, counts.deleted_messages = await delete_expired(self._rt)
        return counts

    def _add(self, counts: SweepCounts) -> None:
        self.totals.rescued += counts.rescued
        self.totals.resent += counts.resent
        self.totals.deleted_tasks += counts.deleted_tasks
        self.totals.deleted_messages += counts.deleted_messages

    async def run_forever(self) -> None:
        interval_s = self._rt.settings.sweep_interval_s
        logger.info("sweeper started: every %.1f s", interval_s)
        failures = 0
        try:
            while True:
                try:
                    self._add(await self.sweep())
                except (PyMongoError, RedisError, OSError) as exc:
                    if not failures:
                        logger.warning(
                            "sweep failed, database or Redis unavailable (%s); "
                            "trying again every %.1f s",
                            exc,
                            interval_s,
                        )
                    failures += 1
                else:
                    if failures:
                        logger.info("sweep works again after %d failed sweeps", failures)
                    failures = 0
                await asyncio.sleep(interval_s)
        finally:
            logger.info(
                "sweeper stopped: %d tasks rescued, %d resent, %d deleted with %d messages",
                self.totals.rescued,
                self.totals.resent,
                self.totals.deleted_tasks,
                self.totals.deleted_messages,
            )


def log_sweeper_exit(task: asyncio.Task[None]) -> None:
    """Done-callback of the sweeper task: log why it stopped unless it was cancelled."""
    with contextlib.suppress(asyncio.CancelledError):
        error = task.exception()
        if error is not None:
            logger.error(
                "sweeper stopped on an unexpected error; this process no longer rescues tasks",
                exc_info=error,
            )
