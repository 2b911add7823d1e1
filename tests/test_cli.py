"""The ``mailscan`` command line as a child process against the real API, worker and Dovecot."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.clients import graphql
from tests.mailboxes import CONNECT, connect_filled_account

pytestmark = pytest.mark.integration

#: Maximum run time of one command, in seconds.
COMMAND_TIMEOUT_S = 90.0
UNKNOWN_ID = "0123456789abcdef01234567"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def mailscan(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m cli ARGS`` with ``env`` added to this process's environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def new_user() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def flags(api_server: Any, user_id: str) -> list[str]:
    return ["--api-url", api_server.http_url, "--token", f"dev:{user_id}"]


async def test_scan_shows_progress_and_summary(
    api_server: Any, worker: Any, mail_user: Any
) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(
        api_server.http_url, user_id, mail_user(), 60, "CLI mailbox"
    )

    result = await mailscan(
        "scan", "--account", account_id, "--months", "3", *flags(api_server, user_id)
    )

    assert result.code == 0, result.stderr
    assert "100%" in result.stderr
    assert "60/60" in result.stderr
    assert "msg/s" in result.stderr
    assert "COMPLETED (CLI mailbox, 3 months)" in result.stdout
    assert "60 messages" in result.stdout


async def test_scan_json_from_environment(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(
        api_server.http_url, user_id, mail_user(), 30, "CLI json mailbox"
    )
    env = {"MAILSCAN_API_URL": api_server.http_url, "MAILSCAN_TOKEN": f"dev:{user_id}"}

    scanned = await mailscan("scan", "--account", account_id, "--months", "3", "--json", env=env)
    accounts = await mailscan("accounts", "--json", env=env)
    history = await mailscan("--json", "history", env=env)

    assert scanned.code == 0, scanned.stderr
    task = scanned.json()
    assert task["status"] == "COMPLETED"
    assert task["summary"]["messages"] == 30
    assert accounts.code == 0, accounts.stderr
    assert [account["id"] for account in accounts.json()] == [account_id]
    assert history.code == 0, history.stderr
    assert [row["id"] for row in history.json()] == [task["id"]]


async def test_tables_for_people(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(
        api_server.http_url, user_id, mail_user(), 10, "Tables"
    )

    accounts = await mailscan("accounts", *flags(api_server, user_id))
    history = await mailscan("history", *flags(api_server, user_id))

    assert accounts.code == 0, accounts.stderr
    assert account_id in accounts.stdout
    assert "Tables" in accounts.stdout
    assert history.code == 0, history.stderr
    assert "Scans" in history.stdout


async def test_cancelled_scan_exits_3(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = new_user()
    account_id = await connect_filled_account(
        api_server.http_url, user_id, mail_user(), 1500, "CLI big mailbox"
    )
    watching = asyncio.create_task(
        mailscan("scan", "--account", account_id, "--months", "3", *flags(api_server, user_id))
    )
    task_id = await wait_for_task(api_server, user_id)

    cancelled = await mailscan("cancel", task_id, *flags(api_server, user_id))
    watched = await watching
    again = await mailscan("cancel", task_id, *flags(api_server, user_id))

    assert cancelled.code == 0, cancelled.stderr
    assert f"Task {task_id} is C" in cancelled.stdout
    assert watched.code == 3, watched.stderr
    assert "CANCELLED" in watched.stdout
    assert again.code == 4
    assert "INVALID_STATE" in again.stderr


async def wait_for_task(api_server: Any, user_id: str) -> str:
    """Return the id of the user's first task once the API lists it."""
    query = "{ taskHistory(first: 1) { edges { node { id } } } }"
    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        for _ in range(200):
            edges = (await graphql(client, user_id, query))["taskHistory"]["edges"]
            if edges:
                return str(edges[0]["node"]["id"])
            await asyncio.sleep(0.05)
    raise AssertionError(f"no task of {user_id} appeared within 10 s")


async def test_failed_scan_exits_1(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = new_user()
    user = mail_user()
    variables = {
        "input": {
            "host": user.host,
            "port": user.imaps_port,
            "security": "SSL",
            "username": user.name,
            "password": "wrong password",
            "label": "CLI bad password",
        }
    }
    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        data = await graphql(client, user_id, CONNECT, variables)
    account_id = data["connectImapAccount"]["account"]["id"]

    result = await mailscan("--json", "scan", "--account", account_id, *flags(api_server, user_id))

    assert result.code == 1, result.stderr
    task = result.json()
    assert task["status"] == "FAILED"
    assert task["error"]["code"] == "AUTH_FAILED"


async def test_unknown_account_exits_4(api_server: Any) -> None:
    result = await mailscan("--json", "scan", "--account", UNKNOWN_ID, *flags(api_server, "x"))

    assert result.code == 4
    assert result.json()["error"]["code"] == "NOT_FOUND"
    assert f"NOT_FOUND: account '{UNKNOWN_ID}' not found" in result.stderr


async def test_rejected_token_exits_5(api_server: Any) -> None:
    result = await mailscan(
        "accounts", "--api-url", api_server.http_url, "--token", "dev:not a user id"
    )

    assert result.code == 5
    assert "sign-in rejected: invalid development user id 'not a user id'" in result.stderr


async def test_missing_token_exits_5() -> None:
    env = {"MAILSCAN_TOKEN": ""}

    result = await mailscan("accounts", env=env)

    assert result.code == 5
    assert "no token; pass --token or set MAILSCAN_TOKEN" in result.stderr


async def test_unreachable_api_exits_5() -> None:
    result = await mailscan("accounts", "--api-url", "http://127.0.0.1:9", "--token", "dev:x")

    assert result.code == 5
    assert "cannot reach the API at http://127.0.0.1:9" in result.stderr
