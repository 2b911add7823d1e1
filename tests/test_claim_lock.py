"""Concurrent deliveries of one task: exactly one claims it, on any MongoDB-API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobs.claim_lock import claim_lock
from jobs.documents import ScanStatus, ScanTask, utcnow
from jobs.runtime import Runtime
from jobs.settings import get_settings
from jobs.task_state import claim_task

pytestmark = pytest.mark.integration


@pytest.fixture
async def runtime(services: Any) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(get_settings())
    yield rt
    await rt.close()


async def guarded_claim(rt: Runtime, task_id: str, worker_id: str) -> ScanTask | None:
    async with claim_lock(rt, task_id):
        return await claim_task(task_id, worker_id, lease_s=30)


async def test_one_of_many_claims_wins(runtime: Runtime) -> None:
    task = ScanTask(user_id="claims", account_id="account", months=1, since=utcnow())
    await task.insert()
    task_id = str(task.id)

    claims = await asyncio.gather(
        *(guarded_claim(runtime, task_id, f"worker-{index}") for index in range(8))
    )

    winners = [claim for claim in claims if claim is not None]
    assert len(winners) == 1
    stored = await ScanTask.get(task.id)
    assert stored is not None
    assert stored.status == ScanStatus.RUNNING
    assert stored.attempts == 1
    assert stored.lease_owner == winners[0].lease_owner


async def test_lock_released_after_claim(runtime: Runtime) -> None:
    task_id = "0123456789abcdef01234567"
    async with claim_lock(runtime, task_id):
        assert await runtime.redis.exists(runtime.keys.claim_lock(task_id)) == 1
    assert await runtime.redis.exists(runtime.keys.claim_lock(task_id)) == 0
