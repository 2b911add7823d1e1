"""Permanent failures end FAILED at once, transient ones retry with backoff, a task that keeps
killing its worker ends TOO_MANY_ATTEMPTS, and retryScan resumes from the checkpoint."""

from __future__ import annotations

import re
from typing import Any

import pytest

from jobs.documents import ScanStatus
from jobs.lifecycle import retry_scan
from jobs.runtime import Runtime
from scripts.services.process import free_port
from tests.scan_harness import (
    Workers,
    connect,
    fill_mailbox,
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


async def test_wrong_password_fails_at_once(rt: Runtime, workers: Workers, mail_user: Any) -> None:
    user = mail_user()
    fill_mailbox(user, 3)
    wrong_password = "Wrong-" + user.password
    account_id = await connect(rt, user, password=wrong_password)
    worker = workers.start()

    task_id = await start(rt, user.name, account_id)
    task = await wait_for_status(task_id, ScanStatus.FAILED)

    assert task.attempts == 1
    assert task.error is not None
    assert task.error.code == "AUTH_FAILED"
    assert not task.error.retryable
    assert "Check the username and password" in task.error.message
    assert wrong_password not in task.error.message
    assert log_lines(worker, rf"task {task_id} user {user.name} failed with AUTH_FAILED after 1")
    assert wrong_password not in worker.log_file.read_text(errors="replace")


async def test_missing_folder_fails_at_once(rt: Runtime, workers: Workers, mail_user: Any) -> None:
    user = mail_user()
    fill_mailbox(user, 3)
    account_id = await connect(rt, user, folders=["INBOX", "Archive/2026"])
    workers.start()

    task_id = await start(rt, user.name, account_id)
    task = await wait_for_status(task_id, ScanStatus.FAILED)

    assert task.attempts == 1
    assert task.error is not None
    assert task.error.code == "FOLDER_NOT_FOUND"
    assert "'Archive/2026'" in task.error.message
    assert "check the folder name" in task.error.message


async def test_unverified_certificate_fails_at_once(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    account_id = await connect(rt, user)
    workers.start(MAILSCAN_IMAP_CA_FILE="")

    task_id = await start(rt, user.name, account_id)
    task = await wait_for_status(task_id, ScanStatus.FAILED)

    assert task.attempts == 1
    assert task.error is not None
    assert task.error.code == "TLS_ERROR"
    assert "MAILSCAN_IMAP_CA_FILE" in task.error.message


async def test_refused_connection_retries_then_fails(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    account_id = await connect(rt, user, port=free_port())
    worker = workers.start()

    task_id = await start(rt, user.name, account_id)
    waiting = await wait_for_task(
        task_id, lambda task: task.status == ScanStatus.QUEUED and task.attempts == 1
    )
    task = await wait_for_status(task_id, ScanStatus.FAILED)

    assert waiting.next_retry_at is not None
    assert waiting.error is not None and waiting.error.code == "CONNECTION_FAILED"
    assert task.attempts == 2
    assert task.error is not None
    assert task.error.code == "CONNECTION_FAILED"
    assert task.error.retryable
    assert task.next_retry_at is None
    retries = log_lines(worker, rf"task {task_id} user {user.name} retry 2 in [0-9.]+ s after")
    assert len(retries) == 1
    # Base 0.5 s with +-25% jitter for the first retry.
    delay_s = float(re.findall(r"retry 2 in ([0-9.]+) s", retries[0])[0])
    assert 0.3 <= delay_s <= 0.7


async def test_crashing_task_fails_then_retry_resumes(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    fill_mailbox(user, 50)
    account_id = await connect(rt, user)
    crashing = {"MAILSCAN_FETCH_BATCH_SIZE": "10", "MAILSCAN_CRASH_AFTER_BATCHES": "1"}
    task_id = await start(rt, user.name, account_id)

    # Each attempt saves one batch, then its worker process exits; the next worker's sweeper
    # sends the task again once the lease (3 s) expires. The task allows two attempts.
    for attempt in (1, 2):
        worker = workers.start(**crashing)
        assert wait_for_exit(worker) != 0
        assert log_lines(worker, rf"task {task_id} user {user.name}: exiting the worker")
        crashed = await load_task(task_id)
        assert crashed.attempts == attempt
        assert crashed.checkpoints["INBOX"].saved == 10 * attempt
    last = workers.start(**crashing)
    failed = await wait_for_status(task_id, ScanStatus.FAILED, timeout_s=20)
    last.stop()

    assert failed.attempts == 3
    assert failed.error is not None
    assert failed.error.code == "TOO_MANY_ATTEMPTS"
    assert await saved_messages(account_id) == 20

    worker = workers.start(MAILSCAN_FETCH_BATCH_SIZE="10")
    await retry_scan(rt, user.name, task_id)
    done = await wait_for_status(task_id, ScanStatus.COMPLETED)

    assert done.attempts == 4
    assert done.processed == done.total == 50
    assert await saved_messages(account_id) == 50
    summary = log_lines(worker, rf"task {task_id} user {user.name} completed")
    assert len(summary) == 1
    assert re.search(
        r"completed: 50 messages \(30 fetched by this attempt\), 0 flagged, "
        r"[0-9.]+ s, attempt 4$",
        summary[0],
    ), summary[0]
    for started in workers.started:
        assert user.password not in started.log_file.read_text(errors="replace")
