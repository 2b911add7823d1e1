"""Helpers shared by the in-process API tests; this module contains no tests.

Each app gets a database of its own, dropped at the end. Besides isolating the tests, this
avoids a FerretDB 1.24.2 crash: a ``createIndexes`` command that repeats two or more existing
indexes of a collection panics the connection, and Beanie repeats every index whenever it is
initialised again on the same database.

HTTP goes through ``httpx.ASGITransport`` against an app whose lifespan the helper runs.
Websocket tests use Starlette's ``TestClient``, which runs the app on an event loop of its
own thread: anything that touches the app's connections (Beanie documents, the progress
publisher) must run there, through ``client.portal.call``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from api.app import create_app
from jobs.documents import (
    EmailAccount,
    Finding,
    FindingKind,
    ImapSecurity,
    ScanStatus,
    ScanTask,
    finding_key,
    utcnow,
)
from jobs.runtime import Runtime
from jobs.settings import Settings, load_settings


def new_user_id() -> str:
    """Return a user id no other test uses, so tests share the database without clashing."""
    return f"user-{uuid.uuid4().hex[:12]}"


def bearer(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer dev:{user_id}"}


@dataclass
class Api:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def post(
        self, user_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST one operation as ``user_id`` and return the whole response body."""
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=bearer(user_id)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, user_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST one operation and return its ``data``; fails on any GraphQL error."""
        body = await self.post(user_id, query, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


def isolated_settings(**changes: Any) -> Settings:
    """Return the environment's settings with ``changes`` and a database no other app uses."""
    database = f"mailscan-test-{uuid.uuid4().hex[:12]}"
    return dataclasses.replace(load_settings(), mongodb_database=database, **changes)


async def drop_database(runtime: Runtime) -> None:
    await runtime.mongo.drop_database(runtime.settings.mongodb_database)


@asynccontextmanager
async def open_api(**changes: Any) -> AsyncIterator[Api]:
    """Run the app's lifespan and yield it with an in-process HTTP client.

    ``changes`` override settings, for example ``dev_auth=False``.
    """
    app = create_app(isolated_settings(**changes))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            api = Api(app=app, client=client)
            try:
                yield api
            finally:
                await drop_database(api.runtime)


async def insert_account(user_id: str, label: str = "test account") -> EmailAccount:
    account = EmailAccount(
        user_id=user_id,
        label=label,
        host="127.0.0.1",
        port=993,
        security=ImapSecurity.SSL,
        username="someone",
        password_encrypted="not-a-real-token",
    )
    await account.insert()
    return account


async def insert_tasks(
    user_id: str, account: EmailAccount, statuses: list[ScanStatus]
) -> list[ScanTask]:
    """Insert one task per status, in list order, and return them."""
    tasks = []
    for status in statuses:
        now = utcnow()
        task = ScanTask(
            user_id=user_id,
            account_id=str(account.id),
            account_label=account.label,
            months=1,
            since=now - timedelta(days=30),
            status=status,
            created_at=now,
        )
        await task.insert()
        tasks.append(task)
    return tasks


async def insert_findings(task: ScanTask, kinds: list[FindingKind]) -> list[Finding]:
    """Insert one finding per kind, on messages with UIDs 1, 2, … in list order."""
    findings = []
    for uid, kind in enumerate(kinds, start=1):
        finding = Finding(
            id=finding_key(str(task.id), "INBOX", 1, uid, 0),
            task_id=str(task.id),
            user_id=task.user_id,
            account_id=task.account_id,
            folder="INBOX",
            uidvalidity=1,
            uid=uid,
            ordinal=0,
            kind=kind,
            detail=f"finding on message {uid}",
            subject=f"message {uid}",
        )
        await finding.insert()
        findings.append(finding)
    return findings
