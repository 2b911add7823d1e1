"""The servers and processes of one benchmark run, and the GraphQL calls the benchmarks make.

Everything listens on 127.0.0.1 and lives in ``.state/bench/run-<pid>/``, removed at the end
unless ``--keep`` is given. ``scripts.services`` starts the servers of the test profile: Redis,
PostgreSQL with FerretDB on top, and Dovecot. ``scripts.services.apps`` starts the API and the
workers, as ``make run`` does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.mail import messages
from jobs.settings import get_settings
from scripts.services import HOST, STATE_ROOT, Ports, Stack, session_owner_alive
from scripts.services.apps import ApiProcess, WorkerProcess

#: Worker processes and threads of ``make run``: the default pool.
WORKER_PROCESSES = 2
WORKER_THREADS = 4
#: Maximum wait for one batch of scans to end, in seconds.
SCAN_TIMEOUT_S = 900.0
#: Interval of the task polls that wait for scans to end, in seconds.
POLL_INTERVAL_S = 0.2

CONNECT = """
mutation Connect($input: ImapAccountInput!) {
  connectImapAccount(input: $input) {
    __typename ... on ConnectAccountSuccess { account { id } }
  }
}
"""
START = """
mutation Start($accountId: ID!) {
  startScan(accountId: $accountId, months: 1) {
    __typename ... on StartScanSuccess { task { id } }
  }
}
"""
TASK = """
query Task($id: ID!) {
  task(id: $id) { id status processed total createdAt startedAt finishedAt error { code } }
}
"""


def parse_time(text: str | None) -> float | None:
    """Epoch seconds of a GraphQL DateTime, or None."""
    if text is None:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def remove_stale_runs() -> None:
    """Stop the servers of earlier runs whose process is gone (killed before it cleaned up)."""
    for root in sorted((STATE_ROOT / "bench").glob("run-*")):
        if not session_owner_alive(root):
            Stack("test", root=root).stop()
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Mailbox:
    user: str
    password: str
    size: int


class Bench:
    """Servers, API and worker processes, and mailboxes of one benchmark run."""

    def __init__(self, keep: bool = False) -> None:
        self.root = STATE_ROOT / "bench" / f"run-{os.getpid()}"
        self.keep = keep
        self.stack = Stack("test", root=self.root, ports=Ports.free())
        self.apis: list[ApiProcess] = []
        self.workers: list[WorkerProcess] = []
        self._log_numbers = iter(range(1, 10_000))

    # -- servers and processes ------------------------------------------------------------

    def start(self) -> None:
        remove_stale_runs()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.stack.start()
        values = {
            "secret_keys": Fernet.generate_key().decode(),
            "dev_auth": "1",
            "allow_private_hosts": "1",
            "allow_insecure_imap": "1",
            "mongodb_database": f"bench_{secrets.token_hex(4)}",
            "redis_url": self.stack.redis.url,
            "mongodb_url": self.stack.ferretdb.url,
            "imap_ca_file": str(self.stack.dovecot.cafile),
        }
        for name, value in values.items():
            os.environ[f"MAILSCAN_{name.upper()}"] = value
        get_settings.cache_clear()

    def stop(self) -> None:
        for process in [*self.workers, *self.apis]:
            process.stop()
        self.stack.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _log(self, kind: str) -> Path:
        return self.root / f"{kind}-{next(self._log_numbers)}.log"

    def start_api(self) -> ApiProcess:
        api = ApiProcess(self._log("api"))
        api.start()
        self.apis.append(api)
        return api

    def start_worker(
        self, processes: int = WORKER_PROCESSES, threads: int = WORKER_THREADS
    ) -> WorkerProcess:
        worker = WorkerProcess(
            self._log("worker"), threads, get_settings().queue_name, processes=processes
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def stop_process(self, process: ApiProcess | WorkerProcess) -> None:
        process.stop()
        for group in (self.apis, self.workers):
            if process in group:
                group.remove(process)  # type: ignore[arg-type]

    # -- mailboxes ------------------------------------------------------------------------

    def mailbox(self, name: str, size: int) -> Mailbox:
        """Create the Dovecot user ``name`` and deliver ``size`` messages to its INBOX."""
        password = secrets.token_urlsafe(12)
        self.stack.dovecot.add_user(name, password)
        self.stack.dovecot.deliver_many(name, messages(size))
        return Mailbox(name, password, size)

    @property
    def imaps_port(self) -> int:
        return self.stack.dovecot.imaps_port


class Api:
    """GraphQL over HTTP to one API process, as ``Bearer dev:<user>``."""

    def __init__(self, api: ApiProcess, connections: int = 100) -> None:
        self.process = api
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(base_url=api.http_url, timeout=60, limits=limits)

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def call(self, user: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer dev:{user}"},
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"GraphQL call failed ({response.status_code}): {body}")
        return body["data"]

    async def connect(self, box: Mailbox, port: int) -> str:
        account = {
            "host": HOST, "port": port, "security": "SSL", "username": box.user,
            "password": box.password, "label": f"bench {box.user} {secrets.token_hex(2)}",
        }  # fmt: skip
        data = await self.call(box.user, CONNECT, {"input": account})
        result = data["connectImapAccount"]
        if result["__typename"] != "ConnectAccountSuccess":
            raise RuntimeError(f"connectImapAccount for {box.user} failed: {result}")
        return str(result["account"]["id"])

    async def start_scan(self, user: str, account_id: str) -> str:
        result = (await self.call(user, START, {"accountId": account_id}))["startScan"]
        if result["__typename"] != "StartScanSuccess":
            raise RuntimeError(f"startScan for {user} failed: {result}")
        return str(result["task"]["id"])

    async def task(self, user: str, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = (await self.call(user, TASK, {"id": task_id}))["task"]
        return task

    async def wait_done(self, scans: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Poll each ``(user, task id)`` until it ends; raise if one did not complete."""
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(scans):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(scans) - len(done)} scans still running")
            await asyncio.sleep(POLL_INTERVAL_S)
            for user, task_id in scans:
                if task_id in done:
                    continue
                task = await self.task(user, task_id)
                if task["status"] in {"COMPLETED", "FAILED", "CANCELLED"}:
                    done[task_id] = task
        tasks = [done[task_id] for _, task_id in scans]
        failed = [task for task in tasks if task["status"] != "COMPLETED"]
        if failed:
            raise RuntimeError(f"{len(failed)} scans did not complete: {failed[:3]}")
        return tasks
