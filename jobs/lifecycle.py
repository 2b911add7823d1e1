"""Requests that change a scan task from outside the worker: start, cancel, retry.

Each transition is one conditional update on the task document, so two API processes, or an
API process and a worker, can race without leaving a task in a state that no process owns.
"""

from __future__ import annotations

import calendar
import logging
from datetime import datetime

from beanie import PydanticObjectId, SortDirection
from bson.errors import InvalidId
from pymongo import ReturnDocument

from jobs.dispatch import send_scan
from jobs.documents import (
    ACTIVE_STATUSES,
    EmailAccount,
    ScanPhase,
    ScanStatus,
    ScanTask,
    utcnow,
)
from jobs.errors import (
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    ScanAlreadyRunningError,
    quoted,
)
from jobs.progress import event_from_task
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

MIN_MONTHS = 1
MAX_MONTHS = 240


def parse_object_id(value: str) -> PydanticObjectId | None:
    """Return ``value`` as an ObjectId, or None when it is not one."""
    try:
        return PydanticObjectId(value)
    except (InvalidId, TypeError, ValueError):
        return None


def months_before(moment: datetime, months: int) -> datetime:
    """Return ``moment`` moved back by calendar months, clamping the day to the month's end."""
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


async def find_user_task(user_id: str, task_id: str) -> ScanTask:
    """Return the user's task; another user's task is reported as not found too."""
    object_id = parse_object_id(task_id)
    task = await ScanTask.get(object_id) if object_id is not None else None
    if task is None or task.user_id != user_id:
        raise NotFoundError(f"scan task {quoted(task_id)} not found")
    return task


async def find_user_account(user_id: str, account_id: str) -> EmailAccount:
    object_id = parse_object_id(account_id)
    account = await EmailAccount.get(object_id) if object_id is not None else None
    if account is None or account.user_id != user_id:
        raise NotFoundError(f"account {quoted(account_id)} not found")
    return account


async def _active_task_of_account(account_id: str) -> ScanTask | None:
    """Return the oldest active task of an account, the one that keeps the account's slot."""
    statuses = [status.value for status in ACTIVE_STATUSES]
    return (
        await ScanTask.find({"account_id": account_id, "status": {"$in": statuses}})
        .sort([("created_at", SortDirection.ASCENDING), ("_id", SortDirection.ASCENDING)])
        .first_or_none()
    )


async def _claim_account_slot(task: ScanTask) -> None:
    """Keep ``task`` only if it is the account's oldest active task; otherwise remove it.

    Every concurrent start inserts first and checks second, so exactly one of them wins
    without a lock or a database-specific unique index.
    """
    oldest = await _active_task_of_account(task.account_id)
    if oldest is None or oldest.id == task.id:
        return
    await task.delete()
    raise _already_running(task.account_id, oldest)


def _already_running(account_id: str, active: ScanTask) -> ScanAlreadyRunningError:
    return ScanAlreadyRunningError(
        f"account {account_id!r} already has an active scan {str(active.id)!r}; "
        "wait for it to finish or cancel it",
        task_id=str(active.id),
    )


async def _enqueue(rt: Runtime, task: ScanTask) -> None:
    message_id = await send_scan(rt, task)
    logger.info("task %s user %s enqueued as message %s", task.id, task.user_id, message_id)


async def start_scan(rt: Runtime, user_id: str, account_id: str, months: int) -> ScanTask:
    """Write a QUEUED task, publish its first event and enqueue the scan; no mail-server I/O.

    Raises InvalidInputError, NotFoundError or ScanAlreadyRunningError.
    """
    if not MIN_MONTHS <= months <= MAX_MONTHS:
        raise InvalidInputError(
            "months", f"months must be from {MIN_MONTHS} to {MAX_MONTHS}, got {months}"
        )
    account = await find_user_account(user_id, account_id)
    # A start on a busy account is rejected here with one read. Starts that arrive together
    # all pass this check, and the insert-then-check below picks one of them.
    active = await _active_task_of_account(account_id)
    if active is not None:
        raise _already_running(account_id, active)

    now = utcnow()
    task = ScanTask(
        user_id=user_id,
        account_id=account_id,
        account_label=account.label,
        months=months,
        since=months_before(now, months),
        attempt_limit=rt.settings.max_attempts,
        created_at=now,
    )
    await task.insert()
    await _claim_account_slot(task)

    await rt.publisher.publish(event_from_task(task), force=True)
    await _enqueue(rt, task)
    logger.info(
        "task %s user %s account %s queued (%d months)", task.id, user_id, account_id, months
    )
    return task


