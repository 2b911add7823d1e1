"""Cancellation seen from the worker: a queued task never starts, and a running scan stops
within about a second even while a FETCH waits on a server that sends no reply."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from jobs.documents import ImapSecurity, ScanStatus
from jobs.lifecycle import cancel_scan
from jobs.runtime import Runtime
from tests.scan_harness import (
    SCRIPTED_USER,
    ProgressRecorder,
    StallingMailbox,
    Workers,
    connect,
    fill_mailbox,
    kill_process,
    lease_owner_pid,
    load_task,
    log_lines,
    rt,
    saved_messages,
    start,
    wait_for_exit,
    wait_for_status,
    wait_for_task,
    workers,
)

pytestmark = pytest.mark.integration

__all__ = ["rt", "workers"]  # fixtures used by the tests below


async def test_queued_cancel_never_starts(rt: Runtime, workers: Workers, mail_user: Any) -> None:
    user = mail_user()
    account_id = await connect(rt, user)
    task_id = await start(rt, user.name, account_id)

    cancelled = await cancel_scan(rt, user.name, task_id)
    assert cancelled.status == ScanStatus.CANCELLED

    worker = workers.start()
    deadline = time.monotonic() + 15
    while not log_lines(worker, rf"task {task_id} not claimed"):
        assert time.monotonic() < deadline, "the worker never received the cancelled task"
        await asyncio.sleep(0.1)
    task = await load_task(task_id)
    assert task.status == ScanStatus.CANCELLED
    assert task.attempts == 0
    assert task.started_at is None
    assert not log_lines(worker, rf"task {task_id} .*started by")


async def test_cancel_interrupts_stalled_fetch(
    rt: Runtime, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    script = StallingMailbox()
    server = script.serve()
    user = SCRIPTED_USER
    try:
        account_id = await connect(rt, user, port=server.port, security=ImapSecurity.NONE)
        workers.start(MAILSCAN_FETCH_BATCH_SIZE="1", MAILSCAN_IMAP_TIMEOUT_S="120")
        task_id = await start(rt, user.name, account_id)

        async with ProgressRecorder(rt, task_id) as progress:
            deadline = time.monotonic() + 20
            while not script.fetch_stalled(server):
                assert time.monotonic() < deadline, f"no stalled FETCH: {server.received}"
                await asyncio.sleep(0.05)

            requested_at = time.monotonic()
            cancelling = await cancel_scan(rt, user.name, task_id)
            done = await wait_for_status(task_id, ScanStatus.CANCELLED, timeout_s=5)
            stopped_s = time.monotonic() - requested_at
            await progress.wait_for("CANCELLED", timeout_s=5)
    finally:
        server.close()

    with capsys.disabled():
        print(f"\nstalled FETCH: cancelled {stopped_s:.2f} s after the request")
    assert cancelling.status == ScanStatus.CANCELLING
    assert stopped_s < 3, f"cancel took {stopped_s:.1f} s"
    assert progress.statuses()[-2:] == ["CANCELLING", "CANCELLED"]
    assert done.summary is not None and done.summary.messages == 1
    assert done.processed == done.summary.messages
    assert await saved_messages(account_id) == 1
    assert await rt.redis.exists(rt.keys.cancel_flag(task_id)) == 0


async def test_cancel_lands_after_worker_died(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    fill_mailbox(user, 1500)
    account_id = await connect(rt, user)
    doomed = workers.start(MAILSCAN_FETCH_BATCH_SIZE="3")
    task_id = await start(rt, user.name, account_id)
    running = await wait_for_task(task_id, lambda task: task.processed >= 30)
    kill_process(lease_owner_pid(running))
    assert wait_for_exit(doomed) != 0

    async with ProgressRecorder(rt, task_id) as progress:
        cancelling = await cancel_scan(rt, user.name, task_id)
        assert cancelling.status == ScanStatus.CANCELLING
        rescuer = workers.start()
        done = await wait_for_status(task_id, ScanStatus.CANCELLED, timeout_s=15)
        await progress.wait_for("CANCELLED", timeout_s=5)

    assert done.attempts == 2
    assert done.lease_owner is None
    assert progress.statuses() == ["CANCELLING", "CANCELLED"]
    # The killed attempt may have saved one batch (3 messages) after its last checkpoint.
    checkpointed = done.checkpoints["INBOX"].saved
    assert checkpointed <= await saved_messages(account_id) <= checkpointed + 3
    assert await rt.redis.exists(rt.keys.cancel_flag(task_id)) == 0
    assert log_lines(rescuer, rf"task {task_id} user {user.name} cancelled before it ran again")
