"""Concurrent writes to one task document on the real MongoDB-API server.

FerretDB 1.24 applies an update by reading the document and writing it back, so two updates of
one document at the same moment can undo each other. These tests race the writes the code
makes at the same moment and check that both survive every time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from dramatiq import Message

import jobs.actors
from jobs.claim_lock import claim_lock
from jobs.dispatch import send_scan
from jobs.documents import FolderCheckpoint, ScanStatus, ScanTask, utcnow
from jobs.runtime import Runtime
from jobs.task_state import claim_task, renew_lease, save_checkpoint
from tests.scan_harness import rt

__all__ = ["rt"]

#: Races per test; one lost update in any of them fails the test.
RACES = 20


async def queued_task() -> ScanTask:
    now = utcnow()
    task = ScanTask(user_id="writes-test", account_id="none", months=1, since=now, created_at=now)
    await task.insert()
    return task


def fake_send(**options: Any) -> Any:
    """Build the message Dramatiq would send, without putting it on a queue a worker reads."""

    def send_with_options(*, args: tuple[str], delay: int | None = None) -> Message[Any]:
        message = jobs.actors.scan_mailbox.message_with_options(args=args)
        return message.copy(options={"redis_message_id": f"redis-{args[0]}", **options})

    return send_with_options


async def test_send_record_keeps_racing_claim(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs.actors.scan_mailbox, "send_with_options", fake_send())
    tasks = [await queued_task() for _ in range(RACES)]

    async def claim(task: ScanTask) -> None:
        # A worker claims under the claim lock (jobs.scan.run_scan).
        async with claim_lock(rt, str(task.id)):
            await claim_task(str(task.id), "racing-worker", 30)

    for task in tasks:
        await asyncio.gather(send_scan(rt, task), claim(task))

    for task in tasks:
        stored = await ScanTask.get(task.id)
        assert stored is not None
        assert stored.status == ScanStatus.RUNNING, f"claim of {task.id} undone"
        assert stored.lease_owner == "racing-worker"
        assert stored.broker_message_id == f"redis-{task.id}", f"send record of {task.id} lost"


async def test_lease_renewal_keeps_racing_checkpoint(rt: Runtime) -> None:
    for index in range(RACES):
        task = await queued_task()
        claimed = await claim_task(str(task.id), "worker", 30)
        assert claimed is not None
        checkpoint = FolderCheckpoint(uidvalidity=7, last_uid=index + 1, saved=index + 1)

        renewed, owned = await asyncio.gather(
            renew_lease(claimed, "worker", 600),
            save_checkpoint(claimed, "worker", "INBOX", checkpoint, {"processed": index + 1}),
        )

        assert renewed is not None and owned
        stored = await ScanTask.get(task.id)
        assert stored is not None
        assert stored.checkpoints["INBOX"] == checkpoint, "checkpoint undone by the renewal"
        assert stored.lease_expires_at is not None
        assert stored.lease_expires_at > utcnow() + timedelta(seconds=300), "renewal undone"
