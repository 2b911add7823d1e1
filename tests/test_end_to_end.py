"""The main job end to end on real mail: startScan -> worker -> scanProgress -> taskHistory.

Everything here is real: Dovecot serves the corpus over IMAPS, uvicorn serves the API,
a Dramatiq worker process scans, FerretDB stores, Redis carries jobs and progress.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.documents import ScanTask
from jobs.lifecycle import parse_object_id
from jobs.results import summarise
from jobs.runtime import Runtime
from jobs.settings import get_settings
from tests.clients import LEGACY_WS, TRANSPORT_WS, graphql, subscribe

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

CONNECT = """
mutation Connect($input: ImapAccountInput!) {
  connectImapAccount(input: $input) {
    __typename
    ... on ConnectAccountSuccess { account { id label } }
    ... on InvalidInput { code message }
  }
}
"""

START = """
mutation Start($accountId: ID!, $months: Int!) {
  startScan(accountId: $accountId, months: $months) {
    __typename
    ... on StartScanSuccess { task { id status } }
    ... on InvalidInput { code message }
    ... on NotFound { code message }
    ... on ScanAlreadyRunning { code message }
  }
}
"""

PROGRESS = """
subscription Progress($taskId: ID!) {
  scanProgress(taskId: $taskId) {
    taskId status percent phase processed total sequence etaSeconds messagesPerSecond
  }
}
"""

TASK = """
query Task($id: ID!) {
  task(id: $id) {
    id status percent processed total attempts months
    error { code message }
    summary { messages newsletters flagged findings { kind count } topSenders { address messages } }
  }
}
"""

HISTORY = """
query History($first: Int!, $after: String) {
  taskHistory(first: $first, after: $after) {
    edges { cursor node { id status processed total summary { messages } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

FINDINGS = """
query Findings($taskId: ID!, $first: Int!, $after: String) {
  scanFindings(taskId: $taskId, first: $first, after: $after) {
    edges { cursor node { id kind detail folder uid } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def corpus_files(name: str) -> list[Path]:
    files = sorted(path for path in (CORPUS / name).iterdir() if path.is_file())
    assert files, f"no corpus files under {CORPUS / name}"
    return files


def spread_over_last_year(count: int, now: datetime) -> list[datetime]:
    """INTERNALDATEs in file order, from about 360 days ago up to an hour ago."""
    first = now - timedelta(days=360)
    step = (timedelta(days=360) - timedelta(hours=1)) / max(count - 1, 1)
    return [first + step * index for index in range(count)]


def months_ago(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return day.replace(
        year=year, month=month + 1, day=min(day.day, calendar.monthrange(year, month + 1)[1])
    )


async def connect_account(client: httpx.AsyncClient, user: Any, dovecot: Any) -> str:
    data = await graphql(
        client,
        user.name,
        CONNECT,
        {
            "input": {
                "host": "127.0.0.1",
                "port": dovecot.imaps_port,
                "security": "SSL",
                "username": user.name,
                "password": user.password,
                "label": f"{user.name} corpus",
            }
        },
    )
    result = data["connectImapAccount"]
    assert result["__typename"] == "ConnectAccountSuccess", result
    return str(result["account"]["id"])


async def start_scan(client: httpx.AsyncClient, user_id: str, account_id: str, months: int) -> str:
    data = await graphql(client, user_id, START, {"accountId": account_id, "months": months})
    result = data["startScan"]
    assert result["__typename"] == "StartScanSuccess", result
    assert result["task"]["status"] == "QUEUED"
    return str(result["task"]["id"])


async def watch(ws_url: str, user_id: str, task_id: str, protocol: str) -> list[dict[str, Any]]:
    events = []
    async for data in subscribe(ws_url, user_id, PROGRESS, {"taskId": task_id}, protocol=protocol):
        events.append(data["scanProgress"])
    return events


async def fetch_task(client: httpx.AsyncClient, user_id: str, task_id: str) -> dict[str, Any]:
    data = await graphql(client, user_id, TASK, {"id": task_id})
    task: dict[str, Any] = data["task"]
    return task


async def all_findings(
    client: httpx.AsyncClient, user_id: str, task_id: str
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        data = await graphql(
            client, user_id, FINDINGS, {"taskId": task_id, "first": 50, "after": after}
        )
        page = data["scanFindings"]
        found.extend(edge["node"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def assert_summary_matches_database(task_id: str) -> None:
    """The summary the worker counted while saving equals one counted from the saved data."""
    runtime = await Runtime.open(get_settings())
    try:
        task = await ScanTask.get(parse_object_id(task_id))
        assert task is not None and task.summary is not None
        assert task.summary == await summarise(task)
    finally:
        await runtime.close()


def assert_progress_stream(events: list[dict[str, Any]], task_id: str, total: int) -> None:
    assert len(events) >= 3, f"expected the snapshot and live events, got {events}"
    assert {event["taskId"] for event in events} == {task_id}

    sequences = [event["sequence"] for event in events]
    assert sequences == sorted(set(sequences)), f"sequences not increasing: {sequences}"

    running = [event["percent"] for event in events if event["status"] == "RUNNING"]
    assert running == sorted(running), f"percent decreased: {running}"

    last = events[-1]
    assert last["status"] == "COMPLETED"
    assert last["percent"] == 100
    assert last["processed"] == total
    assert last["total"] == total
    assert [event["status"] for event in events].count("COMPLETED") == 1


async def test_corpus_mailbox_scan(
    api_server: Any, worker: Any, dovecot: Any, mail_user: Any
) -> None:
    files = corpus_files("mailbox")
    now = datetime.now(UTC)
    dates = spread_over_last_year(len(files), now)
    user = mail_user()
    user.deliver_many((path.read_bytes(), when) for path, when in zip(files, dates, strict=True))

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        account_id = await connect_account(client, user, dovecot)
        task_id = await start_scan(client, user.name, account_id, 12)
        events = await watch(api_server.ws_url, user.name, task_id, TRANSPORT_WS)
        assert_progress_stream(events, task_id, len(files))

        task = await fetch_task(client, user.name, task_id)
        assert task["status"] == "COMPLETED"
        assert task["processed"] == task["total"] == len(files)
        assert task["summary"]["messages"] == len(files)
        assert task["attempts"] == 1

        history = await graphql(client, user.name, HISTORY, {"first": 10})
        nodes = [edge["node"] for edge in history["taskHistory"]["edges"]]
        assert [node["id"] for node in nodes] == [task_id]
        assert nodes[0]["summary"]["messages"] == len(files)

        findings = await all_findings(client, user.name, task_id)
        ids = [finding["id"] for finding in findings]
        assert len(ids) == len(set(ids)), "a finding was returned twice while paging"
        counted = sum(row["count"] for row in task["summary"]["findings"])
        assert len(findings) == counted
        assert counted > 0
        await assert_summary_matches_database(task_id)

        # The second scan covers 3 months. The test computes the expected count from the dates
        # it gave the files, with IMAP SEARCH SINCE semantics (whole days, inclusive).
        since = months_ago(datetime.now(UTC).date(), 3)
        expected = sum(1 for when in dates if when.date() >= since)
        recent_id = await start_scan(client, user.name, account_id, 3)
        recent_events = await watch(api_server.ws_url, user.name, recent_id, LEGACY_WS)
        assert recent_events[-1]["status"] == "COMPLETED"
        recent = await fetch_task(client, user.name, recent_id)
        assert recent["summary"]["messages"] == expected
        await assert_summary_matches_database(recent_id)
        assert recent["processed"] == recent["total"] == expected


async def test_tricky_messages_scan(
    api_server: Any, worker: Any, dovecot: Any, mail_user: Any
) -> None:
    files = corpus_files("tricky")
    dates = spread_over_last_year(len(files), datetime.now(UTC))
    user = mail_user()
    user.deliver_many((path.read_bytes(), when) for path, when in zip(files, dates, strict=True))

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        account_id = await connect_account(client, user, dovecot)
        task_id = await start_scan(client, user.name, account_id, 12)
        events = await watch(api_server.ws_url, user.name, task_id, TRANSPORT_WS)
        assert events[-1]["status"] == "COMPLETED", events[-1]

        task = await fetch_task(client, user.name, task_id)
        assert task["error"] is None
        assert task["summary"]["messages"] == len(files)
        assert task["processed"] == len(files)
        kinds = {row["kind"]: row["count"] for row in task["summary"]["findings"]}
        assert kinds.get("MALFORMED", 0) > 0, kinds
