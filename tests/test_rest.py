"""REST compatibility routes against the real API, worker and Dovecot."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.mailboxes import connect_filled_account

pytestmark = pytest.mark.integration

UNKNOWN_ID = "0123456789abcdef01234567"
#: Maximum wait for a scan of a small mailbox to end, in seconds.
SCAN_TIMEOUT_S = 60.0


def headers(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer dev:{user_id}"}


def new_user() -> str:
    return f"rest-{uuid.uuid4().hex[:8]}"


async def sync_inbox(
    client: httpx.AsyncClient, user_id: str, account_id: str, body: Any = None
) -> httpx.Response:
    return await client.post(
        f"/api/email-accounts/{account_id}/sync-inbox",
        json={"months": 3} if body is None else body,
        headers=headers(user_id),
    )


async def sync_status(client: httpx.AsyncClient, user_id: str, account_id: str) -> httpx.Response:
    return await client.get(
        f"/api/email-accounts/{account_id}/sync-status", headers=headers(user_id)
    )


async def wait_until_finished(
    client: httpx.AsyncClient, user_id: str, account_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while time.monotonic() < deadline:
        response = await sync_status(client, user_id, account_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "processing":
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"the scan of account {account_id} did not end in {SCAN_TIMEOUT_S} s")


async def test_sync_inbox_then_status(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(api_server.http_url, user_id, mail_user(), 40, "R")

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        started = await sync_inbox(client, user_id, account_id)
        first = started.json()
        finished = await wait_until_finished(client, user_id, account_id)
        again = (await sync_inbox(client, user_id, account_id)).json()
        await wait_until_finished(client, user_id, account_id)

    assert started.status_code == 202, started.text
    assert set(first) == {"task_id", "status", "estimated_duration"}
    assert first["status"] == "processing"
    assert first["estimated_duration"] is None
    assert finished["task_id"] == first["task_id"]
    assert finished["account_id"] == account_id
    assert finished["status"] == "completed"
    assert finished["scan_status"] == "COMPLETED"
    assert finished["progress"] == 100
    assert finished["processed"] == finished["total"] == 40
    assert finished["months"] == 3
    assert finished["error"] is None
    assert finished["summary"]["messages"] == 40
    assert again["task_id"] != first["task_id"]
    assert isinstance(again["estimated_duration"], int)
    assert again["estimated_duration"] >= 1


async def test_second_sync_while_active_conflicts(
    api_server: Any, worker: Any, mail_user: Any
) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(api_server.http_url, user_id, mail_user(), 800, "B")

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        first = (await sync_inbox(client, user_id, account_id)).json()
        second = await sync_inbox(client, user_id, account_id)
        await wait_until_finished(client, user_id, account_id)

    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "SCAN_ALREADY_RUNNING"
    assert error["task_id"] == first["task_id"]


async def test_other_users_account_not_found(api_server: Any, mail_user: Any) -> None:
    owner = new_user()
    account_id = await connect_filled_account(api_server.http_url, owner, mail_user(), 1, "O")
    stranger = new_user()

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        started = await sync_inbox(client, stranger, account_id)
        status = await sync_status(client, stranger, account_id)
        unknown = await sync_status(client, stranger, UNKNOWN_ID)

    assert started.status_code == 404
    assert started.json()["error"] == {
        "code": "NOT_FOUND",
        "message": f"account {account_id!r} not found",
    }
    assert status.status_code == 404
    assert status.json()["error"]["code"] == "NOT_FOUND"
    assert unknown.status_code == 404


async def test_status_before_any_sync_not_found(api_server: Any, mail_user: Any) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(api_server.http_url, user_id, mail_user(), 1, "N")

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        response = await sync_status(client, user_id, account_id)

    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"account {account_id!r} has no scan yet; POST sync-inbox first"
    )


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"months": 0}, "months", "months must be from 1 to 240, got 0"),
        ({"months": 241}, "months", "months must be from 1 to 240, got 241"),
        ({"months": "3"}, "months", "months must be an integer, got '3'"),
        ({"months": True}, "months", "months must be an integer, got True"),
        ([3], "body", "request body must be a JSON object, got [3]"),
    ],
)
async def test_invalid_months_rejected(
    api_server: Any, mail_user: Any, body: Any, field: str, message: str
) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(api_server.http_url, user_id, mail_user(), 1, "I")

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        response = await sync_inbox(client, user_id, account_id, body)

    assert response.status_code == 400
    assert response.json()["error"] == {"code": "INVALID_INPUT", "message": message, "field": field}


async def test_malformed_json_rejected(api_server: Any) -> None:
    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        response = await client.post(
            f"/api/email-accounts/{UNKNOWN_ID}/sync-inbox",
            content=b"{months: 3",
            headers={**headers(new_user()), "Content-Type": "application/json"},
        )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert error["field"] == "body"
    assert error["message"].startswith("request body is not valid JSON")


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_missing_token_unauthenticated(api_server: Any, method: str) -> None:
    route = "sync-inbox" if method == "POST" else "sync-status"

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        response = await client.request(method, f"/api/email-accounts/{UNKNOWN_ID}/{route}")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == {
        "code": "UNAUTHENTICATED",
        "message": "missing Authorization header; send 'Authorization: Bearer <token>'",
    }
