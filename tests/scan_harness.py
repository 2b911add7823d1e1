"""Helpers for the recovery, retry, cancel and bad-mail tests: workers with their own settings,
scans started through ``jobs`` as an API process would, and a recorder of progress events.

The tests drive ``jobs.lifecycle`` from the test process, which is one more process next to
the workers, so a cancel request reaches a worker only through the database and Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import Redis

from jobs.accounts import connect_imap_account
from jobs.documents import ImapSecurity, ScannedMessage, ScanStatus, ScanTask
from jobs.lifecycle import parse_object_id, start_scan
from jobs.runtime import Runtime
from jobs.settings import get_settings
from scripts.services.apps import WorkerProcess
from tests.test_imap_scripted import ScriptedServer

#: Settings of the test workers: a short lease and a frequent sweep, so takeovers are quick.
FAST_RECOVERY = {
    "MAILSCAN_LEASE_S": "3",
    "MAILSCAN_SWEEP_INTERVAL_S": "0.5",
    "MAILSCAN_RETRY_BASE_S": "0.5",
    "MAILSCAN_RETRY_MAX_S": "2",
}

_worker_numbers = itertools.count(1)


class Workers:
    """Starts worker processes with extra ``MAILSCAN_*`` settings; stops them at teardown."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.started: list[WorkerProcess] = []

    def start(self, **env: str) -> WorkerProcess:
        settings = get_settings()
        log_file = self.state_dir / f"recovery-worker-{os.getpid()}-{next(_worker_numbers)}.log"
        worker = WorkerProcess(
            log_file, settings.worker_threads, settings.queue_name, env={**FAST_RECOVERY, **env}
        )
        self.started.append(worker)
        worker.start()
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(services: Any, shared_worker: WorkerProcess) -> Iterator[Workers]:
    # The session's shared worker consumes the same queue with the default settings, so it
    # is stopped: only this test's workers run its scans. The ``worker`` fixture restarts it.
    shared_worker.stop()
    made = Workers(services.state_dir)
    yield made
    made.stop_all()


@pytest.fixture
async def rt(services: Any) -> AsyncIterator[Runtime]:
    """A runtime like an API process's, whose tasks allow two attempts."""
    runtime = await Runtime.open(replace(get_settings(), max_attempts=2))
    yield runtime
    await runtime.close()


def make_message(index: int, size: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = f"Sender {index % 7} <sender{index % 7}@example.org>"
    message["To"] = "user@example.org"
    message["Subject"] = f"Message {index}"
    message["Message-ID"] = f"<m{index}@example.org>"
    message["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    message.set_content(f"Body {index}\n" + "x" * size)
    return bytes(message)


def fill_mailbox(user: Any, count: int, folder: str = "INBOX") -> None:
    when = datetime.now(UTC) - timedelta(days=2)
    user.deliver_many(((make_message(index), when) for index in range(count)), folder=folder)


async def connect(
    rt: Runtime,
    user: Any,
    *,
    port: int | None = None,
    security: ImapSecurity = ImapSecurity.SSL,
    password: str | None = None,
    folders: list[str] | None = None,
) -> str:
    account = await connect_imap_account(
        rt,
        user.name,
        host="127.0.0.1",
        port=port if port is not None else user.imaps_port,
        security=security,
        username=user.name,
        password=password if password is not None else user.password,
        folders=folders or ["INBOX"],
        label=None,
    )
    return str(account.id)


async def start(rt: Runtime, user_id: str, account_id: str) -> str:
    task = await start_scan(rt, user_id, account_id, 1)
    return str(task.id)


async def load_task(task_id: str) -> ScanTask:
    task = await ScanTask.get(parse_object_id(task_id))
    assert task is not None, f"task {task_id} is gone"
    return task


async def wait_for_task(
    task_id: str, done: Callable[[ScanTask], bool], timeout_s: float = 30.0
) -> ScanTask:
    """Poll the task document until ``done`` returns True; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        task = await load_task(task_id)
        if done(task):
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} did not reach the expected state: {task!r}")
        await asyncio.sleep(0.05)


async def wait_for_status(task_id: str, status: ScanStatus, timeout_s: float = 30.0) -> ScanTask:
    return await wait_for_task(task_id, lambda task: task.status == status, timeout_s)


async def saved_messages(account_id: str) -> int:
    return await ScannedMessage.get_pymongo_collection().count_documents({"account_id": account_id})


def lease_owner_pid(task: ScanTask) -> int:
    """Return the pid of the worker process that holds the task's lease (host:pid:suffix)."""
    assert task.lease_owner is not None, task
    return int(task.lease_owner.split(":")[1])


def kill_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def wait_for_exit(worker: WorkerProcess, timeout_s: float = 30.0) -> int:
    assert worker.process is not None
    return worker.process.wait(timeout_s)


def log_lines(worker: WorkerProcess, pattern: str) -> list[str]:
    text = worker.log_file.read_text(errors="replace")
    return [line for line in text.splitlines() if re.search(pattern, line)]


class ProgressRecorder:
    """Records every progress event published on one task's channel, from subscription on."""

    def __init__(self, rt: Runtime, task_id: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._redis: Redis = Redis.from_url(rt.settings.redis_url)
        self._channel = rt.keys.progress_channel(task_id)
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ProgressRecorder:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel)
        self._reader = asyncio.create_task(self._read(pubsub))
        return self

    async def _read(self, pubsub: Any) -> None:
        async for item in pubsub.listen():
            if item["type"] == "message":
                self.events.append(json.loads(item["data"]))

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._redis.aclose()

    def statuses(self) -> list[str]:
        """Statuses in order, with consecutive repeats collapsed."""
        collapsed: list[str] = []
        for event in self.events:
            if not collapsed or collapsed[-1] != event["status"]:
                collapsed.append(event["status"])
        return collapsed

    async def wait_for(self, status: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(event["status"] == status for event in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {status} event; got {self.statuses()}")
            await asyncio.sleep(0.05)


STALLED_FETCH = b"UID FETCH 11 (UID BODY.PEEK[])"


#: Login of the scripted server, which accepts any credentials.
SCRIPTED_USER = SimpleNamespace(name="scripted-user", password="secret")


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

    def serve(self) -> ScriptedServer:
        """Start a loopback IMAP server that plays this script to one client."""
        server = ScriptedServer(
            {
                r"UID SEARCH": self.search,
                r"UID FETCH \d+ \(UID FLAGS": self.metadata,
                r"UID FETCH \d+ \(UID BODY": self.body,
            }
        )
        server.thread.start()
        return server

    def fetch_stalled(self, server: ScriptedServer) -> bool:
        return any(line.endswith(STALLED_FETCH) for line in server.received)
