"""Limits of the API itself: query depth, page size, operations per websocket and the
connection_init timeout, each with the error or close code of its protocol."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from tests.test_api_harness import Api, drop_database, isolated_settings, new_user_id, open_api

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
MY_SCANS = "subscription { myScans { taskId } }"


@pytest.fixture
async def api(services: Any) -> AsyncIterator[Api]:
    async with open_api(max_query_depth=3, max_page_size=10) as api:
        yield api


async def test_query_deeper_than_limit_is_rejected(api: Api) -> None:
    body = await api.post(new_user_id(), "{ taskHistory { edges { node { account { id } } } } }")
    assert body.get("data") is None
    [error] = body["errors"]
    assert "exceeds maximum operation depth of 3" in error["message"]


async def test_query_at_depth_limit_runs(api: Api) -> None:
    body = await api.post(new_user_id(), "{ taskHistory(first: 10) { edges { cursor } } }")
    assert body == {"data": {"taskHistory": {"edges": []}}}


async def test_fragment_depth_counts(api: Api) -> None:
    query = """{ taskHistory { ...Page } }
      fragment Page on ScanTaskConnection { edges { node { account { id } } } }"""
    body = await api.post(new_user_id(), query)
    [error] = body["errors"]
    assert "exceeds maximum operation depth of 3" in error["message"]


@pytest.mark.parametrize("first", [0, -1, 11, 10_000])
async def test_page_size_outside_limit_is_rejected(api: Api, first: int) -> None:
    for query in (
        "query Q($first: Int) { taskHistory(first: $first) { edges { cursor } } }",
        """query Q($first: Int) {
          scanFindings(taskId: "x", first: $first) { edges { cursor } } }""",
    ):
        body = await api.post(new_user_id(), query, {"first": first})
        [error] = body["errors"]
        assert error["extensions"] == {"code": "INVALID_INPUT", "field": "first"}
        assert error["message"] == f"first must be from 1 to 10, got {first}"


async def test_page_size_at_limit_runs(api: Api) -> None:
    body = await api.post(new_user_id(), "{ taskHistory(first: 10) { edges { cursor } } }")
    assert body == {"data": {"taskHistory": {"edges": []}}}


async def test_too_many_aliases_are_rejected(services: Any) -> None:
    async with open_api(max_query_aliases=3) as api:
        aliases = " ".join(f"a{index}: taskHistory {{ edges {{ cursor }} }}" for index in range(4))
        body = await api.post(new_user_id(), f"{{ {aliases} }}")
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["message"] == "4 aliases found. Allowed: 3"


async def test_too_many_tokens_are_rejected(services: Any) -> None:
    async with open_api(max_query_tokens=50) as api:
        fields = " ".join("__typename" for _ in range(60))
        body = await api.post(new_user_id(), f"{{ {fields} }}")
    assert body.get("data") is None
    [error] = body["errors"]
    assert "50" in error["message"]


async def test_introspection_fits_default_limits(services: Any) -> None:
    from graphql import get_introspection_query

    async with open_api() as api:
        body = await api.post(new_user_id(), get_introspection_query(descriptions=True))
    assert "errors" not in body, body.get("errors")
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


# --- websockets ----------------------------------------------------------------------------


@pytest.fixture
def ws_client(services: Any) -> Iterator[TestClient]:
    settings = isolated_settings(max_ws_operations=2, connection_init_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        yield client
        assert client.portal is not None
        client.portal.call(drop_database, client.app.state.runtime)  # type: ignore[attr-defined]


def receive(ws: WebSocketTestSession) -> dict[str, Any]:
    """Return the next message that is not a legacy keep-alive (``ka``)."""
    while True:
        message: dict[str, Any] = ws.receive_json()
        if message.get("type") != "ka":
            return message


def init_payload() -> dict[str, Any]:
    return {"type": "connection_init", "payload": {"authorization": f"Bearer dev:{new_user_id()}"}}


def test_transport_ws_operation_limit(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        ws.send_json(init_payload())
        assert receive(ws) == {"type": "connection_ack"}
        for operation_id in ("1", "2", "3"):
            payload = {"query": MY_SCANS}
            ws.send_json({"id": operation_id, "type": "subscribe", "payload": payload})
        rejected = receive(ws)
        assert rejected == {
            "id": "3",
            "type": "error",
            "payload": [{"message": "Subscription limit reached"}],
        }

        # Completing one operation frees its slot.
        ws.send_json({"id": "1", "type": "complete"})
        ws.send_json({"id": "4", "type": "subscribe", "payload": {"query": MY_SCANS}})
        ws.send_json({"type": "ping"})
        assert receive(ws) == {"type": "pong"}


def test_legacy_ws_operation_limit(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=[LEGACY_WS]) as ws:
        ws.send_json(init_payload())
        assert receive(ws) == {"type": "connection_ack"}
        for operation_id in ("1", "2", "3"):
            ws.send_json({"id": operation_id, "type": "start", "payload": {"query": MY_SCANS}})
        rejected = receive(ws)
        assert rejected == {
            "id": "3",
            "type": "error",
            "payload": {"message": "Subscription limit reached"},
        }


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_ws_without_init_closes_4408(ws_client: TestClient, protocol: str) -> None:
    started = time.monotonic()
    with (
        ws_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        receive(ws)
    assert closed.value.code == 4408
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_ws_with_init_stays_open(ws_client: TestClient, protocol: str) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        ws.send_json(init_payload())
        assert receive(ws) == {"type": "connection_ack"}
        time.sleep(1.0)
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        query = 'subscription { scanProgress(taskId: "missing") { taskId } }'
        ws.send_json({"id": "1", "type": start, "payload": {"query": query}})
        message = receive(ws)
    # The NOT_FOUND error shows that the connection is still open after the timeout.
    assert message["type"] == "error"
    assert message["id"] == "1"
    assert "scan task 'missing' not found" in json.dumps(message["payload"])


def test_transport_ws_subscribe_before_ack_closes_4401(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": MY_SCANS}})
        with pytest.raises(WebSocketDisconnect) as closed:
            receive(ws)
    assert closed.value.code == 4401


def test_transport_ws_second_init_closes_4429(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        ws.send_json(init_payload())
        assert receive(ws) == {"type": "connection_ack"}
        ws.send_json(init_payload())
        with pytest.raises(WebSocketDisconnect) as closed:
            receive(ws)
    assert closed.value.code == 4429
