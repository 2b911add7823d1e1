"""The progress publisher against the real Redis: sequence, snapshot, throttling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from jobs.documents import ScanPhase, ScanStatus, utcnow
from jobs.keys import RedisKeys
from jobs.progress import ProgressEvent, ProgressPublisher

pytestmark = pytest.mark.integration

KEYS = RedisKeys("publisher-test")


@pytest.fixture
async def redis(services: Any) -> AsyncIterator[Redis]:
    client = Redis.from_url(services.redis_url)
    yield client
    await client.aclose()


def event(
    task_id: str, status: ScanStatus = ScanStatus.RUNNING, percent: float = 0
) -> ProgressEvent:
    return ProgressEvent(
        task_id=task_id,
        user_id="publisher-user",
        status=status,
        phase=ScanPhase.FETCHING,
        percent=percent,
        updated_at=utcnow(),
    )


async def test_sequence_grows_by_one(redis: Redis) -> None:
    publisher = ProgressPublisher(redis, KEYS, interval_s=0, ttl_s=60)
    sent = [await publisher.publish(event("grow", percent=step)) for step in range(3)]
    assert [item.sequence for item in sent if item is not None] == [1, 2, 3]

    latest = await publisher.latest("grow")
    assert latest is not None
    assert latest.sequence == 3
    assert latest.percent == 2


async def test_sequence_survives_lost_counter(redis: Redis) -> None:
    publisher = ProgressPublisher(redis, KEYS, interval_s=0, ttl_s=60)
    for step in range(3):
        await publisher.publish(event("lost", percent=step))
    # A Redis restarted without persistence has no counter any more.
    await redis.delete(KEYS.progress_sequence("lost"))

    after = await publisher.publish(event("lost", percent=3))
    assert after is not None
    assert after.sequence == 4


async def test_intermediate_events_are_throttled(redis: Redis) -> None:
    publisher = ProgressPublisher(redis, KEYS, interval_s=60, ttl_s=60)
    first = await publisher.publish(event("throttle", percent=1))
    dropped = await publisher.publish(event("throttle", percent=2))
    forced = await publisher.publish(event("throttle", percent=3), force=True)
    terminal = await publisher.publish(event("throttle", ScanStatus.COMPLETED, 100))

    assert first is not None
    assert dropped is None
    assert forced is not None
    assert terminal is not None
    assert [first.sequence, forced.sequence, terminal.sequence] == [1, 2, 3]