async def _transition(
    task: ScanTask, from_status: ScanStatus, update: dict[str, object]
) -> ScanTask | None:
    """Apply ``update`` only if the task is still in ``from_status``; return the new document."""
    collection = ScanTask.get_pymongo_collection()
    raw = await collection.find_one_and_update(
        {"_id": task.id, "status": from_status.value},
        {"$set": update},
        return_document=ReturnDocument.AFTER,
    )
    return None if raw is None else ScanTask.model_validate(raw)


async def cancel_scan(rt: Runtime, user_id: str, task_id: str) -> ScanTask:
    """Cancel a task: a QUEUED one ends CANCELLED at once and never starts; a RUNNING one
    moves to CANCELLING and its worker ends it CANCELLED after stopping.

    The request is stored in the task document and as a Redis flag, so whichever worker runs
    the scan sees it. Raises NotFoundError, or InvalidStateError for a finished task.
    """
    task = await find_user_task(user_id, task_id)

    if task.status == ScanStatus.QUEUED:
        now = utcnow()
        done = await _transition(
            task,
            ScanStatus.QUEUED,
            {
                "status": ScanStatus.CANCELLED.value,
                "phase": ScanPhase.DONE.value,
                "cancel_requested": True,
                "finished_at": now,
                "next_retry_at": None,
            },
        )
        if done is not None:
            await rt.publisher.publish(event_from_task(done, "cancelled before it started"))
            logger.info("task %s user %s cancelled while queued", task_id, user_id)
            return done
        task = await find_user_task(user_id, task_id)

    if task.status == ScanStatus.RUNNING:
        await rt.redis.set(rt.keys.cancel_flag(task_id), "1", ex=24 * 3600)
        cancelling = await _transition(
            task,
            ScanStatus.RUNNING,
            {"status": ScanStatus.CANCELLING.value, "cancel_requested": True},
        )
        if cancelling is not None:
            await rt.publisher.publish(event_from_task(cancelling, "cancelling"), force=True)
            logger.info("task %s user %s cancellation requested", task_id, user_id)
            return cancelling
        task = await find_user_task(user_id, task_id)

    if task.status == ScanStatus.CANCELLING:
        return task
    raise InvalidStateError(
        f"scan task {task_id!r} is already {task.status.value} and cannot be cancelled"
    )


async def cancel_account_scans(rt: Runtime, user_id: str, account_id: str) -> None:
    """Cancel every active task of an account, for example before the account is removed."""
    statuses = [status.value for status in ACTIVE_STATUSES]
    tasks = await ScanTask.find(
        {"user_id": user_id, "account_id": account_id, "status": {"$in": statuses}}
    ).to_list()
    for task in tasks:
        try:
            await cancel_scan(rt, user_id, str(task.id))
        except InvalidStateError:
            # The task finished between the query and the cancel request.
            continue


async def retry_scan(rt: Runtime, user_id: str, task_id: str) -> ScanTask:
    """Queue a FAILED or CANCELLED task again; it resumes from its saved checkpoints.

    Raises NotFoundError, InvalidStateError or ScanAlreadyRunningError.
    """
    task = await find_user_task(user_id, task_id)
    if task.status not in (ScanStatus.FAILED, ScanStatus.CANCELLED):
        raise InvalidStateError(
            f"scan task {task_id!r} is {task.status.value}; only FAILED or CANCELLED tasks "
            "can be retried"
        )
    await find_user_account(user_id, task.account_id)
    active = await _active_task_of_account(task.account_id)
    if active is not None:
        raise ScanAlreadyRunningError(
            f"account {task.account_id!r} already has an active scan {str(active.id)!r}",
            task_id=str(active.id),
        )

    requeued = await _transition(
        task,
        task.status,
        {
            "status": ScanStatus.QUEUED.value,
            "phase": ScanPhase.QUEUED.value,
            "error": None,
            "finished_at": None,
            "next_retry_at": None,
            "cancel_requested": False,
            "attempt_limit": task.attempts + rt.settings.max_attempts,
        },
    )
    if requeued is None:
        raise InvalidStateError(f"scan task {task_id!r} changed state; reload it and try again")
    await rt.redis.delete(rt.keys.cancel_flag(task_id))
    await rt.publisher.publish(event_from_task(requeued, "retry requested"), force=True)
    await _enqueue(rt, requeued)
    logger.info("task %s user %s queued again by request", task_id, user_id)
    return requeued
