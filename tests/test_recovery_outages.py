"""A scan survives Redis or the database (FerretDB) restarting in the middle of it.

These tests stop and start the session's servers, so later tests in the session get fresh
Redis contents; the database keeps its data in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
