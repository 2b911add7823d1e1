"""The Subscription type: live progress of one task or of every task of the user.

Both start with the current state, then relay live events from the process's
:class:`jobs.hub.ProgressHub`; ``scanProgress`` ends after the task's terminal event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

import strawberry
from graphql import GraphQLError

from jobs.documents import ACTIVE_STATUSES, ScanTask
from jobs.errors import quoted
from jobs.hub import ProgressHub
from jobs.progress import ProgressEvent, event_from_task
from jobs.queries import get_task
from jobs.runtime import Runtime
from schema.context import Info
from schema.sharing import IdentityCache, SharedEventExecutor
from schema.types import ScanProgress

logger = logging.getLogger(__name__)

#: The ScanProgress of each recent event. The hub hands the same event object to every
#: subscriber of a channel, so they all get the same ScanProgress and share its execution.
_progress_objects: IdentityCache[ScanProgress] = IdentityCache()


class ProgressExecutor(SharedEventExecutor):
    """Executes each progress event once per distinct subscription operation.

    ScanProgress has only plain fields, so its results follow the contract of
    :mod:`schema.sharing`.
    """

    shared_root_types = (ScanProgress,)


def progress_of(event: ProgressEvent) -> ScanProgress:
    """Return the ScanProgress of ``event``, the same object for the same event."""
    progress = _progress_objects.get(event)
    if progress is None:
        progress = ScanProgress.from_event(event)
        _progress_objects.put(event, progress)
    return progress


async def _task_progress(
    hub: ProgressHub, user_id: str, task: ScanTask
) -> AsyncGenerator[ScanProgress, None]:
    task_id = str(task.id)

    async def read_task() -> ProgressEvent | None:
        current = await ScanTask.get(task.id)
        return event_from_task(current) if current is not None else None

    logger.debug("user %s subscribed to task %s", user_id, task_id)
    try:
        async for event in hub.subscribe_task(task_id, fallback=read_task):
            yield progress_of(event)
    finally:
        logger.debug("user %s unsubscribed from task %s", user_id, task_id)


async def _active_states(runtime: Runtime, user_id: str) -> list[ProgressEvent]:
    """Return the latest event of each active task, read from the task when Redis has none."""
    statuses = [status.value for status in ACTIVE_STATUSES]
    tasks = await ScanTask.find({"user_id": user_id, "status": {"$in": statuses}}).to_list()
    events = []
    for task in tasks:
        latest = await runtime.publisher.latest(str(task.id))
        events.append(latest if latest is not None else event_from_task(task))
    return events


async def _user_progress(
    runtime: Runtime, hub: ProgressHub, user_id: str
) -> AsyncGenerator[ScanProgress, None]:
    async def current() -> list[ProgressEvent]:
        return await _active_states(runtime, user_id)

    logger.debug("user %s subscribed to all own tasks", user_id)
    try:
        async for event in hub.subscribe_user(user_id, current=current):
            yield progress_of(event)
    finally:
        logger.debug("user %s unsubscribed from all own tasks", user_id)


async def resolve_scan_progress(info: Info, task_id: strawberry.ID) -> AsyncIterator[ScanProgress]:
    # A coroutine that returns the stream, not an async generator, so that an unknown task
    # is reported when the subscription starts rather than as its first event.
    context = info.context
    user_id = context.require_user_id()
    task = await get_task(user_id, str(task_id))
    if task is None:
        raise GraphQLError(
            f"scan task {quoted(task_id)} not found", extensions={"code": "NOT_FOUND"}
        )
    return _task_progress(context.hub, user_id, task)


async def resolve_my_scans(info: Info) -> AsyncIterator[ScanProgress]:
    context = info.context
    user_id = context.require_user_id()
    return _user_progress(context.runtime, context.hub, user_id)


@strawberry.type
class Subscription:
    scan_progress: AsyncIterator[ScanProgress] = strawberry.subscription(
        resolver=resolve_scan_progress,
        description="The task's current state, then its live progress; ends after the "
        "terminal event. NOT_FOUND error for an unknown task.",
    )
    my_scans: AsyncIterator[ScanProgress] = strawberry.subscription(
        resolver=resolve_my_scans,
        description="The current state of the user's active tasks, then every live event of "
        "any of the user's tasks; runs until the client stops it.",
    )
