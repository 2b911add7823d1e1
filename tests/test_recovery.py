"""Recovery of running scans: a worker killed mid-scan, a duplicate delivery, a worker stopped
with SIGTERM, and lost broker messages. Real Dovecot, FerretDB, Redis and worker processes."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from jobs.dispatch import message_queued, send_scan
from jobs.documents import ImapSecurity, ScanStatus, ScanTask, utcnow
from jobs.lifecycle import cancel_scan, parse_object_id
from jobs.runtime import Runtime
from jobs.sweeper import rescue_expired
from scripts.services.apps import WorkerProcess
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

#: Small batches make a scan of 1,500 messages last several seconds (about 12 ms a batch).
SLOW_SCAN = {"MAILSCAN_FETCH_BATCH_SIZE": "3"}
MAILBOX_SIZE = 1500


def owner_and_survivor(
    pair: tuple[WorkerProcess, WorkerProcess], running: ScanTask
) -> tuple[WorkerProcess, WorkerProcess]:
    """Split two single-process workers into the one whose child holds the lease and the other."""
    owner_pid = lease_owner_pid(running)
    for index, worker in enumerate(pair):
        if f"[PID {owner_pid}]" in worker.log_file.read_text(errors="replace"):
            return worker, pair[1 - index]
    raise AssertionError(f"no worker log names pid {owner_pid}")


async def test_killed_worker_scan_resumes(
    rt: Runtime, workers: Workers, mail_user: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    user = mail_user()
    fill_mailbox(user, MAILBOX_SIZE)
    account_id = await connect(rt, user)
    pair = (workers.start(**SLOW_SCAN), workers.start(**SLOW_SCAN))

    task_id = await start(rt, user.name, account_id)
    async with ProgressRecorder(rt, task_id) as progress:
        running = await wait_for_task(task_id, lambda task: task.processed >= 150)
        assert running.processed < MAILBOX_SIZE, "the scan finished before the kill"
        first, second = owner_and_survivor(pair, running)

        killed_at = time.monotonic()
        kill_process(lease_owner_pid(running))
        seen_before_kill = len(progress.events)
        assert wait_for_exit(first) != 0

        resumed = await wait_for_task(
            task_id, lambda task: task.attempts == 2 and task.status == ScanStatus.RUNNING
        )
        recovered_s = time.monotonic() - killed_at
        done = await wait_for_status(task_id, ScanStatus.COMPLETED, timeout_s=60)
        await progress.wait_for("COMPLETED")

    with capsys.disabled():
        print(f"\nkilled worker: task taken over after {recovered_s:.1f} s")
    assert recovered_s < 10, "lease 3 s + sweep 0.5 s should bound the takeover"
    assert resumed.lease_owner != running.lease_owner
    assert done.attempts == 2
    assert done.processed == done.total == MAILBOX_SIZE
    assert done.summary is not None and done.summary.messages == MAILBOX_SIZE
    assert await saved_messages(account_id) == MAILBOX_SIZE
    after_kill = progress.events[seen_before_kill:]
    assert after_kill[0]["status"] == "RUNNING"
    assert after_kill[0]["phase"] == "connecting", "the first event after the kill is not a restart"
    assert after_kill[-1]["status"] == "COMPLETED"
    assert {event["status"] for event in after_kill} == {"RUNNING", "COMPLETED"}
    assert log_lines(second, rf"task {task_id} .*lease of .* expired"), "no rescue logged"
    completed = log_lines(second, rf"task {task_id} user {user.name} completed")
    assert len(completed) == 1
    # The new attempt fetches exactly what the killed one had not checkpointed. Its FETCHING
    # event gives the checkpointed count it started from; the task document read above may
    # already include batches the new attempt saved.
    fetching = next(event for event in after_kill if event["phase"] == "fetching")
    saved_by_killed = fetching["processed"]
    assert saved_by_killed >= 150
    assert f"({MAILBOX_SIZE - saved_by_killed} fetched by this attempt)" in completed[0]
    second.stop()
    assert log_lines(second, r"sweeper stopped: [1-9]\d* tasks rescued, \d+ resent")


async def test_duplicate_delivery_does_no_work(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    fill_mailbox(user, MAILBOX_SIZE)
    account_id = await connect(rt, user)
    pair = (workers.start(**SLOW_SCAN), workers.start(**SLOW_SCAN))

    task_id = await start(rt, user.name, account_id)
    running = await wait_for_task(task_id, lambda task: task.processed >= 30)
    await send_scan(rt, running)

    done = await wait_for_status(task_id, ScanStatus.COMPLETED, timeout_s=60)
    assert done.attempts == 1
    assert await saved_messages(account_id) == MAILBOX_SIZE
    # Either worker may receive the duplicate, the lease holder included (it has 4 threads).
    skipped = [
        line for worker in pair for line in log_lines(worker, rf"task {task_id} not claimed")
    ]
    assert len(skipped) == 1, "no worker received the duplicate"
    started = [
        line for worker in pair for line in log_lines(worker, rf"task {task_id} .*started by")
    ]
    assert len(started) == 1


async def test_sigterm_hands_task_over(rt: Runtime, workers: Workers, mail_user: Any) -> None:
    user = mail_user()
    fill_mailbox(user, MAILBOX_SIZE)
    account_id = await connect(rt, user)
    pair = (workers.start(**SLOW_SCAN), workers.start(**SLOW_SCAN))

    task_id = await start(rt, user.name, account_id)
    async with ProgressRecorder(rt, task_id) as progress:
        running = await wait_for_task(task_id, lambda task: task.processed >= 150)
        first, _ = owner_and_survivor(pair, running)
        stopped_at = time.monotonic()
        first.stop()
        assert first.process is not None and first.process.returncode == 0

        released = await load_task(task_id)
        resumed = await wait_for_task(task_id, lambda task: task.attempts == 2, timeout_s=15)
        handover_s = time.monotonic() - stopped_at
        done = await wait_for_status(task_id, ScanStatus.COMPLETED, timeout_s=60)
        await progress.wait_for("COMPLETED")

    assert handover_s < 5, f"takeover after SIGTERM took {handover_s:.1f} s"
    assert released.status == ScanStatus.QUEUED or released.attempts == 2
    assert resumed.lease_owner != running.lease_owner
    assert released.checkpoints["INBOX"].saved > 0
    assert log_lines(first, rf"task {task_id} user {user.name} released by .* at shutdown")
    assert done.attempts == 2
    assert await saved_messages(account_id) == MAILBOX_SIZE
    assert "QUEUED" in progress.statuses()
    assert progress.statuses()[-2:] == ["RUNNING", "COMPLETED"]


async def test_lost_queued_message_sent_again(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    fill_mailbox(user, 20)
    account_id = await connect(rt, user)
    task_id = await start(rt, user.name, account_id)

    queued = await load_task(task_id)
    assert queued.status == ScanStatus.QUEUED
    assert await message_queued(rt, queued)

    # Lose the message the way a Redis restart without persistence does.
    namespace = f"{rt.settings.redis_prefix}-dramatiq"
    queue = rt.settings.queue_name
    await rt.redis.delete(f"{namespace}:{queue}", f"{namespace}:{queue}.msgs")
    assert not await message_queued(rt, queued)

    worker = workers.start(MAILSCAN_LOST_MESSAGE_GRACE_S="1")
    done = await wait_for_status(task_id, ScanStatus.COMPLETED, timeout_s=30)
    assert done.attempts == 1
    assert done.message_id != queued.message_id
    assert log_lines(worker, rf"task {task_id} .*missing from the broker; sent again")
    assert await saved_messages(account_id) == 20


async def test_sigterm_aborts_stalled_fetch(rt: Runtime, workers: Workers) -> None:
    script = StallingMailbox()
    server = script.serve()
    try:
        account_id = await connect(rt, SCRIPTED_USER, port=server.port, security=ImapSecurity.NONE)
        worker = workers.start(
            MAILSCAN_FETCH_BATCH_SIZE="1",
            MAILSCAN_IMAP_TIMEOUT_S="120",
            MAILSCAN_SHUTDOWN_GRACE_S="1",
        )
        task_id = await start(rt, SCRIPTED_USER.name, account_id)
        deadline = time.monotonic() + 20
        while not script.fetch_stalled(server):
            assert time.monotonic() < deadline, f"no stalled FETCH: {server.received}"
            await asyncio.sleep(0.05)

        stopped_at = time.monotonic()
        worker.stop()
        stop_s = time.monotonic() - stopped_at
    finally:
        server.close()

    assert worker.process is not None and worker.process.returncode == 0
    assert stop_s < 10, f"the worker took {stop_s:.1f} s to stop"
    task = await load_task(task_id)
    assert task.status == ScanStatus.QUEUED
    assert task.lease_owner is None
    assert task.checkpoints["INBOX"].saved == 1
    assert await saved_messages(account_id) == 1
    assert log_lines(worker, rf"task {task_id} user {SCRIPTED_USER.name} stopping: worker shutting")
    released = log_lines(worker, rf"task {task_id} user {SCRIPTED_USER.name} released by")
    assert len(released) == 1
    namespace = f"{rt.settings.redis_prefix}-dramatiq"
    queued = await rt.redis.hexists(
        f"{namespace}:{rt.settings.queue_name}.msgs", task.broker_message_id or ""
    )
    assert queued, "the released task was not sent again"
    # The scripted server is gone, so the task must not run again in a later test.
    await cancel_scan(rt, SCRIPTED_USER.name, task_id)


async def test_rescue_not_repeated_while_queued(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    account_id = await connect(rt, user)
    task_id = await start(rt, user.name, account_id)
    # No worker runs: the task looks claimed by a worker that died 10 s ago.
    collection = ScanTask.get_pymongo_collection()
    expired = utcnow() - timedelta(seconds=10)
    await collection.update_one(
        {"_id": parse_object_id(task_id)},
        {
            "$set": {
                "status": ScanStatus.RUNNING.value,
                "lease_owner": "dead-host:1:dead",
                "lease_expires_at": expired,
                "attempts": 1,
            }
        },
    )
    original = await load_task(task_id)

    await rescue_expired(rt)
    rescued = await load_task(task_id)
    assert rescued.rescued_at is not None
    assert rescued.message_id != original.message_id
    assert await message_queued(rt, rescued)

    await rescue_expired(rt)
    assert (await load_task(task_id)).message_id == rescued.message_id

    # A lease length later the rescue message still waits, so it is not sent again.
    long_ago = utcnow() - timedelta(seconds=2 * rt.settings.lease_s)
    await collection.update_one({"_id": rescued.id}, {"$set": {"rescued_at": long_ago}})
    await rescue_expired(rt)
    assert (await load_task(task_id)).message_id == rescued.message_id

    namespace = f"{rt.settings.redis_prefix}-dramatiq"
    queue = rt.settings.queue_name
    await rt.redis.delete(f"{namespace}:{queue}", f"{namespace}:{queue}.msgs")
    # The skipped sweep counted as a look at the task: the next one is due a lease later.
    await collection.update_one({"_id": rescued.id}, {"$set": {"rescued_at": long_ago}})
    await rescue_expired(rt)
    again = await load_task(task_id)
    assert again.message_id != rescued.message_id
    assert await message_queued(rt, again)
    await cancel_scan(rt, user.name, task_id)
