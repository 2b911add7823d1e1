"""Sending the ``scan_mailbox`` message of a task, and finding out whether it is still queued.

Every send records the message's ids on the task, so a sweeper can tell a task that waits in
the queue from a task whose message was lost (for example with a Redis restarted without
persistence).
"""

from __future__ import annotations

import asyncio
import logging

from jobs.claim_lock import claim_lock
from jobs.documents import ScanTask, utcnow
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)


def _dq_name(queue_name: str) -> str:
    # Dramatiq's Redis broker keeps delayed messages on a queue with this suffix.
    return f"{queue_name}.DQ"


async def send_scan(rt: Runtime, task: ScanTask, *, delay_s: float | None = None) -> str:
    """Send ``scan_mailbox(task.id)``, after ``delay_s`` seconds when given; return its id.

    The send and the record of its ids hold the task's claim lock, so a worker that receives
    the message claims the task only after the record is written. On FerretDB 1.24 the record
    written during the claim undid the claim (see :mod:`jobs.task_state`).
    """
    # Imported here because declaring the actor needs the broker, which each process sets up.
    from jobs.actors import scan_mailbox

    delay_ms = None if delay_s is None else int(delay_s * 1000)
    async with claim_lock(rt, str(task.id)):
        message = await asyncio.to_thread(
            scan_mailbox.send_with_options, args=(str(task.id),), delay=delay_ms
        )
        await ScanTask.get_pymongo_collection().update_one(
            {"_id": task.id},
            {
                "$set": {
                    "message_id": message.message_id,
                    "broker_message_id": message.options.get("redis_message_id"),
                    "queued_at": utcnow(),
                }
            },
        )
    return str(message.message_id)


async def message_queued(rt: Runtime, task: ScanTask) -> bool:
    """Return True when the task's last message is still in the broker, due or delayed.

    A message stays in the broker's hash until a worker acknowledges it, so a message that a
    worker prefetched or runs counts as queued.

    NOTE: when a delayed message becomes due, Dramatiq moves it to the main queue under a
    new key, so this returns False for it. The caller then sends a duplicate, which does no
    work because only one delivery can claim the task.
    """
    if task.broker_message_id is None:
        return False
    queue = rt.settings.queue_name
    for name in (queue, _dq_name(queue)):
        key = f"{rt.keys.broker_queue(name)}.msgs"
        if await rt.redis.hexists(key, task.broker_message_id):
            return True
    return False
