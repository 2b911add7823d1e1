"""Facts about the scan queue, the workers and the task history, for health checks and metrics.

Queue facts come from the Dramatiq Redis broker's own keys (see :class:`jobs.keys.RedisKeys`);
task facts come from the task documents, so the API reports what the workers did without
counting anything in the worker processes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis

from jobs.documents import ScanStatus, ScanTask
from jobs.keys import RedisKeys

#: A broker whose last command is older than this is not counted as a live worker, in
#: seconds. Dramatiq's RedisBroker uses the same default (``heartbeat_timeout=60000`` ms).
WORKER_HEARTBEAT_TIMEOUT_S = 60.0

#: Upper bounds of the scan duration histogram buckets, in seconds.
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class WorkerHeartbeat:
    broker_id: str
    #: Time since the worker's last broker command, in seconds.
    age_s: float


@dataclass(frozen=True)
class QueueFacts:
    queue_name: str
    #: Messages waiting on the queue, not yet fetched by any worker.
    queued: int
    #: Messages sent with a delay (scheduled retries), fetched or not.
    delayed: int
    #: Age of the message at the head of the queue, in seconds; None when the queue is empty.
    oldest_queued_age_s: float | None
    #: Brokers with a command within :data:`WORKER_HEARTBEAT_TIMEOUT_S`, newest first.
    workers: list[WorkerHeartbeat]


async def queue_facts(
    redis: Redis, keys: RedisKeys, queue_name: str, *, exclude_broker: str | None = None
) -> QueueFacts:
    """Read the queue length, delayed messages and live workers from the broker's keys.

    ``exclude_broker`` is the id of this process's own broker, which also leaves a heartbeat
    each time it sends a message.

    NOTE: Dramatiq writes a heartbeat on every broker command. So another API process that sent
    a scan within the timeout counts as a worker. A worker whose threads are all busy sends no
    command, so it drops out after the timeout.
    """
    queue_key = keys.broker_queue(queue_name)
    delayed_key = keys.broker_queue(f"{queue_name}.DQ")
    queued = int(await redis.llen(queue_key))
    delayed = int(await redis.llen(delayed_key))
    async for ack_key in redis.scan_iter(match=keys.broker_unacked_pattern(f"{queue_name}.DQ")):
        delayed += int(await redis.scard(ack_key))

    now_ms = time.time() * 1000
    since_ms = now_ms - WORKER_HEARTBEAT_TIMEOUT_S * 1000
    beats = cast(
        list[tuple[bytes, float]],
        await redis.zrevrangebyscore(keys.broker_heartbeats, "+inf", since_ms, withscores=True),
    )
    workers = [
        WorkerHeartbeat(broker_id=_text(member), age_s=max(0.0, (now_ms - score) / 1000))
        for member, score in beats
        if _text(member) != exclude_broker
    ]
    return QueueFacts(
        queue_name=queue_name,
        queued=queued,
        delayed=delayed,
        oldest_queued_age_s=await _head_age_s(redis, queue_key, now_ms),
        workers=workers,
    )


async def _head_age_s(redis: Redis, queue_key: str, now_ms: float) -> float | None:
    head = await redis.lindex(queue_key, 0)
    if head is None:
        return None
    raw = await redis.hget(f"{queue_key}.msgs", head)
    if raw is None:
        # Fetched by a worker between the two commands.
        return None
    sent_ms = json.loads(raw).get("message_timestamp")
    if not isinstance(sent_ms, int | float):
        return None
    return max(0.0, (now_ms - sent_ms) / 1000)


@dataclass
class TaskFacts:
    """Counts over every stored task, and the durations of the finished ones."""

    by_status: dict[ScanStatus, int] = field(default_factory=lambda: dict.fromkeys(ScanStatus, 0))
    #: Messages processed by all tasks, finished or not.
    messages_scanned: int = 0
    #: Attempts after the first, summed over all tasks.
    retries: int = 0
    #: Status -> durations (``finished_at - started_at``) of the finished tasks, in seconds.
    durations_s: dict[ScanStatus, list[float]] = field(default_factory=dict)


async def task_facts() -> TaskFacts:
    """Read every task's status, counters and times; one pass over the task collection.

    NOTE: the cost grows with the stored history, which the retention setting bounds.
    """
    projection = {"status": 1, "processed": 1, "attempts": 1, "started_at": 1, "finished_at": 1}
    facts = TaskFacts()
    cursor = ScanTask.get_pymongo_collection().find({}, projection)
    async for task in cursor:
        _count(facts, task)
    return facts


def _count(facts: TaskFacts, task: dict[str, Any]) -> None:
    status = ScanStatus(task["status"])
    facts.by_status[status] += 1
    facts.messages_scanned += int(task.get("processed") or 0)
    facts.retries += max(int(task.get("attempts") or 0) - 1, 0)
    started, finished = task.get("started_at"), task.get("finished_at")
    if started is not None and finished is not None:
        seconds = max((finished - started).total_seconds(), 0.0)
        facts.durations_s.setdefault(status, []).append(seconds)


async def running_tasks() -> int:
    """Count the tasks a worker is running now (RUNNING or CANCELLING)."""
    statuses = [ScanStatus.RUNNING.value, ScanStatus.CANCELLING.value]
    collection = ScanTask.get_pymongo_collection()
    return int(await collection.count_documents({"status": {"$in": statuses}}))


def sending_broker() -> RedisBroker:
    """Return this process's Dramatiq broker, configured on first use.

    ``jobs.broker`` reads the environment when first imported, so importing it here rather
    than at module level lets tests set the environment first.
    """
    from jobs.broker import current_broker

    return current_broker()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
