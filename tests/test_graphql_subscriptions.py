"""scanProgress and myScans over both websocket protocols, with events from ProgressPublisher.

The app runs in Starlette's TestClient, on the event loop of the client's own thread, so the
documents and events each test needs are written there through ``client.portal.call``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketTestSession

from api.app import create_app
from jobs.documents import ScanPhase, ScanStatus, ScanTask, utcnow
from jobs.progress import ProgressEvent, event_from_task
from jobs.runtime import Runtime
from tests.test_api_harness import (
    drop_database,
    insert_account,
    insert_tasks,
    isolated_settings,
    new_user_id,
)

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

PROGRESS = """
subscription Progress($taskId: ID!) {
  scanProgress(taskId: $taskId) { taskId status phase percent processed total sequence message }
}
"""

MY_SCANS = "subscription { myScans { taskId status percent sequence } }"


@pytest.fixture
def client(services: Any) -> Iterator[TestClient]:
    with TestClient(create_app(isolated_settings())) as client:
        yield client
        client.portal.call(drop_database, runtime_of(client))


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def insert_task(client: TestClient, user_id: str, status: ScanStatus) -> ScanTask:
    async def insert() -> ScanTask:
        account = await insert_account(user_id)
        [task] = await insert_tasks(user_id, account, [status])
        return task

    return client.portal.call(insert)


def publish(client: TestClient, task: ScanTask, **changes: Any) -> ProgressEvent:
    """Publish an event of ``task`` with ``changes`` applied, as the scan actor would."""
    event = event_from_task(task).model_copy(update={**changes, "updated_at": utcnow()})
    published = client.portal.call(runtime_of(client).publisher.publish, event)
    assert published is not None
    return published


def connect(client: TestClient, protocol: str, user_id: str) -> WebSocketTestSession:
    ws = client.websocket_connect("/graphql", subprotocols=[protocol])
    ws.__enter__()
    ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer dev:{user_id}"}})
    assert ws.receive_json() == {"type": "connection_ack"}
    return ws


def start(ws: WebSocketTestSession, protocol: str, query: str, variables: dict[str, Any]) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    ws.send_json({"id": "1", "type": kind, "payload": {"query": query, "variables": variables}})


def receive(ws: WebSocketTestSession) -> dict[str, Any]:
    """Return the next message that is not a keepalive (legacy ``ka``, ``ping``)."""
    while True:
        message: dict[str, Any] = ws.receive_json()
        if message["type"] not in {"ka", "ping", "pong"}:
            return message


def next_data(ws: WebSocketTestSession, protocol: str) -> dict[str, Any]:
    message = receive(ws)
    assert message["type"] == ("next" if protocol == TRANSPORT_WS else "data"), message
    assert message["id"] == "1"
    assert "errors" not in message["payload"], message
    data: dict[str, Any] = message["payload"]["data"]
    return data


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_scan_progress_sends_snapshot_then_live_events(client: TestClient, protocol: str) -> None:
    user_id = new_user_id()
    task = insert_task(client, user_id, ScanStatus.QUEUED)
    queued = publish(client, task)
    task_id = str(task.id)

    ws = connect(client, protocol, user_id)
    try:
        start(ws, protocol, PROGRESS, {"taskId": task_id})
        snapshot = next_data(ws, protocol)["scanProgress"]
        assert snapshot == {
            "taskId": task_id,
            "status": "QUEUED",
            "phase": "QUEUED",
            "percent": 0.0,
            "processed": 0,
            "total": 0,
            "sequence": queued.sequence,
            "message": None,
        }

        # The snapshot is read only after the hub's subscription is confirmed, so nothing
        # published from now on can be missed.
        publish(client, task, status=ScanStatus.RUNNING, phase=ScanPhase.FETCHING, percent=40.0,
                processed=40, total=100)  # fmt: skip
        publish(client, task, status=ScanStatus.COMPLETED, phase=ScanPhase.DONE, percent=100.0,
                processed=100, total=100, message="scan finished")  # fmt: skip

        running = next_data(ws, protocol)["scanProgress"]
        assert running["status"] == "RUNNING"
        assert running["phase"] == "FETCHING"
        assert running["percent"] == 40.0
        assert running["sequence"] == queued.sequence + 1
        done = next_data(ws, protocol)["scanProgress"]
        assert done["status"] == "COMPLETED"
        assert done["processed"] == 100
        assert done["message"] == "scan finished"
        assert done["sequence"] == queued.sequence + 2
        assert receive(ws) == {"type": "complete", "id": "1"}
    finally:
        ws.__exit__(None, None, None)


def test_scan_progress_subscribers_get_own_ids(client: TestClient) -> None:
    # Both subscribers share one execution and one payload text per live event, but each
    # frame must carry the id of its own operation.
    user_id = new_user_id()
    task = insert_task(client, user_id, ScanStatus.QUEUED)
    publish(client, task)
    payload = {"query": PROGRESS, "variables": {"taskId": str(task.id)}}

    sockets = [connect(client, TRANSPORT_WS, user_id) for _ in range(2)]
    try:
        for socket, operation_id in zip(sockets, ["first", "second"], strict=True):
            socket.send_json({"id": operation_id, "type": "subscribe", "payload": payload})
        snapshots = [receive(socket) for socket in sockets]
        assert [snapshot["id"] for snapshot in snapshots] == ["first", "second"]

        publish(client, task, status=ScanStatus.RUNNING, percent=60.0, processed=60, total=100)
        frames = [receive(socket) for socket in sockets]
    finally:
        for socket in sockets:
            socket.__exit__(None, None, None)

    assert [frame["id"] for frame in frames] == ["first", "second"]
    assert [frame["type"] for frame in frames] == ["next", "next"]
    assert frames[0]["payload"] == frames[1]["payload"]
    progress = frames[0]["payload"]["data"]["scanProgress"]
    assert progress["percent"] == 60.0
    assert progress["processed"] == 60


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_scan_progress_of_finished_task_ends_at_once(client: TestClient, protocol: str) -> None:
    user_id = new_user_id()
    task = insert_task(client, user_id, ScanStatus.COMPLETED)

    ws = connect(client, protocol, user_id)
    try:
        start(ws, protocol, PROGRESS, {"taskId": str(task.id)})
        # No event was ever published, so the state comes from the task document.
        snapshot = next_data(ws, protocol)["scanProgress"]
        assert snapshot["status"] == "COMPLETED"
        assert snapshot["sequence"] == 0
        assert receive(ws) == {"type": "complete", "id": "1"}
    finally:
        ws.__exit__(None, None, None)


def test_scan_progress_other_user_not_found(client: TestClient) -> None:
    task = insert_task(client, new_user_id(), ScanStatus.RUNNING)

    ws = connect(client, TRANSPORT_WS, new_user_id())
    try:
        start(ws, TRANSPORT_WS, PROGRESS, {"taskId": str(task.id)})
        message = receive(ws)
    finally:
        ws.__exit__(None, None, None)
    assert message["type"] == "error"
    [error] = message["payload"]
    assert error["message"] == f"scan task {str(task.id)!r} not found"
    assert error["extensions"] == {"code": "NOT_FOUND"}


def test_scan_progress_legacy_unknown_task_is_not_found(client: TestClient) -> None:
    ws = connect(client, LEGACY_WS, new_user_id())
    try:
        start(ws, LEGACY_WS, PROGRESS, {"taskId": "not-a-task"})
        message = receive(ws)
    finally:
        ws.__exit__(None, None, None)
    assert message["type"] == "error"
    assert message["id"] == "1"
    assert message["payload"]["message"] == "scan task 'not-a-task' not found"
    assert message["payload"]["extensions"] == {"code": "NOT_FOUND"}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_my_scans_sends_active_tasks_then_live_events(client: TestClient, protocol: str) -> None:
    user_id = new_user_id()
    running = insert_task(client, user_id, ScanStatus.RUNNING)
    insert_task(client, user_id, ScanStatus.COMPLETED)
    publish(client, running, percent=25.0)

    ws = connect(client, protocol, user_id)
    try:
        start(ws, protocol, MY_SCANS, {})
        current = next_data(ws, protocol)["myScans"]
        assert current == {
            "taskId": str(running.id),
            "status": "RUNNING",
            "percent": 25.0,
            "sequence": 1,
        }

        queued = insert_task(client, user_id, ScanStatus.QUEUED)
        publish(client, queued)
        publish(client, insert_task(client, new_user_id(), ScanStatus.QUEUED))
        publish(client, running, status=ScanStatus.COMPLETED, phase=ScanPhase.DONE, percent=100.0)

        first = next_data(ws, protocol)["myScans"]
        assert first == {
            "taskId": str(queued.id),
            "status": "QUEUED",
            "percent": 0.0,
            "sequence": 1,
        }
        second = next_data(ws, protocol)["myScans"]
        assert second["taskId"] == str(running.id)
        assert second["status"] == "COMPLETED"
        assert second["sequence"] == 2
    finally:
        ws.__exit__(None, None, None)
