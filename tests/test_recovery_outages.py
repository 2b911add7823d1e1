"""A scan survives Redis or the database (FerretDB) restarting in the middle of it.

These tests stop and start the session's servers, so later tests in the session get fresh
Redis contents; the database keeps its data in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from jobs.documents import ScanStatus
from jobs.runtime import Runtime
from tests.scan_harness import (
    Workers,
    connect,
    fill_mailbox,
    log_lines,
    rt,
    saved_messages,
    start,
    wait_for_status,
    wait_for_task,
    workers,
)

pytestmark = pytest.mark.integration

__all__ = ["rt", "workers"]  # fixtures used by the tests below

SLOW_SCAN = {"MAILSCAN_FETCH_BATCH_SIZE": "3"}
MAILBOX_SIZE = 1500


async def test_scan_survives_redis_restart(
    rt: Runtime,
    workers: Workers,
    mail_user: Any,
    redis_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = mail_user()
    fill_mailbox(user, MAILBOX_SIZE)
    account_id = await connect(rt, user)
    worker = workers.start(**SLOW_SCAN)

    task_id = await start(rt, user.name, account_id)
    before = await wait_for_task(task_id, lambda task: task.processed >= 150)
    redis_server.stop()
    await asyncio.sleep(1)
    redis_server.start()
    restarted_at = time.monotonic()

    done = await wait_for_status(task_id, ScanStatus.COMPLETED, timeout_s=60)
    with capsys.disabled():
        print(
            f"\nRedis restart at {before.processed} messages: completed "
            f"{time.monotonic() - restarted_at:.1f} s later, attempts {done.attempts}"
        )
    assert done.processed == done.total == MAILBOX_SIZE
    assert await saved_messages(account_id) == MAILBOX_SIZE
    assert not log_lines(worker, r"\[ERROR\]")
    skipped = log_lines(worker, rf"task {task_id} user {user.name}: progress events not published")
    assert len(skipped) == 1, "the outage was not noticed, or logged once per event"
    assert log_lines(worker, rf"task {task_id} user {user.name}: progress published again")


async def test_scan_survives_database_restart(
    rt: Runtime,
    workers: Workers,
    mail_user: Any,
    mongodb_server: Any,
    api_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = mail_user()
    fill_mailbox(user, MAILBOX_SIZE)
    account_id = await connect(rt, user)
    worker = workers.start(**SLOW_SCAN)

    task_id = await start(rt, user.name, account_id)
    before = await wait_for_task(task_id, lambda task: task.processed >= 150)
    mongodb_server.stop()
    await asyncio.sleep(1)
    mongodb_server.start()
    restarted_at = time.monotonic()

    done = await wait_for_status(task_id, ScanStatus.COMPLETED, timeout_s=60)
    with capsys.disabled():
        print(
            f"\ndatabase restart at {before.processed} messages: completed "
            f"{time.monotonic() - restarted_at:.1f} s later, attempts {done.attempts}"
        )
    assert done.processed == done.total == MAILBOX_SIZE
    assert await saved_messages(account_id) == MAILBOX_SIZE
    assert not log_lines(worker, r"\[ERROR\]")
    await refresh_api_pool(api_server.http_url)


async def refresh_api_pool(http_url: str) -> None:
    """Make the session's API process drop its connections to the restarted database.

    NOTE: the first operation on each stale pooled connection fails (SERVICE_UNAVAILABLE);
    /readyz pings the database, and one failed ping makes pymongo clear the whole pool, so
    later tests that share this API process are not hit.
    """
    async with httpx.AsyncClient(base_url=http_url, timeout=10) as client:
        for _ in range(20):
            if (await client.get("/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.25)
    raise AssertionError("the API did not become ready after the database restart")
