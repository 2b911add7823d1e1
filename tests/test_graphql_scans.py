"""startScan, cancelScan, retryScan and task through the GraphQL API, and error masking."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobs import lifecycle, queries
from jobs.documents import ScanStatus, ScanSummary, ScanTask, SenderCount, TaskError, utcnow
from jobs.errors import ScanAlreadyRunningError
from tests.test_api_harness import Api, insert_account, insert_tasks, new_user_id, open_api

START = """
mutation Start($accountId: ID!, $months: Int!) {
  startScan(accountId: $accountId, months: $months) {
    __typename
    ... on StartScanSuccess { task { id status months accountLabel account { id } } }
    ... on InvalidInput { message code field }
    ... on NotFound { message code }
    ... on ScanAlreadyRunning { message code taskId task { id status } }
  }
}
"""

CANCEL = """
mutation Cancel($taskId: ID!) {
  cancelScan(taskId: $taskId) {
    __typename
    ... on CancelScanSuccess { task { id status } }
    ... on NotFound { message code }
    ... on InvalidState { message code }
  }
}
"""

RETRY = """
mutation Retry($taskId: ID!) {
  retryScan(taskId: $taskId) {
    __typename
    ... on StartScanSuccess { task { id status } }
    ... on NotFound { message code }
    ... on InvalidState { message code }
    ... on ScanAlreadyRunning { taskId }
  }
}
"""

TASK = """
query Task($id: ID!) {
  task(id: $id) {
    id status phase percent months attempts createdAt finishedAt nextRetryAt
    error { code message retryable }
    summary { messages newsletters flagged findings { kind count } topSenders { address messages } }
  }
}
"""


@pytest.fixture
async def api(services: Any) -> AsyncIterator[Api]:
    async with open_api() as api:
        yield api


async def start(api: Api, user_id: str, account_id: str, months: int) -> dict[str, Any]:
    data = await api.data(user_id, START, {"accountId": account_id, "months": months})
    result: dict[str, Any] = data["startScan"]
    return result


@pytest.mark.parametrize("months", [0, 241, -1])
async def test_start_rejects_months_out_of_range(api: Api, months: int) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    result = await start(api, user_id, str(account.id), months)
    assert result["__typename"] == "InvalidInput"
    assert result["code"] == "INVALID_INPUT"
    assert result["field"] == "months"
    assert str(months) in result["message"]
    assert "1 to 240" in result["message"]
    assert await ScanTask.find({"user_id": user_id}).count() == 0


async def test_start_months_defaults_to_one(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    query = """
    mutation($a: ID!) { startScan(accountId: $a) { ... on StartScanSuccess { task { months } } } }
    """
    data = await api.data(user_id, query, {"a": str(account.id)})
    assert data["startScan"] == {"task": {"months": 1}}


async def test_start_queues_then_reports_running_scan(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id, label="inbox")
    first = await start(api, user_id, str(account.id), 3)
    assert first["__typename"] == "StartScanSuccess"
    task = first["task"]
    assert task["status"] == "QUEUED"
    assert task["months"] == 3
    assert task["accountLabel"] == "inbox"
    assert task["account"] == {"id": str(account.id)}

    second = await start(api, user_id, str(account.id), 3)
    assert second["__typename"] == "ScanAlreadyRunning"
    assert second["code"] == "SCAN_ALREADY_RUNNING"
    assert second["taskId"] == task["id"]
    assert second["task"] == {"id": task["id"], "status": "QUEUED"}


async def test_concurrent_starts_keep_one_task(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)

    results = await asyncio.gather(*(start(api, user_id, str(account.id), 1) for _ in range(8)))

    kinds = sorted(result["__typename"] for result in results)
    assert kinds == ["ScanAlreadyRunning"] * 7 + ["StartScanSuccess"]
    (winner,) = [
        result["task"]["id"] for result in results if result["__typename"] == "StartScanSuccess"
    ]
    assert {result["taskId"] for result in results if "taskId" in result} == {winner}
    tasks = await ScanTask.find({"user_id": user_id}).to_list()
    assert [str(task.id) for task in tasks] == [winner]


async def test_account_slot_keeps_one_of_racing_tasks(api: Api) -> None:
    # Starts that pass the busy-account check together each insert a task, then each checks.
    user_id = new_user_id()
    account = await insert_account(user_id)
    now = utcnow()
    tasks = [
        ScanTask(user_id=user_id, account_id=str(account.id), months=1, since=now, created_at=now)
        for _ in range(8)
    ]
    await asyncio.gather(*(task.insert() for task in tasks))

    outcomes = await asyncio.gather(
        *(lifecycle._claim_account_slot(task) for task in tasks), return_exceptions=True
    )

    winners = [task for task, outcome in zip(tasks, outcomes, strict=True) if outcome is None]
    assert len(winners) == 1
    rejected = [outcome for outcome in outcomes if outcome is not None]
    assert all(isinstance(outcome, ScanAlreadyRunningError) for outcome in rejected), rejected
    remaining = await ScanTask.find({"account_id": str(account.id)}).to_list()
    assert [task.id for task in remaining] == [winners[0].id]


async def test_start_on_other_users_account_is_not_found(api: Api) -> None:
    account = await insert_account(new_user_id())
    result = await start(api, new_user_id(), str(account.id), 1)
    assert result == {
        "__typename": "NotFound",
        "message": f"account {str(account.id)!r} not found",
        "code": "NOT_FOUND",
    }


async def test_cancel_queued_task(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.QUEUED])
    data = await api.data(user_id, CANCEL, {"taskId": str(task.id)})
    result = data["cancelScan"]
    assert result["__typename"] == "CancelScanSuccess"
    assert result["task"]["id"] == str(task.id)
    assert result["task"]["status"] in {"CANCELLING", "CANCELLED"}


async def test_cancel_finished_task_is_invalid_state(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.COMPLETED])
    data = await api.data(user_id, CANCEL, {"taskId": str(task.id)})
    assert data["cancelScan"]["__typename"] == "InvalidState"
    assert data["cancelScan"]["code"] == "INVALID_STATE"
    assert "COMPLETED" in data["cancelScan"]["message"]


async def test_cancel_other_users_task_is_not_found(api: Api) -> None:
    owner = new_user_id()
    account = await insert_account(owner)
    [task] = await insert_tasks(owner, account, [ScanStatus.QUEUED])
    data = await api.data(new_user_id(), CANCEL, {"taskId": str(task.id)})
    assert data["cancelScan"] == {
        "__typename": "NotFound",
        "message": f"scan task {str(task.id)!r} not found",
        "code": "NOT_FOUND",
    }
    stored = await ScanTask.get(task.id)
    assert stored is not None
    assert stored.status == ScanStatus.QUEUED


async def test_retry_completed_task_is_invalid_state(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.COMPLETED])
    data = await api.data(user_id, RETRY, {"taskId": str(task.id)})
    assert data["retryScan"]["__typename"] == "InvalidState"
    assert data["retryScan"]["code"] == "INVALID_STATE"


async def test_retry_failed_task_queues_it_again(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.FAILED])
    data = await api.data(user_id, RETRY, {"taskId": str(task.id)})
    assert data["retryScan"] == {
        "__typename": "StartScanSuccess",
        "task": {"id": str(task.id), "status": "QUEUED"},
    }


async def test_retry_other_users_task_is_not_found(api: Api) -> None:
    owner = new_user_id()
    account = await insert_account(owner)
    [task] = await insert_tasks(owner, account, [ScanStatus.FAILED])
    data = await api.data(new_user_id(), RETRY, {"taskId": str(task.id)})
    assert data["retryScan"]["__typename"] == "NotFound"


async def test_task_of_other_user_is_null(api: Api) -> None:
    owner = new_user_id()
    account = await insert_account(owner)
    [task] = await insert_tasks(owner, account, [ScanStatus.COMPLETED])
    assert (await api.data(owner, TASK, {"id": str(task.id)}))["task"]["id"] == str(task.id)
    assert (await api.data(new_user_id(), TASK, {"id": str(task.id)}))["task"] is None


async def test_task_shows_summary_and_error(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.FAILED])
    task.error = TaskError(code="AUTH_FAILED", message="login rejected", retryable=False)
    task.summary = ScanSummary(
        messages=12,
        newsletters=3,
        flagged=2,
        findings={"MALFORMED": 1, "OVERSIZED": 2, "KIND_FROM_A_NEWER_WORKER": 5},
        top_senders=[SenderCount(address="news@example.com", messages=3)],
    )
    await task.save()

    data = await api.data(user_id, TASK, {"id": str(task.id)})

    returned = data["task"]
    assert returned["status"] == "FAILED"
    assert returned["error"] == {
        "code": "AUTH_FAILED",
        "message": "login rejected",
        "retryable": False,
    }
    assert returned["summary"] == {
        "messages": 12,
        "newsletters": 3,
        "flagged": 2,
        "findings": [{"kind": "MALFORMED", "count": 1}, {"kind": "OVERSIZED", "count": 2}],
        "topSenders": [{"address": "news@example.com", "messages": 3}],
    }


async def test_task_with_malformed_id_is_null(api: Api) -> None:
    data = await api.data(new_user_id(), TASK, {"id": "42"})
    assert data["task"] is None


async def test_unexpected_error_is_masked_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(user_id: str, task_id: str) -> None:
        raise RuntimeError("db-7.internal:27017 refused the connection")

    monkeypatch.setattr(queries, "get_task", broken)
    user_id = new_user_id()
    with caplog.at_level(logging.ERROR, logger="schema.masking"):
        body = await api.post(user_id, TASK, {"id": "0" * 24})

    [error] = body["errors"]
    assert error["message"] == "internal server error; the failure was logged, try again later"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "db-7.internal" not in str(body)
    [record] = caplog.records
    assert record.getMessage() == f"user {user_id} operation Task failed at task"
    assert record.exc_info is not None
    assert "db-7.internal" in str(record.exc_info[1])


async def test_long_task_id_is_cut_in_not_found(api: Api) -> None:
    task_id = "x" * 5000
    data = await api.data(new_user_id(), CANCEL_FOR_LONG_ID, {"taskId": task_id})
    result = data["cancelScan"]
    assert result["__typename"] == "NotFound"
    assert result["message"] == f"scan task {'x' * 80!r}... not found"


CANCEL_FOR_LONG_ID = """
mutation Cancel($taskId: ID!) {
  cancelScan(taskId: $taskId) { __typename ... on NotFound { message } }
}
"""
