"""The worker's periodic cleanup deletes tasks past the retention period with their findings,
and the scanned messages no remaining task refers to."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta

import pytest

from jobs.documents import (
    Finding,
    FindingKind,
    ScannedMessage,
    ScanStatus,
    ScanTask,
    message_key,
    utcnow,
)
from jobs.lifecycle import parse_object_id
from jobs.runtime import Runtime
from tests.scan_harness import Workers, log_lines, rt, workers

pytestmark = pytest.mark.integration

__all__ = ["rt", "workers"]  # fixtures used by the tests below


async def insert_task(user_id: str, account_id: str, status: ScanStatus, age_days: float) -> str:
    finished = utcnow() - timedelta(days=age_days)
    task = ScanTask(
        user_id=user_id,
        account_id=account_id,
        months=1,
        since=finished - timedelta(days=30),
        status=status,
        created_at=finished,
        finished_at=None if status == ScanStatus.RUNNING else finished,
    )
    await task.insert()
    return str(task.id)


async def insert_message(user_id: str, account_id: str, uid: int, task_ids: list[str]) -> str:
    key = message_key(account_id, "INBOX", 1, uid)
    await ScannedMessage(
        id=key,
        user_id=user_id,
        account_id=account_id,
        folder="INBOX",
        uidvalidity=1,
        uid=uid,
        task_ids=task_ids,
    ).insert()
    for task_id in task_ids:
        await Finding(
            id=f"{task_id}:{uid}",
            task_id=task_id,
            user_id=user_id,
            account_id=account_id,
            folder="INBOX",
            uidvalidity=1,
            uid=uid,
            ordinal=0,
            kind=FindingKind.MALFORMED,
            detail="test finding",
        ).insert()
    return key


async def test_cleanup_deletes_expired_tasks(rt: Runtime, workers: Workers) -> None:
    user_id = f"cleanup-{secrets.token_hex(3)}"
    account_id = f"account-{secrets.token_hex(3)}"
    expired = await insert_task(user_id, account_id, ScanStatus.COMPLETED, age_days=40)
    recent = await insert_task(user_id, account_id, ScanStatus.FAILED, age_days=1)
    # A live task is never deleted, however old.
    live = await insert_task(user_id, account_id, ScanStatus.RUNNING, age_days=40)
    only_expired = await insert_message(user_id, account_id, 1, [expired])
    shared = await insert_message(user_id, account_id, 2, [expired, recent])
    only_live = await insert_message(user_id, account_id, 3, [live])

    worker = workers.start(MAILSCAN_RETENTION_DAYS="30")
    deadline = time.monotonic() + 20
    while await ScanTask.get(parse_object_id(expired)) is not None:
        assert time.monotonic() < deadline, "the expired task was not deleted"
        await asyncio.sleep(0.2)

    remaining = {str(task.id) for task in await ScanTask.find({"user_id": user_id}).to_list()}
    assert remaining == {recent, live}
    messages = {
        message.id: message.task_ids
        for message in await ScannedMessage.find({"account_id": account_id}).to_list()
    }
    assert messages == {shared: [recent], only_live: [live]}
    assert only_expired not in messages
    findings = {finding.task_id for finding in await Finding.find({"user_id": user_id}).to_list()}
    assert findings == {recent, live}
    assert log_lines(worker, r"deleted [1-9]\d* tasks finished before .* and [1-9]\d* messages")
