"""Isolation between users: every operation of the schema, run by user B against user A's
accounts, tasks and findings, returns NotFound, null or an empty result and no byte of A's
data. A second test fails when the schema gains an operation without a row here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from graphql import build_schema as parse_sdl
from starlette.testclient import TestClient

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
from jobs.progress import event_from_task
from jobs.queries import encode_cursor
from jobs.runtime import Runtime
from schema import schema
from tests.clients import TRANSPORT_WS, graphql
from tests.test_api_harness import drop_database, isolated_settings, new_user_id

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "mailbox"


@dataclass
class Victim:
    """User A's objects; ``secrets`` lists every string that must not reach user B."""

    user_id: str
    account_id: str
    task_ids: dict[ScanStatus, str]
    finding_ids: list[str]
    secrets: list[str]


async def insert_victim(user_id: str) -> Victim:
    marker = user_id.removeprefix("user-")
    account = EmailAccount(
        user_id=user_id,
        label=f"alice-label-{marker}",
        host=f"imap.alice-{marker}.example",
        port=993,
        security=ImapSecurity.SSL,
        username=f"alice-login-{marker}",
        password_encrypted="not-a-real-token",
    )
    await account.insert()
    task_ids: dict[ScanStatus, str] = {}
    finding_ids: list[str] = []
    for status in ScanStatus:
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
        task_ids[status] = str(task.id)
        finding = Finding(
            id=finding_key(str(task.id), "INBOX", 1, 1, 0),
            task_id=str(task.id),
            user_id=user_id,
            account_id=str(account.id),
            folder="INBOX",
            uidvalidity=1,
            uid=1,
            ordinal=0,
            kind=FindingKind.LINK_MISMATCH,
            detail=f"alice-detail-{marker}",
            subject=f"alice-subject-{marker}",
            sender_address=f"alice-sender-{marker}@example.com",
        )
        await finding.insert()
        finding_ids.append(str(finding.id))
    secrets = [
        user_id,
        str(account.id),
        account.label,
        account.host,
        account.username,
        f"alice-subject-{marker}",
        f"alice-detail-{marker}",
        f"alice-sender-{marker}",
        *task_ids.values(),
        *finding_ids,
    ]
    return Victim(user_id, str(account.id), task_ids, finding_ids, secrets)


# --- the table ------------------------------------------------------------------------------

#: Fields that every check below selects on a task, an account and a finding.
TASK_FIELDS = "id accountId accountLabel status account { id label host username }"
ACCOUNT_FIELDS = "id label host username"
FINDING_FIELDS = "id detail subject senderAddress"

#: Expected outcome: "not_found" (NotFound member or NOT_FOUND error), "null", "empty" (no
#: item), "own" (only B's own objects), or "no_data" (nothing of A; any error allowed).
Expect = str


@dataclass(frozen=True)
class Case:
    operation: str
    name: str
    document: str
    variables: Callable[[Victim], dict[str, Any]]
    expect: Expect


def task_variables(status: ScanStatus) -> Callable[[Victim], dict[str, Any]]:
    def variables(victim: Victim) -> dict[str, Any]:
        return {"id": victim.task_ids[status]}

    return variables


def each_task(
    operation: str, document: str, expect: Expect, statuses: list[ScanStatus] | None = None
) -> list[Case]:
    return [
        Case(
            operation,
            f"{status.value.lower()} task",
            document,
            task_variables(status),
            expect,
        )
        for status in statuses or list(ScanStatus)
    ]


NOT_FOUND = "... on NotFound { code message }"
INVALID_INPUT = "... on InvalidInput { code message }"
INVALID_STATE = "... on InvalidState { code message }"

