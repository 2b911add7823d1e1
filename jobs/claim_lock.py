"""A short Redis lock around the claim of a task.

The claim itself is one conditional ``findAndModify``, which MongoDB applies atomically. Some
MongoDB-API servers do not isolate concurrent ``findAndModify`` commands on one document
(FerretDB 1.24 on SQLite let two deliveries of one task both claim it), so claims of one task
are also serialised through Redis. The lock only covers the claim: the lease in the task
document keeps the task afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

#: Maximum time a claim holds the lock, in milliseconds; the lock of a crashed claimer expires.
CLAIM_LOCK_TTL_MS = 10_000
#: Maximum time a second claimer waits for the lock before it claims anyway, in seconds.
CLAIM_LOCK_WAIT_S = 10.0
#: Pause between two tries to take the lock, in seconds.
CLAIM_LOCK_POLL_S = 0.02

# Deletes the lock only if this claimer still holds it.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


async def _acquire(rt: Runtime, key: str, token: str) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLAIM_LOCK_WAIT_S
    while not await rt.redis.set(key, token, nx=True, px=CLAIM_LOCK_TTL_MS):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(CLAIM_LOCK_POLL_S)
    return True


@asynccontextmanager
async def claim_lock(rt: Runtime, task_id: str) -> AsyncIterator[None]:
    """Hold the claim lock of ``task_id`` for the body of the ``async with``.

    Without Redis, or after :data:`CLAIM_LOCK_WAIT_S`, the body runs without the lock and the
    database's conditional update alone decides, as it does on MongoDB.
    """
    key = rt.keys.claim_lock(task_id)
    token = uuid.uuid4().hex
    try:
        locked = await _acquire(rt, key, token)
    except RedisError as exc:
        logger.warning("task %s: claim lock unavailable (%s); claiming without it", task_id, exc)
        locked = False
    try:
        yield
    finally:
        if locked:
            try:
                await rt.redis.eval(_RELEASE_SCRIPT, 1, key, token)
            except RedisError as exc:
                # The lock expires by itself after CLAIM_LOCK_TTL_MS.
                logger.warning("task %s: claim lock not released (%s)", task_id, exc)
