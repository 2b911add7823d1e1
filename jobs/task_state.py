"""State changes a worker makes on the task it runs: claim, lease, checkpoint, finish.

Every update after the claim is conditional on ``lease_owner``, so a worker that lost its lease
(because it stalled and another worker took the task over) can no longer write to the task.

The writes of one process to one task go through :func:`task_write`, one at a time. FerretDB
1.24 on PostgreSQL applies an update by reading the document and writing all of it back, so
of two updates to one document at the same moment the later one undoes the other. Racing a
``findAndModify`` against an ``updateOne`` on one document 200 times lost one of the two
updates 194 times on this project's test stack. MongoDB applies each update atomically.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from jobs.documents import (
    FolderCheckpoint,
    ScanPhase,
    ScanStatus,
    ScanSummary,
    ScanTask,
    TaskError,
    utcnow,
)
from jobs.lifecycle import parse_object_id

logger = logging.getLogger(__name__)

_LIVE_STATUSES = [ScanStatus.RUNNING.value, ScanStatus.CANCELLING.value]


#: Lock of each task that this process writes to; an entry is dropped once no write uses it.
_write_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@asynccontextmanager
async def task_write(task_id: object) -> AsyncIterator[None]:
    """Hold this process's write lock of one task for the body of the ``async with``.

    NOTE: the lock orders the writes of one process only. A write from another process (an
    API's cancelScan, another worker's sweeper) can still undo a concurrent write on FerretDB.
    The claim and the message bookkeeping around a send also take the Redis claim lock.
    """
    key = str(task_id)
    lock = _write_locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _write_locks[key] = lock
    async with lock:
        yield


def _collection() -> Any:
    return ScanTask.get_pymongo_collection()


def _document(raw: dict[str, Any] | None) -> ScanTask | None:
    return None if raw is None else ScanTask.model_validate(raw)


async def claim_task(task_id: str, worker_id: str, lease_s: float) -> ScanTask | None:
    """Take the task if it is QUEUED, or RUNNING under an expired lease; count the attempt.

    Returns None when the task is missing, finished, or held by a live worker (a duplicate
    delivery), in which case the caller does no work.
    """
    object_id = parse_object_id(task_id)
    if object_id is None:
        return None
    async with task_write(object_id):
        return await _claim(object_id, worker_id, lease_s)


async def _claim(object_id: ObjectId, worker_id: str, lease_s: float) -> ScanTask | None:
    now = utcnow()
    raw = await _collection().find_one_and_update(
        {
            "_id": object_id,
            "$or": [
                {"status": ScanStatus.QUEUED.value},
                {"status": {"$in": _LIVE_STATUSES}, "lease_expires_at": {"$lt": now}},
            ],
        },
        {
            "$set": {
                "status": ScanStatus.RUNNING.value,
                "phase": ScanPhase.CONNECTING.value,
                "lease_owner": worker_id,
                "lease_expires_at": now + timedelta(seconds=lease_s),
                "next_retry_at": None,
                # A rescue message sent before this claim is spent: see jobs.sweeper.
                "rescued_at": None,
            },
            "$inc": {"attempts": 1},
        },
        return_document=ReturnDocument.AFTER,
    )
    task = _document(raw)
    if task is not None and task.started_at is None:
        await _collection().update_one({"_id": object_id}, {"$set": {"started_at": now}})
        task.started_at = now
    return task


async def renew_lease(task: ScanTask, worker_id: str, lease_s: float) -> ScanTask | None:
    """Extend the lease; returns the current document, or None when the lease was lost."""
    async with task_write(task.id):
        raw = await _collection().find_one_and_update(
            {"_id": task.id, "lease_owner": worker_id, "status": {"$in": _LIVE_STATUSES}},
            {"$set": {"lease_expires_at": utcnow() + timedelta(seconds=lease_s)}},
            return_document=ReturnDocument.AFTER,
        )
    return _document(raw)


async def update_owned(task: ScanTask, worker_id: str, fields: dict[str, Any]) -> bool:
    """Set ``fields`` while this worker still holds the lease; False when it does not."""
    async with task_write(task.id):
        result = await _collection().update_one(
            {"_id": task.id, "lease_owner": worker_id},
            {"$set": fields},
        )
    return bool(result.matched_count)


async def save_checkpoint(
    task: ScanTask,
    worker_id: str,
    folder: str,
    checkpoint: FolderCheckpoint,
    progress: dict[str, Any],
) -> bool:
    """Record the folder position and the progress counters in one update."""
    fields = {f"checkpoints.{folder}": checkpoint.model_dump(), **progress}
    return await update_owned(task, worker_id, fields)


async def finish_task(
    task: ScanTask,
    worker_id: str,
    status: ScanStatus,
    *,
    error: TaskError | None = None,
    summary: ScanSummary | None = None,
    extra: dict[str, Any] | None = None,
) -> ScanTask | None:
    """Move the task to a terminal status and release the lease."""
    fields: dict[str, Any] = {
        "status": status.value,
        "phase": ScanPhase.DONE.value,
        "finished_at": utcnow(),
        "lease_owner": None,
        "lease_expires_at": None,
        "next_retry_at": None,
        "error": None if error is None else error.model_dump(),
    }
    if summary is not None:
        fields["summary"] = summary.model_dump()
    fields.update(extra or {})
    async with task_write(task.id):
        raw = await _collection().find_one_and_update(
            {"_id": task.id, "lease_owner": worker_id},
            {"$set": fields},
            return_document=ReturnDocument.AFTER,
        )
    return _document(raw)


async def requeue_for_retry(
    task: ScanTask, worker_id: str, error: TaskError, retry_at: datetime
) -> ScanTask | None:
    """Put the task back to QUEUED with the error that caused the retry and when it runs."""
    async with task_write(task.id):
        raw = await _collection().find_one_and_update(
            {"_id": task.id, "lease_owner": worker_id},
            {
                "$set": {
                    "status": ScanStatus.QUEUED.value,
                    "phase": ScanPhase.QUEUED.value,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "next_retry_at": retry_at,
                    "error": error.model_dump(),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
    return _document(raw)


async def release_task(task: ScanTask, worker_id: str) -> ScanTask | None:
    """Put a running task back to QUEUED, keeping its checkpoints, because its worker stops.

    The attempt stays counted. Returns None when this worker no longer holds the lease.
    """
    async with task_write(task.id):
        raw = await _collection().find_one_and_update(
            {"_id": task.id, "lease_owner": worker_id, "status": ScanStatus.RUNNING.value},
            {
                "$set": {
                    "status": ScanStatus.QUEUED.value,
                    "phase": ScanPhase.QUEUED.value,
                    "lease_owner": None,
                    "lease_expires_at": None,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
    return _document(raw)
