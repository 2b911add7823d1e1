"""Fan-out of progress events to the subscribers of one API process.

One :class:`ProgressHub` per process uses a single Redis pub/sub connection, whatever the
number of websocket subscribers. Each subscriber has a bounded buffer: when it falls behind,
the oldest intermediate events are dropped, while the latest and the terminal event (always the
last of a task) are kept.

When the pub/sub connection breaks (Redis restarted, network error), the reader opens a new one
and subscribes every channel that still has subscribers. Once Redis confirms a channel again,
each of its subscribers drops what it had buffered and re-reads the current state, because
events published while the connection was down are lost and a restarted Redis without
persistence also lost the snapshots and sequence counters.
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

from jobs.documents import ScanTask
from jobs.keys import RedisKeys
from jobs.lifecycle import parse_object_id
from jobs.progress import ProgressEvent, event_from_task

logger = logging.getLogger(__name__)

#: Events buffered per subscriber before the oldest are dropped.
SUBSCRIBER_BUFFER = 16
#: First pause before the reader reconnects after losing Redis, in seconds; doubles per failure.
RECONNECT_DELAY_S = 0.2
#: Maximum pause between two reconnection attempts, in seconds.
RECONNECT_MAX_DELAY_S = 2.0
#: Time Redis has to confirm a new subscription before the subscriber gives up, in seconds.
JOIN_TIMEOUT_S = 10.0
#: Maximum wait of the reader for a message before it sends pending (un)subscriptions, in
#: seconds; it bounds how long a new subscriber waits for its SUBSCRIBE to go out.
READ_INTERVAL_S = 0.05

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class ProgressUnavailableError(Exception):
    """Redis did not confirm a progress subscription in time, so no live event can arrive."""


class _Subscriber:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.events: deque[ProgressEvent] = deque(maxlen=SUBSCRIBER_BUFFER)
        self.ready = asyncio.Event()
        #: Set after a resubscription, so the subscriber re-reads the current state.
        self.resync = False

    def push(self, event: ProgressEvent) -> None:
        self.events.append(event)
        self.ready.set()

    def request_resync(self) -> None:
        # Buffered events may predate the outage and be older than the state read next.
        self.events.clear()
        self.resync = True
        self.ready.set()

    async def next_batch(self) -> list[ProgressEvent]:
        await self.ready.wait()
        self.ready.clear()
        batch = list(self.events)
        self.events.clear()
        return batch


class _Channel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: set[_Subscriber] = set()
        #: Set once Redis confirms the subscription; a later confirmation is a resubscription.
        self.confirmed = asyncio.Event()


class ProgressHub:
    """Shares one Redis pub/sub connection between every subscriber of this process."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._pubsub: PubSub = redis.pubsub()
        self._channels: dict[str, _Channel] = {}
        self._lock = asyncio.Lock()
        #: Channel -> True to subscribe, False to unsubscribe; applied by the reader.
        self._pending: dict[str, bool] = {}
        #: Set when a channel is listed or dropped, to wake an idle reader.
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        #: Set when a command on the pub/sub connection failed, until the reader replaces it.
        self._broken = False
        #: Pub/sub connections opened again after a failure, since start.
        self.reconnects = 0

    @property
    def subscriber_count(self) -> int:
        return sum(len(channel.subscribers) for channel in self._channels.values())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="progress-hub-reader")
        self._reader.add_done_callback(_log_reader_exit)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()
        logger.info(
            "progress hub stopped with %d subscribers on %d channels after %d reconnects",
            self.subscriber_count,
            self.channel_count,
            self.reconnects,
        )

    async def _join(self, channel_name: str) -> _Subscriber:
        subscriber = _Subscriber(channel_name)
        async with self._lock:
            channel = self._channels.get(channel_name)
            if channel is None:
                channel = self._channels[channel_name] = _Channel(channel_name)
                self._pending[channel_name] = True
                self._wake.set()
            channel.subscribers.add(subscriber)
        # Reading the snapshot before Redis confirms the subscription could miss an event
        # published in between, so wait for the confirmation first.
        try:
            await asyncio.wait_for(channel.confirmed.wait(), timeout=JOIN_TIMEOUT_S)
        except TimeoutError:
            await self._leave(subscriber)
            raise ProgressUnavailableError(
                f"Redis did not confirm the subscription to {channel_name} within "
                f"{JOIN_TIMEOUT_S} s"
            ) from None
        return subscriber

    async def _leave(self, subscriber: _Subscriber) -> None:
        async with self._lock:
            channel = self._channels.get(subscriber.channel)
            if channel is None:
                return
            channel.subscribers.discard(subscriber)
            if channel.subscribers:
                return
            del self._channels[subscriber.channel]
            self._pending[subscriber.channel] = False
            self._wake.set()

    async def _read_forever(self) -> None:
        # NOTE: only this task uses the pub/sub connection. redis-py reconnects inside a
        # command and reads the handshake replies there, so a SUBSCRIBE sent by a joining
        # subscriber while this task reads failed with "readuntil() called while another
        # coroutine is already waiting for incoming data" after a Redis restart.
        failures = 0
        while True:
            if not self._channels and not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if self._broken:
                    await self._resubscribe()
                    continue
                await self._apply_pending()
                if self._pubsub.connection is None:
                    await asyncio.sleep(READ_INTERVAL_S)
                    continue
                message = await self._pubsub.get_message(timeout=READ_INTERVAL_S)
                if message is not None:
                    await self._dispatch(message)
                failures = 0
            except _REDIS_ERRORS as exc:
                self._broken = True
                failures += 1
                delay_s = min(RECONNECT_DELAY_S * 2 ** (failures - 1), RECONNECT_MAX_DELAY_S)
                log = logger.warning if failures == 1 else logger.debug
                log("progress hub lost Redis (%s); reconnecting in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)

    async def _apply_pending(self) -> None:
        """Send the SUBSCRIBE and UNSUBSCRIBE commands that joins and leaves asked for."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            subscribe = [
                name for name, requested in pending.items() if requested and name in self._channels
            ]
            unsubscribe = [
                name
                for name, requested in pending.items()
                if not requested and name not in self._channels
            ]
            try:
                if subscribe:
                    await self._pubsub.subscribe(*subscribe)
                if unsubscribe and self._pubsub.connection is not None:
                    await self._pubsub.unsubscribe(*unsubscribe)
            except _REDIS_ERRORS:
                # The resubscription after the reconnect covers every listed channel.
                self._broken = True
                raise

    async def _resubscribe(self) -> None:
        """Replace the broken pub/sub connection and subscribe every listed channel again."""
        async with self._lock:
            await self._pubsub.aclose()
            self._pubsub = self._redis.pubsub()
            self._pending.clear()
            names = list(self._channels)
            if names:
                await self._pubsub.subscribe(*names)
            self._broken = False
        self.reconnects += 1
        logger.info("progress hub reconnected to Redis and resubscribed %d channels", len(names))

    async def _dispatch(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel_name = _text(message.get("channel"))
        channel = self._channels.get(channel_name)
        if kind == "subscribe":
            await self._confirm(channel_name, channel)
            return
        if kind != "message" or channel is None:
            return

        data = message.get("data")
        if not isinstance(data, bytes | str):
            return
        try:
            event = ProgressEvent.model_validate_json(data)
        except ValueError:
            logger.warning("dropped an invalid progress event on %s", channel_name)
            return
        for subscriber in channel.subscribers:
            subscriber.push(event)

    async def _confirm(self, channel_name: str, channel: _Channel | None) -> None:
        if channel is None:
            # Every subscriber left while Redis was unreachable, and redis-py subscribed the
            # channel again when it reconnected by itself.
            async with self._lock:
                if channel_name not in self._channels:
                    await self._pubsub.unsubscribe(channel_name)
            return
        if not channel.confirmed.is_set():
            channel.confirmed.set()
            return
        for subscriber in channel.subscribers:
            subscriber.request_resync()

    async def _snapshot(self, task_id: str) -> ProgressEvent | None:
        raw = await self._redis.get(self._keys.progress_snapshot(task_id))
        if raw is None:
            return None
        return ProgressEvent.model_validate_json(raw)

    async def _stored_state(self, task_id: str) -> ProgressEvent | None:
        """Return the task's snapshot, or its state built from the task document."""
        snapshot = await self._snapshot(task_id)
        if snapshot is not None:
            return snapshot
        object_id = parse_object_id(task_id)
        task = await ScanTask.get(object_id) if object_id is not None else None
        return event_from_task(task) if task is not None else None

    async def _user_states(
        self, current: Callable[[], Awaitable[Iterable[ProgressEvent]]], active: set[str]
    ) -> list[ProgressEvent]:
        """Return ``current()`` plus the stored state of each ``active`` task it omits."""
        states = list(await current())
        listed = {event.task_id for event in states}
        for task_id in sorted(active - listed):
            state = await self._stored_state(task_id)
            if state is not None:
                states.append(state)
        return states

    async def subscribe_task(
        self,
        task_id: str,
        fallback: Callable[[], Awaitable[ProgressEvent | None]],
    ) -> AsyncIterator[ProgressEvent]:
        """Yield the current state of a task, then its live events, up to the terminal one.

        ``fallback`` builds the current state from the database when Redis has no snapshot.
        After a resubscription the current state is yielded again, even if unchanged. Raises
        :class:`ProgressUnavailableError` when Redis does not confirm the subscription.
        """
        subscriber = await self._join(self._keys.progress_channel(task_id))
        try:
            last_sequence = -1
            batch: list[ProgressEvent] = []
            subscriber.resync = True
            while True:
                if subscriber.resync:
                    subscriber.resync = False
                    current = await self._snapshot(task_id) or await fallback()
                    if current is not None:
                        # Reset, not max: a restarted Redis counts sequences from 1 again.
                        last_sequence = current.sequence
                        yield current
                        if current.is_terminal:
                            return
                for event in batch:
                    if event.sequence <= last_sequence:
                        continue
                    last_sequence = event.sequence
                    yield event
                    if event.is_terminal:
                        return
                batch = await subscriber.next_batch()
        finally:
            await self._leave(subscriber)

    async def subscribe_user(
        self,
        user_id: str,
        current: Callable[[], Awaitable[Iterable[ProgressEvent]]],
    ) -> AsyncIterator[ProgressEvent]:
        """Yield the current state of the user's active tasks, then every live event of the user.

        After a resubscription the current states are yielded again, and so is the stored state
        of each task that this subscriber last saw active and that ``current`` no longer lists
        (it ended while Redis was unreachable). Never ends by itself; the caller stops
        iterating when the client unsubscribes.
        """
        subscriber = await self._join(self._keys.user_channel(user_id))
        try:
            seen: dict[str, int] = {}
            active: set[str] = set()
            pending: list[ProgressEvent] = []
            subscriber.resync = True
            while True:
                if subscriber.resync:
                    subscriber.resync = False
                    states = await self._user_states(current, active)
                    seen = {event.task_id: event.sequence for event in states}
                    for event in states:
                        _track(active, event)
                        yield event
                for event in pending:
                    if event.sequence <= seen.get(event.task_id, 0):
                        continue
                    seen[event.task_id] = event.sequence
                    _track(active, event)
                    yield event
                pending = await subscriber.next_batch()
        finally:
            await self._leave(subscriber)


def _track(active: set[str], event: ProgressEvent) -> None:
    if event.is_terminal:
        active.discard(event.task_id)
    else:
        active.add(event.task_id)


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
