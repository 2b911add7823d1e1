"""The progress hub when Redis cannot be reached at all: a port where nothing listens."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from jobs import hub as hub_module
from jobs.hub import ProgressHub, ProgressUnavailableError
from jobs.keys import RedisKeys
from jobs.progress import ProgressEvent
from scripts.services.process import free_port


async def no_state() -> ProgressEvent | None:
    return None


async def test_join_without_redis_raises_and_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "JOIN_TIMEOUT_S", 0.5)
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    hub = ProgressHub(redis, RedisKeys("unreachable"))
    await hub.start()
    try:
        expected = (
            "Redis did not confirm the subscription to unreachable:progress:task-1 within 0.5 s"
        )
        with pytest.raises(ProgressUnavailableError, match=expected):
            async for _ in hub.subscribe_task("task-1", fallback=no_state):
                pass
        assert hub.subscriber_count == 0
        assert hub.channel_count == 0
    finally:
        await hub.stop()
        await redis.aclose()
