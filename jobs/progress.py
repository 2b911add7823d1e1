"""Progress events and their publisher.

The actor publishes each event to the task channel and the user channel and stores it as the
task's latest event, all in one Lua script, so the stored snapshot and the published stream
always agree on ``sequence``. ``sequence`` grows by one per event of a task across attempts,
which lets a subscriber drop anything it has already seen (see ``jobs.hub``).
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel
from redis.asyncio import Redis

from jobs.documents import TERMINAL_STATUSES, ScanPhase, ScanStatus, ScanTask, UTCDateTime, utcnow
from jobs.keys import RedisKeys

logger = logging.getLogger(__name__)


class ProgressEvent(BaseModel):
    task_id: str
    user_id: str
    status: ScanStatus
    phase: ScanPhase
    #: 0 to 100; never decreases within one attempt.
    percent: float = 0.0
    processed: int = 0
    total: int = 0
    eta_seconds: float | None = None
    messages_per_second: float | None = None
    #: Position of this event among every event of the task, from 1; 0 means "not published".
    sequence: int = 0
    message: str | None = None
    updated_at: UTCDateTime

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _error_message(task: ScanTask) -> str | None:
    if task.error is None:
        return None
    return task.error.message


def event_from_task(task: ScanTask, message: str | None = None) -> ProgressEvent:
    """Build an event that states the task document as it is."""
    return ProgressEvent(
        task_id=str(task.id),
        user_id=task.user_id,
        status=task.status,
        phase=task.phase,
        percent=task.percent,
        processed=task.processed,
        total=task.total,
        message=message if message is not None else _error_message(task),
        updated_at=utcnow(),
    )


# KEYS: sequence counter, snapshot, task channel, user channel.
# ARGV: event JSON without its sequence, snapshot TTL in seconds, the highest sequence this
# process published for the task (0 when none).
# The sequence is spliced into the JSON text because cjson would turn integers into floats.
_PUBLISH_SCRIPT = """
local sequence = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[3])
if sequence <= floor then
    sequence = floor + 1
    redis.call('SET', KEYS[1], sequence)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local payload = '{"sequence":' .. sequence .. ',' .. string.sub(ARGV[1], 2)
redis.call('SET', KEYS[2], payload, 'EX', ARGV[2])
redis.call('PUBLISH', KEYS[3], payload)
redis.call('PUBLISH', KEYS[4], payload)
return sequence
"""


class ProgressPublisher:
    """Publishes the progress events of tasks, at most one intermediate event per interval.

    The first event of a task, every status change and every terminal event are always sent,
    and so is any event published with ``force`` (the scan forces its phase changes).
    Intermediate events inside ``interval_s`` of the previous one are dropped.
    """

    def __init__(self, redis: Redis, keys: RedisKeys, *, interval_s: float, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._script = redis.register_script(_PUBLISH_SCRIPT)
        self._last_sent: dict[str, tuple[float, ScanStatus]] = {}
        # NOTE: a Redis restarted without persistence loses the sequence counters. The
        # highest sequence this process published keeps a running scan's sequence growing,
        # but a task whose events all came from other processes restarts from 1.
        self._sequences: dict[str, int] = {}

    def _due(self, event: ProgressEvent) -> bool:
        last = self._last_sent.get(event.task_id)
        if last is None or event.is_terminal:
            return True
        sent_at, status = last
        if status != event.status:
            return True
        return time.monotonic() - sent_at >= self._interval_s

    async def publish(self, event: ProgressEvent, *, force: bool = False) -> ProgressEvent | None:
        """Publish ``event`` unless throttled; returns it with its sequence, or None if dropped."""
        if not force and not self._due(event):
            return None

        payload = event.model_dump_json(exclude={"sequence"})
        keys = [
            self._keys.progress_sequence(event.task_id),
            self._keys.progress_snapshot(event.task_id),
            self._keys.progress_channel(event.task_id),
            self._keys.user_channel(event.user_id),
        ]
        floor = self._sequences.get(event.task_id, 0)
        sequence = int(await self._script(keys=keys, args=[payload, self._ttl_s, floor]))

        if event.is_terminal:
            self._last_sent.pop(event.task_id, None)
            self._sequences.pop(event.task_id, None)
        else:
            self._last_sent[event.task_id] = (time.monotonic(), event.status)
            self._sequences[event.task_id] = sequence
        logger.debug(
            "task %s progress %s %s %.1f%% sequence %d",
            event.task_id,
            event.status.value,
            event.phase.value,
            event.percent,
            sequence,
        )
        return event.model_copy(update={"sequence": sequence})

    async def latest(self, task_id: str) -> ProgressEvent | None:
        """Return the stored latest event of a task, or None when none is stored."""
        raw = await self._redis.get(self._keys.progress_snapshot(task_id))
        if raw is None:
            return None
        return ProgressEvent.model_validate_json(raw)


def estimate(
    processed: int, total: int, started: float, done_before: int
) -> tuple[float | None, float | None]:
    """Return (messages per second, ETA in seconds) of this attempt since ``started``.

    ``done_before`` is the number of messages already saved by earlier attempts, which the
    rate must not count.
    """
    elapsed = time.monotonic() - started
    scanned = processed - done_before
    if elapsed <= 0 or scanned <= 0:
        return None, None
    rate = scanned / elapsed
    return round(rate, 1), round(max(total - processed, 0) / rate, 1)
