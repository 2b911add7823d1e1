"""Authentication over HTTP and websockets, GraphiQL, and the health endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.auth import AuthenticationError, DevAuthenticator
from tests.test_api_harness import Api, drop_database, isolated_settings, new_user_id, open_api

ACCOUNTS = "{ accounts { id } }"


@pytest.fixture
async def api(services: Any) -> AsyncIterator[Api]:
    async with open_api() as api:
        yield api


async def post_with(api: Api, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/graphql", json={"query": ACCOUNTS}, headers=headers)
    return response.status_code, response.json()


def unauthenticated_message(status: int, body: dict[str, Any]) -> str:
    assert status == 401
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    message: str = error["message"]
    return message


async def test_http_without_header_is_401(api: Api) -> None:
    message = unauthenticated_message(*await post_with(api, {}))
    assert message == "missing Authorization header; send 'Authorization: Bearer <token>'"


async def test_http_basic_scheme_is_401(api: Api) -> None:
    message = unauthenticated_message(*await post_with(api, {"Authorization": "Basic dXNlcg=="}))
    assert message == (
        "unsupported authorization scheme 'Basic'; send 'Authorization: Bearer <token>'"
    )


async def test_http_invalid_dev_user_id_is_401(api: Api) -> None:
    status, body = await post_with(api, {"Authorization": "Bearer dev:bad user!"})
    message = unauthenticated_message(status, body)
    assert message.startswith("invalid development user id 'bad user!'")


async def test_http_dev_token_disabled_is_401(services: Any) -> None:
    async with open_api(dev_auth=False) as api:
        status, body = await post_with(api, {"Authorization": "Bearer dev:alice"})
    message = unauthenticated_message(status, body)
    assert message == "development tokens are disabled on this server (MAILSCAN_DEV_AUTH is off)"


async def test_http_dev_token_enabled_is_accepted(api: Api) -> None:
    user_id = new_user_id()
    status, body = await post_with(api, {"Authorization": f"Bearer dev:{user_id}"})
    assert status == 200
    assert body == {"data": {"accounts": []}}


async def test_graphiql_page_needs_no_auth(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "GraphiQL" in response.text


async def test_query_by_get_needs_auth(api: Api) -> None:
    response = await api.client.get("/graphql", params={"query": ACCOUNTS})
    assert response.status_code == 401


async def test_healthz_is_ok(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready(api: Api) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_names_failed_redis(services: Any) -> None:
    # Nothing listens on port 1 of the loopback interface.
    async with open_api(redis_url="redis://127.0.0.1:1/0") as api:
        response = await api.client.get("/readyz")
    assert response.status_code == 503
    # The broker uses the same Redis, so it fails with it.
    assert response.json() == {"status": "unavailable", "failed": ["broker", "redis"]}


async def test_depth_limit_rejects_deep_query(services: Any) -> None:
    async with open_api(max_query_depth=2) as api:
        body = await api.post(new_user_id(), "{ taskHistory { edges { node { id } } } }")
    [error] = body["errors"]
    assert "exceeds maximum operation depth of 2" in error["message"]


async def test_dev_authenticator_accepts_64_characters() -> None:
    principal = await DevAuthenticator(enabled=True).authenticate("Bearer dev:" + "a" * 64)
    assert principal.user_id == "a" * 64
    with pytest.raises(AuthenticationError, match="invalid development user id"):
        await DevAuthenticator(enabled=True).authenticate("Bearer dev:" + "a" * 65)


async def test_dev_authenticator_rejects_other_tokens() -> None:
    with pytest.raises(AuthenticationError, match=r"^unsupported bearer token"):
        await DevAuthenticator(enabled=True).authenticate("Bearer eyJhbGciOi")
    with pytest.raises(AuthenticationError, match=r"^empty bearer token"):
        await DevAuthenticator(enabled=True).authenticate("Bearer ")


@pytest.fixture
def ws_client(services: Any) -> Iterator[TestClient]:
    with TestClient(create_app(isolated_settings())) as client:
        yield client
        client.portal.call(drop_database, client.app.state.runtime)  # type: ignore[attr-defined]


def test_transport_ws_without_auth_closes_4401(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {}})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401


def test_transport_ws_with_bad_token_closes_4401(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"authorization": "Bearer x"}})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401


def test_transport_ws_with_dev_token_is_acked(ws_client: TestClient) -> None:
    token = f"Bearer dev:{new_user_id()}"
    with ws_client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": token}})
        assert ws.receive_json() == {"type": "connection_ack"}


def test_legacy_ws_without_auth_gets_connection_error(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {}})
        message = ws.receive_json()
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    assert message == {
        "type": "connection_error",
        "payload": {
            "message": "missing Authorization header; send 'Authorization: Bearer <token>'",
            "code": "UNAUTHENTICATED",
        },
    }


def test_legacy_ws_with_dev_token_is_acked(ws_client: TestClient) -> None:
    token = f"Bearer dev:{new_user_id()}"
    with ws_client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"authorization": token}})
        assert ws.receive_json() == {"type": "connection_ack"}
