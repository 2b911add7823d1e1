"""Fan-out of progress events to the subscribers of one API process.

One :class:`ProgressHub` per process holds a single Redis pub/sub connection, whatever the
number of websocket subscribers. Each subscriber has a bounded buffer: when it falls behind,
the oldest intermediate events are dropped, while the latest and the terminal event (always the
last of a task) are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.keys import RedisKeys
from jobs.progress import ProgressEvent

logger = logging.getLogger(__name__)

#: Events buffered per subscriber before the oldest are dropped.
SUBSCRIBER_BUFFER = 16
#: Pause before the reader tries again after losing its Redis connection, in seconds.
RECONNECT_DELAY_S = 0.5


class _Subscriber:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.events: deque[ProgressEvent] = deque(maxlen=SUBSCRIBER_BUFFER)
        self.ready = asyncio.Event()
        #: Set after a reconnect, so the subscriber re-reads the current state.
        self.resync = False

    def push(self, event: ProgressEvent) -> None:
        self.events.append(event)
        self.ready.set()

    async def next_batch(self) -> list[ProgressEvent]:
        await self.ready.wait()
        self.ready.clear()
        batch = list(self.events)
        self.events.clear()
        return batch


class ProgressHub:
    """Shares one Redis pub/sub connection between every subscriber of this process."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=False)
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    @property
    def channel_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="progress-hub-reader")
        self._reader.add_done_callback(_log_reader_exit)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()
        logger.info("progress hub stopped with %d subscribers", self.subscriber_count)

    async def _join(self, channel: str) -> _Subscriber:
        subscriber = _Subscriber(channel)
        async with self._lock:
            group = self._subscribers.setdefault(channel, set())
            group.add(subscriber)
            if len(group) == 1:
                self._confirmed[channel] = asyncio.Event()
                await self._pubsub.subscribe(channel)
            confirmed = self._confirmed[channel]
        # Reading the snapshot before Redis confirms the subscription could miss an event
        # published in between, so wait for the confirmation first.
        await asyncio.wait_for(confirmed.wait(), timeout=10)
        return subscriber

    async def _leave(self, subscriber: _Subscriber) -> None:
        async with self._lock:
            group = self._subscribers.get(subscriber.channel)
            if group is None:
                return
            group.discard(subscriber)
            if not group:
                del self._subscribers[subscriber.channel]
                self._confirmed.pop(subscriber.channel, None)
                try:
                    await self._pubsub.unsubscribe(subscriber.channel)
                except (RedisConnectionError, RedisTimeoutError):
                    # The reconnect in the reader resubscribes only channels still listed.
                    logger.warning(
                        "unsubscribe from %s failed; Redis unreachable", subscriber.channel
                    )

    async def _read_forever(self) -> None:
        while True:
            if not self._pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("progress hub lost Redis (%s); reconnecting", exc)
                await self._reconnect()
                continue
            if message is not None:
                self._dispatch(message)

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_DELAY_S)
            async with self._lock:
                channels = list(self._subscribers)
                try:
                    await self._pubsub.aclose()
                    self._pubsub = self._redis.pubsub(ignore_subscribe_messages=False)
                    for channel in channels:
                        self._confirmed[channel] = asyncio.Event()
                    if channels:
                        await self._pubsub.subscribe(*channels)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    logger.warning("progress hub still cannot reach Redis: %s", exc)
                    continue
            logger.info("progress hub resubscribed to %d channels", len(channels))
            for group in self._subscribers.values():
                for subscriber in group:
                    subscriber.resync = True
                    subscriber.ready.set()
            return

    def _dispatch(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        if kind == "subscribe":
            confirmed = self._confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()
            return
        if kind != "message":
            return

        data = message.get("data")
        if not isinstance(data, bytes | str):
            return
        try:
            event = ProgressEvent.model_validate_json(data)
        except ValueError:
            logger.warning("dropped an invalid progress event on %s", channel)
            return
        for subscriber in self._subscribers.get(channel, ()):
            subscriber.push(event)

    async def _snapshot(self, task_id: str) -> ProgressEvent | None:
        raw = await self._redis.get(self._keys.progress_snapshot(task_id))
        if raw is None:
            return None
        return ProgressEvent.model_validate_json(raw)

    async def subscribe_task(
        self,
        task_id: str,
        fallback: Callable[[], Awaitable[ProgressEvent | None]],
    ) -> AsyncIterator[ProgressEvent]:
        """Yield the current state of a task, then its live events, up to the terminal one.

        ``fallback`` builds the current state from the database when Redis has no snapshot.
        """
        subscriber = await self._join(self._keys.progress_channel(task_id))
        try:
            last_sequence = -1
            current = await self._snapshot(task_id) or await fallback()
            if current is not None:
                last_sequence = current.sequence
                yield current
                if current.is_terminal:
                    return
            while True:
                batch = await subscriber.next_batch()
                if subscriber.resync:
                    subscriber.resync = False
                    current = await self._snapshot(task_id) or await fallback()
                    if current is not None:
                        batch.insert(0, current.model_copy(update={"sequence": -1}))
                for event in batch:
                    if event.sequence != -1 and event.sequence <= last_sequence:
                        continue
                    last_sequence = max(last_sequence, event.sequence)
                    yield event
                    if event.is_terminal:
                        return
        finally:
            await self._leave(subscriber)

    async def subscribe_user(
        self,
        user_id: str,
        current: Callable[[], Awaitable[Iterable[ProgressEvent]]],
    ) -> AsyncIterator[ProgressEvent]:
        """Yield the current state of the user's active tasks, then every live event of the user.

        Never ends by itself; the caller stops iterating when the client unsubscribes.
        """
        subscriber = await self._join(self._keys.user_channel(user_id))
        try:
            seen: dict[str, int] = {}
            pending = list(await current())
            while True:
                for event in pending:
                    if event.sequence > 0 and event.sequence <= seen.get(event.task_id, 0):
                        continue
                    seen[event.task_id] = max(event.sequence, seen.get(event.task_id, 0))
                    yield event
                pending = await subscriber.next_batch()
                if subscriber.resync:
                    subscriber.resync = False
                    pending = [*await current(), *pending]
        finally:
            await self._leave(subscriber)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _log_reader_exit(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("progress hub reader stopped; live progress is lost", exc_info=exc)
