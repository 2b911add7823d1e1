"""Cancellation seen from the worker: a queued task never starts, and a running scan stops
within about a second even while a FETCH waits on a server that does not answer."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.documents import ImapSecurity, ScanStatus
from jobs.lifecycle import cancel_scan
from jobs.runtime import Runtime
from tests.scan_harness import (
    ProgressRecorder,
    Workers,
    connect,
    load_task,
    log_lines,
    make_message,
    rt,
    saved_messages,
    start,
    wait_for_status,
    workers,
)
from tests.test_imap_scripted import ScriptedServer

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


STALLED_FETCH = b"UID FETCH 11 (UID BODY.PEEK[])"


class StallingMailbox:
    """Script of a two-message mailbox whose second body FETCH never gets a reply."""

    def __init__(self) -> None:
        self.bodies = {10: make_message(1), 11: make_message(2)}
        day = (datetime.now(UTC) - timedelta(days=1)).strftime("%d-%b-%Y")
        self.internal_date = f"{day} 10:00:00 +0000".encode()

    def search(self, tag: bytes, line: bytes) -> bytes:
        return b"* SEARCH 10 11\r\n" + tag + b" OK done\r\n"

    def metadata(self, tag: bytes, line: bytes) -> bytes:
        uid = int(line.split()[3])
        size = len(self.bodies[uid])
        return (
            b'* %d FETCH (UID %d FLAGS () INTERNALDATE "%s" RFC822.SIZE %d)\r\n'
            % (uid - 9, uid, self.internal_date, size)
            + tag
            + b" OK done\r\n"
        )

    def body(self, tag: bytes, line: bytes) -> bytes | None:
        uid = int(line.split()[3])
        if uid == 11:
            return None  # the client waits until it gives up or aborts the socket
        raw = self.bodies[uid]
        return (
            b"* 1 FETCH (UID %d BODY[] {%d}\r\n%s)\r\n" % (uid, len(raw), raw)
            + tag
            + b" OK done\r\n"
        )


async def test_cancel_interrupts_stalled_fetch(
    rt: Runtime, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    script = StallingMailbox()
    server = ScriptedServer(
        {
            r"UID SEARCH": script.search,
            r"UID FETCH \d+ \(UID FLAGS": script.metadata,
            r"UID FETCH \d+ \(UID BODY": script.body,
        }
    )
    server.thread.start()
    user = type("ScriptedUser", (), {"name": "scripted-user", "password": "secret"})()
    try:
        account_id = await connect(rt, user, port=server.port, security=ImapSecurity.NONE)
        workers.start(MAILSCAN_FETCH_BATCH_SIZE="1", MAILSCAN_IMAP_TIMEOUT_S="120")
        task_id = await start(rt, user.name, account_id)

        async with ProgressRecorder(rt, task_id) as progress:
            deadline = time.monotonic() + 20
            while not any(line.endswith(STALLED_FETCH) for line in server.received):
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
    assert await saved_messages(account_id) == 1
    assert await rt.redis.exists(rt.keys.cancel_flag(task_id)) == 0