QUERY_CASES = [
    *each_task("task", f"query Q($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}", "null"),
    Case(
        "taskHistory",
        "all statuses",
        f"{{ taskHistory(first: 100) {{ edges {{ node {{ {TASK_FIELDS} }} }} }} }}",
        lambda victim: {},
        "own",
    ),
    Case(
        "taskHistory",
        "filtered by A's account",
        f"""query Q($id: ID!) {{ taskHistory(first: 100, accountId: $id) {{
          edges {{ cursor node {{ {TASK_FIELDS} }} }} pageInfo {{ hasNextPage }} }} }}""",
        lambda victim: {"id": victim.account_id},
        "empty",
    ),
    Case(
        "taskHistory",
        "after A's cursor",
        f"""query Q($after: String) {{ taskHistory(first: 100, after: $after) {{
          edges {{ node {{ {TASK_FIELDS} }} }} }} }}""",
        lambda victim: {"after": encode_cursor(victim.task_ids[ScanStatus.COMPLETED])},
        "own",
    ),
    Case("accounts", "list", f"{{ accounts {{ {ACCOUNT_FIELDS} }} }}", lambda victim: {}, "own"),
    *each_task(
        "scanFindings",
        f"""query Q($id: ID!) {{ scanFindings(taskId: $id, first: 50) {{
          edges {{ node {{ {FINDING_FIELDS} }} }} }} }}""",
        "not_found",
    ),
    Case(
        "scanFindings",
        "filtered by kind",
        f"""query Q($id: ID!) {{ scanFindings(taskId: $id, kind: LINK_MISMATCH) {{
          edges {{ node {{ {FINDING_FIELDS} }} }} }} }}""",
        lambda victim: {"id": victim.task_ids[ScanStatus.COMPLETED]},
        "not_found",
    ),
    Case("systemHealth", "as a user", "{ systemHealth { __typename } }", lambda v: {}, "no_data"),
]

MUTATION_CASES = [
    Case(
        "connectImapAccount",
        "own account",
        f"""mutation {{ connectImapAccount(input: {{host: "127.0.0.1", username: "bob",
          password: "bob-password"}}) {{ __typename
          ... on ConnectAccountSuccess {{ account {{ {ACCOUNT_FIELDS} }} }}
          {INVALID_INPUT} }} }}""",
        lambda victim: {},
        "own",
    ),
    Case(
        "removeAccount",
        "A's account",
        f"mutation M($id: ID!) {{ removeAccount(id: $id) {{ __typename {NOT_FOUND} }} }}",
        lambda victim: {"id": victim.account_id},
        "not_found",
    ),
    Case(
        "startScan",
        "A's account",
        f"""mutation M($id: ID!) {{ startScan(accountId: $id) {{ __typename
          ... on StartScanSuccess {{ task {{ {TASK_FIELDS} }} }}
          {NOT_FOUND} {INVALID_INPUT} {INVALID_STATE} }} }}""",
        lambda victim: {"id": victim.account_id},
        "not_found",
    ),
    *each_task(
        "cancelScan",
        f"""mutation M($id: ID!) {{ cancelScan(taskId: $id) {{ __typename
          ... on CancelScanSuccess {{ task {{ {TASK_FIELDS} }} }}
          {NOT_FOUND} {INVALID_STATE} }} }}""",
        "not_found",
    ),
    *each_task(
        "retryScan",
        f"""mutation M($id: ID!) {{ retryScan(taskId: $id) {{ __typename
          ... on StartScanSuccess {{ task {{ {TASK_FIELDS} }} }}
          {NOT_FOUND} {INVALID_INPUT} {INVALID_STATE} }} }}""",
        "not_found",
    ),
]

SUBSCRIPTION_CASES = [
    *each_task(
        "scanProgress",
        "subscription S($id: ID!) { scanProgress(taskId: $id) { taskId status message } }",
        "not_found",
    ),
    Case(
        "myScans",
        "while A's tasks publish",
        "subscription { myScans { taskId status message } }",
        lambda victim: {},
        "own",
    ),
]

CASES = QUERY_CASES + MUTATION_CASES + SUBSCRIPTION_CASES


def test_every_operation_has_a_row() -> None:
    sdl = parse_sdl(str(schema))
    roots = [sdl.query_type, sdl.mutation_type, sdl.subscription_type]
    operations = {name for root in roots if root is not None for name in root.fields}
    covered = {case.operation for case in CASES}
    assert operations - covered == set(), "operations without an isolation case"


# --- running the table ----------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    victim: Victim
    intruder: str
    #: The intruder's own task, so myScans has something of B's to send.
    intruder_task: ScanTask


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


