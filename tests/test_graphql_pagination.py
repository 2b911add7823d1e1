"""Cursor pagination of taskHistory and scanFindings over documents in the real database."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobs.documents import FindingKind, ScanStatus
from tests.test_api_harness import (
    Api,
    insert_account,
    insert_findings,
    insert_tasks,
    new_user_id,
    open_api,
)

HISTORY = """
query History($first: Int, $after: String, $status: [ScanStatus!], $accountId: ID) {
  taskHistory(first: $first, after: $after, status: $status, accountId: $accountId) {
    edges { cursor node { id status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

FINDINGS = """
query Findings($taskId: ID!, $first: Int, $after: String, $kind: FindingKind) {
  scanFindings(taskId: $taskId, first: $first, after: $after, kind: $kind) {
    edges { cursor node { id kind detail folder uid subject } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


@pytest.fixture
async def api(services: Any) -> AsyncIterator[Api]:
    async with open_api() as api:
        yield api


async def all_pages(
    api: Api, user_id: str, query: str, field: str, variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """Follow endCursor until hasNextPage is false; return every page's connection."""
    pages = []
    after = None
    while True:
        data = await api.data(user_id, query, {**variables, "after": after})
        connection = data[field]
        pages.append(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            return pages
        after = connection["pageInfo"]["endCursor"]
        assert len(pages) < 20, "pagination does not end"


def node_ids(pages: list[dict[str, Any]]) -> list[str]:
    return [edge["node"]["id"] for page in pages for edge in page["edges"]]


async def test_history_pages_each_task_once_newest_first(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    tasks = await insert_tasks(user_id, account, [ScanStatus.COMPLETED] * 7)
    await insert_tasks(new_user_id(), account, [ScanStatus.COMPLETED] * 2)

    pages = await all_pages(api, user_id, HISTORY, "taskHistory", {"first": 3})

    assert [len(page["edges"]) for page in pages] == [3, 3, 1]
    assert node_ids(pages) == [str(task.id) for task in reversed(tasks)]
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [False, True, True]
    for page in pages:
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]


async def test_history_page_ends_exactly_at_last_task(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    await insert_tasks(user_id, account, [ScanStatus.COMPLETED] * 4)
    pages = await all_pages(api, user_id, HISTORY, "taskHistory", {"first": 2})
    assert [len(page["edges"]) for page in pages] == [2, 2]


async def test_history_of_new_user_is_empty(api: Api) -> None:
    data = await api.data(new_user_id(), HISTORY, {})
    assert data["taskHistory"] == {
        "edges": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


async def test_history_filters_by_status(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    statuses = [ScanStatus.COMPLETED, ScanStatus.FAILED, ScanStatus.CANCELLED, ScanStatus.FAILED]
    tasks = await insert_tasks(user_id, account, statuses)
    variables = {"first": 1, "status": ["FAILED", "CANCELLED"]}
    pages = await all_pages(api, user_id, HISTORY, "taskHistory", variables)
    assert node_ids(pages) == [str(tasks[3].id), str(tasks[2].id), str(tasks[1].id)]


async def test_history_filters_by_account(api: Api) -> None:
    user_id = new_user_id()
    first_account = await insert_account(user_id)
    second_account = await insert_account(user_id)
    await insert_tasks(user_id, first_account, [ScanStatus.COMPLETED] * 2)
    expected = await insert_tasks(user_id, second_account, [ScanStatus.COMPLETED] * 2)
    variables = {"accountId": str(second_account.id)}
    pages = await all_pages(api, user_id, HISTORY, "taskHistory", variables)
    assert node_ids(pages) == [str(task.id) for task in reversed(expected)]


@pytest.mark.parametrize(("first", "message"), [(0, "got 0"), (101, "got 101"), (-5, "got -5")])
async def test_history_rejects_page_size(api: Api, first: int, message: str) -> None:
    body = await api.post(new_user_id(), HISTORY, {"first": first})
    [error] = body["errors"]
    assert error["message"] == f"first must be from 1 to 100, {message}"
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "first"}


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"not an object id").decode(),
        base64.urlsafe_b64encode(bytes([0xFF] * 12)).decode(),
    ],
)
async def test_history_rejects_malformed_cursor(api: Api, cursor: str) -> None:
    body = await api.post(new_user_id(), HISTORY, {"after": cursor})
    [error] = body["errors"]
    assert error["message"] == (
        f"cursor {cursor!r} is not valid; pass the endCursor of a previous page or omit it"
    )
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "after"}


async def test_findings_page_each_finding_once(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task, other_task] = await insert_tasks(user_id, account, [ScanStatus.COMPLETED] * 2)
    findings = await insert_findings(task, [FindingKind.LINK_MISMATCH] * 5)
    await insert_findings(other_task, [FindingKind.LINK_MISMATCH] * 3)

    pages = await all_pages(
        api, user_id, FINDINGS, "scanFindings", {"taskId": str(task.id), "first": 2}
    )

    assert [len(page["edges"]) for page in pages] == [2, 2, 1]
    assert node_ids(pages) == [str(finding.id) for finding in reversed(findings)]
    newest = pages[0]["edges"][0]["node"]
    assert newest == {
        "id": str(findings[-1].id),
        "kind": "LINK_MISMATCH",
        "detail": "finding on message 5",
        "folder": "INBOX",
        "uid": 5,
        "subject": "message 5",
    }


async def test_findings_filter_by_kind(api: Api) -> None:
    user_id = new_user_id()
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [ScanStatus.COMPLETED])
    kinds = [
        FindingKind.OVERSIZED,
        FindingKind.AUTH_FAILURE,
        FindingKind.OVERSIZED,
        FindingKind.MALFORMED,
    ]
    findings = await insert_findings(task, kinds)
    variables = {"taskId": str(task.id), "first": 1, "kind": "OVERSIZED"}
    pages = await all_pages(api, user_id, FINDINGS, "scanFindings", variables)
    assert node_ids(pages) == [str(findings[2].id), str(findings[0].id)]


async def test_findings_of_other_users_task_are_not_found(api: Api) -> None:
    owner = new_user_id()
    account = await insert_account(owner)
    [task] = await insert_tasks(owner, account, [ScanStatus.COMPLETED])
    await insert_findings(task, [FindingKind.MALFORMED])

    body = await api.post(new_user_id(), FINDINGS, {"taskId": str(task.id)})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"] == f"scan task {str(task.id)!r} not found"
    assert error["extensions"] == {"code": "NOT_FOUND"}
