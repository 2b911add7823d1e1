"""The API keeps serving requests while scans run, because the API process never waits on a
mail server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.clients import graphql
from tests.test_end_to_end import (
    connect_account,
    corpus_files,
    spread_over_last_year,
    start_scan,
)

pytestmark = pytest.mark.integration

TIMES = """
query Times($id: ID!) { task(id: $id) { status startedAt finishedAt } }
"""

CANCEL = """
mutation Cancel($taskId: ID!) { cancelScan(taskId: $taskId) { __typename } }
"""

HISTORY = "query { taskHistory(first: 20) { edges { node { id status } } } }"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def wait_for_status(
    client: httpx.AsyncClient, user_id: str, task_id: str, wanted: set[str]
) -> dict[str, Any]:
    for _ in range(600):
        data = await graphql(client, user_id, TIMES, {"id": task_id})
        if data["task"]["status"] in wanted:
            task: dict[str, Any] = data["task"]
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} never reached {wanted}")


async def test_api_answers_during_four_scans(
    api_server: Any, worker: Any, dovecot: Any, mail_user: Any
) -> None:
    files = corpus_files("mailbox")
    raw = [path.read_bytes() for path in files]
    dates = spread_over_last_year(len(files), datetime.now(UTC))
    users = [mail_user() for _ in range(4)]
    for user in users:
        user.deliver_many(zip(raw, dates, strict=True))

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        accounts = [await connect_account(client, user, dovecot) for user in users]
        tasks = [
            await start_scan(client, user.name, account, 12)
            for user, account in zip(users, accounts, strict=True)
        ]
        for user, task_id in zip(users, tasks, strict=True):
            await wait_for_status(client, user.name, task_id, {"RUNNING", "COMPLETED"})

        burst_start = datetime.now(UTC)
        queries = [graphql(client, users[i % 4].name, HISTORY) for i in range(100)]
        # A second account per user gets a scan started during the burst; it waits as QUEUED.
        extra_accounts = [await connect_account(client, user, dovecot) for user in users]
        starts = [
            start_scan(client, user.name, account, 1)
            for user, account in zip(users, extra_accounts, strict=True)
        ]
        results = await asyncio.gather(*queries, *starts)

        histories = results[:100]
        assert all(len(item["taskHistory"]["edges"]) >= 1 for item in histories)
        new_tasks = results[100:]
        assert len(new_tasks) == 4

        for user, task_id in zip(users, tasks, strict=True):
            done = await wait_for_status(client, user.name, task_id, {"COMPLETED"})
            started = parse_time(done["startedAt"])
            finished = parse_time(done["finishedAt"])
            # Each of the four scans was running when the burst of requests began.
            assert started <= burst_start, (started, burst_start)
            assert finished >= burst_start, (finished, burst_start)

        for user, task_id in zip(users, new_tasks, strict=True):
            await graphql(client, user.name, CANCEL, {"taskId": task_id})