@pytest.fixture
def world(services: Any) -> Iterator[World]:
    with TestClient(create_app(isolated_settings())) as client:
        assert client.portal is not None
        victim = client.portal.call(insert_victim, new_user_id())
        intruder = new_user_id()

        async def insert_own_task() -> ScanTask:
            task = ScanTask(
                user_id=intruder,
                account_id="000000000000000000000000",
                months=1,
                since=utcnow(),
                status=ScanStatus.RUNNING,
            )
            await task.insert()
            return task

        yield World(client, victim, intruder, client.portal.call(insert_own_task))
        client.portal.call(drop_database, runtime_of(client))


def post(world: World, case: Case) -> tuple[str, dict[str, Any]]:
    response = world.client.post(
        "/graphql",
        json={"query": case.document, "variables": case.variables(world.victim)},
        headers={"Authorization": f"Bearer dev:{world.intruder}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return response.text, body


def check_outcome(case: Case, body: dict[str, Any]) -> None:
    data = body.get("data") or {}
    errors = body.get("errors") or []
    value = data.get(case.operation)
    if case.expect == "not_found":
        codes = [error.get("extensions", {}).get("code") for error in errors]
        member = value.get("code") if isinstance(value, dict) else None
        assert member == "NOT_FOUND" or codes == ["NOT_FOUND"], body
    elif case.expect == "null":
        assert value is None, body
        assert errors == [], body
    elif case.expect == "empty":
        assert errors == [], body
        assert isinstance(value, dict), body
        assert value["edges"] == [], body
    elif case.expect == "own":
        assert errors == [], body
    else:
        assert case.expect == "no_data", case


def assert_no_victim_data(world: World, case: Case, text: str) -> None:
    # An error message may repeat an id that B sent itself, which reveals nothing new to B.
    for value in case.variables(world.victim).values():
        text = text.replace(str(value), "<sent by B>")
    leaked = [secret for secret in world.victim.secrets if secret in text]
    assert leaked == [], f"{case.operation} ({case.name}) returned A's data: {leaked}"


def victim_unchanged(world: World) -> None:
    async def read() -> tuple[EmailAccount | None, list[ScanTask]]:
        account = await EmailAccount.find_one({"user_id": world.victim.user_id})
        tasks = await ScanTask.find({"user_id": world.victim.user_id}).to_list()
        return account, tasks

    assert world.client.portal is not None
    account, tasks = world.client.portal.call(read)
    assert account is not None
    assert {str(task.id): task.status for task in tasks} == {
        task_id: status for status, task_id in world.victim.task_ids.items()
    }


@pytest.mark.parametrize(
    "case", QUERY_CASES + MUTATION_CASES, ids=lambda case: f"{case.operation}-{case.name}"
)
def test_http_operation_is_isolated(world: World, case: Case) -> None:
    text, body = post(world, case)
    check_outcome(case, body)
    assert_no_victim_data(world, case, text)
    victim_unchanged(world)


def subscribe_raw(world: World, case: Case, publish: Callable[[], None] | None) -> list[str]:
    """Run a subscription as B; return the raw text of every message until the first of B's
    events after ``publish``, or until the server ends the operation."""
    seen: list[str] = []
    with world.client.websocket_connect("/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        token = f"Bearer dev:{world.intruder}"
        ws.send_json({"type": "connection_init", "payload": {"authorization": token}})
        assert ws.receive_json() == {"type": "connection_ack"}
        payload = {"query": case.document, "variables": case.variables(world.victim)}
        ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        first = ws.receive_text()
        seen.append(first)
        if publish is None:
            return seen
        publish()
        while True:
            text = ws.receive_text()
            seen.append(text)
            message = json.loads(text)
            if message["type"] != "next":
                return seen
            if message["payload"]["data"]["myScans"]["message"] == "intruder-last":
                return seen


@pytest.mark.parametrize(
    "case", SUBSCRIPTION_CASES, ids=lambda case: f"{case.operation}-{case.name}"
)
def test_subscription_is_isolated(world: World, case: Case) -> None:
    runtime = runtime_of(world.client)
    assert world.client.portal is not None
    portal = world.client.portal

    def publish_all() -> None:
        async def run() -> None:
            for task_id in world.victim.task_ids.values():
                task = await ScanTask.get(task_id)
                assert task is not None
                await runtime.publisher.publish(event_from_task(task, "victim event"), force=True)
            own = event_from_task(world.intruder_task, "intruder-last")
            await runtime.publisher.publish(own, force=True)

        portal.call(run)

    seen = subscribe_raw(world, case, publish_all if case.operation == "myScans" else None)
    text = "\n".join(seen)
    assert_no_victim_data(world, case, text)
    messages = [json.loads(item) for item in seen]
    if case.expect == "not_found":
        [message] = messages
        assert message["type"] == "error", message
        assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
    else:
        task_ids = {m["payload"]["data"]["myScans"]["taskId"] for m in messages}
        assert task_ids == {str(world.intruder_task.id)}
        assert "victim event" not in text


# --- two users' scans on one worker ---------------------------------------------------------


async def connect_and_start(
    client: httpx.AsyncClient, user_id: str, mailbox: Any, label: str
) -> str:
    connect = """mutation C($input: ImapAccountInput!) { connectImapAccount(input: $input) {
      ... on ConnectAccountSuccess { account { id } } } }"""
    variables = {
        "input": {
            "host": "127.0.0.1",
            "port": mailbox.imaps_port,
            "username": mailbox.name,
            "password": mailbox.password,
            "label": label,
        }
    }
    data = await graphql(client, user_id, connect, variables)
    account_id = data["connectImapAccount"]["account"]["id"]
    start = """mutation S($a: ID!) { startScan(accountId: $a) {
      ... on StartScanSuccess { task { id } } } }"""
    started = await graphql(client, user_id, start, {"a": account_id})
    return str(started["startScan"]["task"]["id"])


async def my_scans_raw(ws_url: str, user_id: str, ready: asyncio.Event) -> list[str]:
    """Collect the raw myScans messages of ``user_id`` until one of its tasks completes."""
    seen: list[str] = []
    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer dev:{user_id}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        query = "subscription { myScans { taskId status message } }"
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        # The pong shows that the server has read the subscribe message before any scan starts.
        await socket.send(json.dumps({"type": "ping"}))
        while json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] != "pong":
            pass
        ready.set()
        while True:
            text = str(await asyncio.wait_for(socket.recv(), 60))
            seen.append(text)
            message = json.loads(text)
            if message["type"] == "next" and message["payload"]["data"]["myScans"]["status"] in {
                "COMPLETED",
                "FAILED",
            }:
                return seen


async def wait_until_finished(
    client: httpx.AsyncClient, user_id: str, task_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        data = await graphql(
            client, user_id, "query T($id: ID!) { task(id: $id) { status } }", {"id": task_id}
        )
        task: dict[str, Any] = data["task"]
        if task["status"] in {"COMPLETED", "FAILED", "CANCELLED"}:
            return task
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.2)


async def test_my_scans_on_shared_worker(api_server: Any, worker: Any, mail_user: Any) -> None:
    mailbox = mail_user()
    now = datetime.now(UTC)
    files = sorted(CORPUS.iterdir())[:300]
    mailbox.deliver_many((path.read_bytes(), now - timedelta(days=1)) for path in files)
    alice, bob = f"alice-{new_user_id()}", f"bob-{new_user_id()}"

    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        ready = asyncio.Event()
        bob_stream = asyncio.create_task(my_scans_raw(api_server.ws_url, bob, ready))
        await asyncio.wait_for(ready.wait(), 10)
        alice_task = await connect_and_start(client, alice, mailbox, f"alice {time.time_ns()}")
        # Alice's scan runs to its end while Bob's subscription is open, so every one of
        # her events was published while Bob listened.
        alice_state = await wait_until_finished(client, alice, alice_task)
        bob_task = await connect_and_start(client, bob, mailbox, "bob")
        seen = await asyncio.wait_for(bob_stream, 90)

    text = "\n".join(seen)
    assert alice_task not in text
    assert alice not in text
    task_ids = {json.loads(item)["payload"]["data"]["myScans"]["taskId"] for item in seen}
    assert task_ids == {bob_task}
    assert alice_state["status"] == "COMPLETED"
