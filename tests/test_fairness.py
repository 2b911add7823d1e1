"""Fair scheduling: the per-user running limit, the hand-back of a claimed task, the
startScan rate limit and queuePosition."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs import fairness
from jobs.documents import ScanStatus, ScanTask
from jobs.task_state import claim_task
from scripts.services.apps import WorkerProcess
from tests.clients import graphql
from tests.test_api_harness import Api, insert_account, insert_tasks, new_user_id, open_api

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "mailbox"

START = """
mutation Start($accountId: ID!) {
  startScan(accountId: $accountId, months: 12) {
    __typename
    ... on StartScanSuccess { task { id status queuePosition } }
    ... on QuotaExceeded { code message retryAfterSeconds }
  }
}
"""

HISTORY = """{ taskHistory(first: 50) { edges { node { id status queuePosition } } } }"""

TASK = "query Task($id: ID!) { task(id: $id) { id status startedAt finishedAt attempts } }"


@pytest.fixture
async def api(services: Any) -> AsyncIterator[Api]:
    async with open_api(max_running_scans_per_user=1, admission_retry_s=30.0) as api:
        yield api


async def test_unclaim_restores_attempts(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.QUEUED])

    claimed = await claim_task(str(task.id), "worker-a", 30.0)
    assert claimed is not None
    assert claimed.attempts == 1
    assert claimed.started_at is not None

    assert not await fairness.unclaim(claimed, "worker-b")
    assert await fairness.unclaim(claimed, "worker-a")
    restored = await ScanTask.get(task.id)
    assert restored is not None
    assert restored.status == ScanStatus.QUEUED
    assert restored.attempts == 0
    assert restored.started_at is None
    assert restored.lease_owner is None


async def test_admit_holds_back_over_limit(api: Api) -> None:
    user_id, other_user = new_user_id(), new_user_id()
    first_account, second_account = await insert_account(user_id), await insert_account(user_id)
    other_account = await insert_account(other_user)
    [first] = await insert_tasks(user_id, first_account, [ScanStatus.QUEUED])
    [second] = await insert_tasks(user_id, second_account, [ScanStatus.QUEUED])
    [other] = await insert_tasks(other_user, other_account, [ScanStatus.QUEUED])

    claimed_first = await claim_task(str(first.id), "worker-a", 30.0)
    assert claimed_first is not None
    assert await fairness.admit(api.runtime, claimed_first, "worker-a")

    claimed_second = await claim_task(str(second.id), "worker-b", 30.0)
    assert claimed_second is not None
    assert not await fairness.admit(api.runtime, claimed_second, "worker-b")
    held = await ScanTask.get(second.id)
    assert held is not None
    assert held.status == ScanStatus.QUEUED
    assert held.attempts == 0
    assert held.message_id is not None

    claimed_other = await claim_task(str(other.id), "worker-b", 30.0)
    assert claimed_other is not None
    assert await fairness.admit(api.runtime, claimed_other, "worker-b")


async def test_expired_lease_does_not_count(api: Api) -> None:
    user_id = new_user_id()
    first_account, second_account = await insert_account(user_id), await insert_account(user_id)
    [stale] = await insert_tasks(user_id, first_account, [ScanStatus.RUNNING])
    await ScanTask.find_one({"_id": stale.id}).update(
        {"$set": {"lease_expires_at": datetime.now(UTC) - timedelta(seconds=5)}}
    )
    [task] = await insert_tasks(user_id, second_account, [ScanStatus.QUEUED])
    claimed = await claim_task(str(task.id), "worker-a", 30.0)
    assert claimed is not None
    assert await fairness.admit(api.runtime, claimed, "worker-a")


async def test_start_scan_rate_limit(services: Any) -> None:
    async with open_api(start_scan_limit=2, start_scan_window_s=600) as api:
        user_id = new_user_id()
        results = []
        for _ in range(3):
            account = await insert_account(user_id)
            data = await api.data(user_id, START, {"accountId": str(account.id)})
            results.append(data["startScan"])
        other = await insert_account(new_user_id())
        other_result = await api.data(other.user_id, START, {"accountId": str(other.id)})
    assert [result["__typename"] for result in results] == [
        "StartScanSuccess",
        "StartScanSuccess",
        "QuotaExceeded",
    ]
    limited = results[2]
    assert limited["code"] == "QUOTA_EXCEEDED"
    assert 0 < limited["retryAfterSeconds"] <= 600
    assert limited["message"].startswith("too many scan starts: at most 2 per 600 s")
    assert other_result["startScan"]["__typename"] == "StartScanSuccess"


async def test_queue_position_counts_own_queue(api: Api) -> None:
    user_id, other_user = new_user_id(), new_user_id()
    account = await insert_account(user_id)
    await insert_tasks(other_user, await insert_account(other_user), [ScanStatus.QUEUED])
    statuses = [ScanStatus.QUEUED, ScanStatus.RUNNING, ScanStatus.QUEUED, ScanStatus.QUEUED]
    tasks = await insert_tasks(user_id, account, statuses)
    query = "query T($id: ID!) { task(id: $id) { queuePosition } }"
    positions = []
    for task in tasks:
        data = await api.data(user_id, query, {"id": str(task.id)})
        positions.append(data["task"]["queuePosition"])
    assert positions == [1, None, 2, 3]


# --- real worker ---------------------------------------------------------------------------


@pytest.fixture
def only_own_worker(shared_worker: WorkerProcess) -> None:
    """Stop the session's worker, so that only the worker this test starts consumes the scan
    queue. The ``worker`` fixture starts it again for later tests."""
    if shared_worker.is_alive():
        shared_worker.stop()


@pytest.fixture
def small_pool(services: Any, only_own_worker: None) -> Iterator[WorkerProcess]:
    """One worker process with two threads that runs one scan per user at a time."""
    from jobs.settings import get_settings

    log_file = services.state_dir / f"fair-worker-{time.time_ns()}.log"
    env = {"MAILSCAN_MAX_RUNNING_SCANS_PER_USER": "1", "MAILSCAN_ADMISSION_RETRY_S": "0.5"}
    worker = WorkerProcess(log_file, 2, get_settings().queue_name, env=env)
    worker.start()
    yield worker
    worker.stop()


async def connect(client: httpx.AsyncClient, user_id: str, mail: Any, label: str) -> str:
    mutation = """mutation C($input: ImapAccountInput!) { connectImapAccount(input: $input) {
      ... on ConnectAccountSuccess { account { id } } } }"""
    variables = {
        "input": {
            "host": "127.0.0.1",
            "port": mail.imaps_port,
            "security": "SSL",
            "username": mail.name,
            "password": mail.password,
            "label": label,
        }
    }
    data = await graphql(client, user_id, mutation, variables)
    return str(data["connectImapAccount"]["account"]["id"])


async def start(client: httpx.AsyncClient, user_id: str, account_id: str) -> dict[str, Any]:
    data = await graphql(client, user_id, START, {"accountId": account_id})
    result: dict[str, Any] = data["startScan"]
    assert result["__typename"] == "StartScanSuccess", result
    return result


async def read_task(client: httpx.AsyncClient, user_id: str, task_id: str) -> dict[str, Any]:
    data = await graphql(client, user_id, TASK, {"id": task_id})
    task: dict[str, Any] = data["task"]
    return task


async def test_other_user_starts_before_backlog(
    api_server: Any, small_pool: WorkerProcess, mail_user: Any
) -> None:
    mailbox = mail_user()
    now = datetime.now(UTC)
    # The light user's message waits behind the 19 held-back heavy messages, which the one
    # free worker thread claims and hands back one by one (several database round trips
    # each). Heavy scans of the whole corpus last about as long as that pass over the
    # queue, so the light scan starts within the first few heavy scans and not after all 20.
    files = sorted(CORPUS.iterdir())
    mailbox.deliver_many((path.read_bytes(), now - timedelta(days=1)) for path in files)
    heavy, light = f"heavy-{new_user_id()}", f"light-{new_user_id()}"

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        heavy_accounts = [await connect(client, heavy, mailbox, f"heavy {n}") for n in range(20)]
        light_account = await connect(client, light, mailbox, "light")
        heavy_tasks = [(await start(client, heavy, a))["task"] for a in heavy_accounts]
        light_task = (await start(client, light, light_account))["task"]

        assert light_task["queuePosition"] == 1
        # Positions are read while the worker claims and hands back tasks, so only their
        # range is fixed here; test_queue_position_counts_own_queue checks exact values.
        history = await graphql(client, heavy, HISTORY)
        nodes = [edge["node"] for edge in history["taskHistory"]["edges"]]
        positions = [node["queuePosition"] for node in nodes if node["status"] == "QUEUED"]
        assert positions, nodes
        assert all(1 <= position <= 20 for position in positions), positions

        deadline = time.monotonic() + 45
        while True:
            light_state = await read_task(client, light, light_task["id"])
            heavy_states = [await read_task(client, heavy, t["id"]) for t in heavy_tasks]
            heavy_done = [t for t in heavy_states if t["status"] == "COMPLETED"]
            if light_state["status"] == "COMPLETED" and len(heavy_done) >= 3:
                break
            assert time.monotonic() < deadline, (light_state, heavy_states)
            await asyncio.sleep(0.5)

        for task in heavy_tasks:
            await graphql(
                client, heavy, "mutation M($id: ID!) { cancelScan(taskId: $id) { __typename } }",
                {"id": task["id"]},
            )  # fmt: skip

    started = [(t["startedAt"], "heavy", t) for t in heavy_states if t["startedAt"]]
    started.append((light_state["startedAt"], "light", light_state))
    started.sort(key=lambda row: str(row[0]))
    order = [who for _, who, _ in started]
    print("start order:", order)
    assert order.index("light") <= 3, order

    # The heavy user's scans ran one at a time, each attempt counted once. Both times are
    # taken just before their database writes, so a start may precede the previous finish
    # by the length of one write; 0.5 s covers that on a loaded machine.
    heavy_runs = sorted(
        (datetime.fromisoformat(t["startedAt"]), datetime.fromisoformat(t["finishedAt"]))
        for t in heavy_done
    )
    for (_, previous_end), (next_start, _) in itertools.pairwise(heavy_runs):
        assert next_start >= previous_end - timedelta(seconds=0.5), heavy_runs
    assert all(t["attempts"] == 1 for t in heavy_done)
