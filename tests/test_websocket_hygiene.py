"""Websocket hygiene against the real uvicorn API: vanished clients, keepalive, operation errors.

A vanished client is a socket reset without a close frame (SO_LINGER 0, then abort). After fifty
of them the API must hold no more hub subscribers, hub channels, open websockets, asyncio tasks
or Redis channel subscriptions than before.

The helpers here (:class:`GraphQLSocket`, :func:`scrape`, the ``runtime`` fixture) are shared
with the other websocket, hub and metrics tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from jobs.documents import ScanPhase, ScanStatus, ScanTask, utcnow
from jobs.progress import ProgressEvent, event_from_task
from jobs.runtime import Runtime
from jobs.settings import load_settings
from scripts.services.apps import ApiProcess
from tests.test_api_harness import insert_account, insert_tasks, new_user_id

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

PROGRESS = """
subscription Progress($taskId: ID!) {
  scanProgress(taskId: $taskId) { taskId status percent sequence }
}
"""
MY_SCANS = "subscription { myScans { taskId status percent sequence } }"


class GraphQLSocket:
    """A GraphQL websocket client that replies to pings and counts the keepalives it receives."""

    def __init__(self, connection: websockets.ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol
        self.keepalives = 0

    @classmethod
    async def open(cls, url: str, user_id: str, protocol: str = TRANSPORT_WS) -> GraphQLSocket:
        connection = await websockets.connect(url, subprotocols=[protocol])  # type: ignore[list-item]
        client = cls(connection, protocol)
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer dev:{user_id}"}}
        await client.send(init)
        ack = await client.receive()
        assert ack == {"type": "connection_ack"}, ack
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def start(self, operation_id: str, query: str, variables: dict[str, Any]) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables}
        await self.send({"id": operation_id, "type": kind, "payload": payload})

    async def receive(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Return the next message other than a keepalive (``ping``, ``ka``, ``pong``).

        Raises TimeoutError when none arrives within ``timeout_s``, keepalives or not.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_s = deadline - time.monotonic()
            message: dict[str, Any] = json.loads(
                await asyncio.wait_for(self.connection.recv(), max(remaining_s, 0.0))
            )
            if message["type"] == "ping":
                self.keepalives += 1
                await self.send({"type": "pong"})
                continue
            if message["type"] == "ka":
                self.keepalives += 1
                continue
            if message["type"] == "pong":
                continue
            return message

    async def data(self, operation_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Return the ``data`` of the next message, which must be a result for the operation."""
        message = await self.receive(timeout_s)
        assert message["type"] in {"next", "data"}, message
        assert message["id"] == operation_id, message
        assert "errors" not in message["payload"], message
        data: dict[str, Any] = message["payload"]["data"]
        return data

    def vanish(self) -> None:
        """Reset the TCP connection without a close frame, like a client that lost power."""
        raw = self.connection.transport.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.transport.abort()

    async def close(self) -> None:
        await self.connection.close()


def metric_values(text: str) -> dict[str, float]:
    """Parse a Prometheus text exposition into ``name{label="value",...}`` -> value."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return metric_values(response.text)


async def wait_until(
    condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.1
) -> float:
    """Await ``condition()`` until it returns true; return the seconds it took."""
    started = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


@pytest.fixture(scope="module")
async def runtime(services: Any) -> AsyncIterator[Runtime]:
    """Connections of the test process to the session's Redis and database."""
    runtime = await Runtime.open(load_settings())
    yield runtime
    await runtime.close()


async def new_task(user_id: str, status: ScanStatus = ScanStatus.RUNNING) -> ScanTask:
    account = await insert_account(user_id)
    [task] = await insert_tasks(user_id, account, [status])
    return task


async def publish(runtime: Runtime, task: ScanTask, **changes: Any) -> ProgressEvent:
    """Publish an event of ``task`` with ``changes``, as the scan actor would."""
    event = event_from_task(task).model_copy(update={**changes, "updated_at": utcnow()})
    published = await runtime.publisher.publish(event, force=True)
    assert published is not None
    return published


async def redis_channels(runtime: Runtime) -> set[str]:
    names = await runtime.redis.pubsub_channels(f"{runtime.keys.prefix}:*")
    return {name.decode() if isinstance(name, bytes) else name for name in names}


async def test_fifty_vanished_clients_leave_nothing(
    api_server: ApiProcess, runtime: Runtime
) -> None:
    tasks = [await new_task(new_user_id()) for _ in range(50)]
    channels = [runtime.keys.progress_channel(str(task.id)) for task in tasks]
    channels += [runtime.keys.user_channel(task.user_id) for task in tasks]
    async with httpx.AsyncClient(base_url=api_server.http_url) as http:
        before = await scrape(http)
        channels_before = await redis_channels(runtime)

        for task in tasks:
            client = await GraphQLSocket.open(api_server.ws_url, task.user_id)
            await client.start("task", PROGRESS, {"taskId": str(task.id)})
            assert (await client.data("task"))["scanProgress"]["status"] == "RUNNING"
            await client.start("mine", MY_SCANS, {})
            assert (await client.data("mine"))["myScans"]["taskId"] == str(task.id)
            client.vanish()

        # A client that stays shows that live subscriptions are counted at all.
        stays = await GraphQLSocket.open(api_server.ws_url, tasks[0].user_id)
        await stays.start("task", PROGRESS, {"taskId": str(tasks[0].id)})
        assert (await stays.data("task"))["scanProgress"]["status"] == "RUNNING"
        during = await scrape(http)
        assert (
            during["mailscan_progress_subscribers"] >= before["mailscan_progress_subscribers"] + 1
        )
        assert dict(await runtime.redis.pubsub_numsub(channels[0]))[channels[0].encode()] == 1
        await stays.close()

        async def settled() -> bool:
            after = await scrape(http)
            return (
                after["mailscan_progress_subscribers"] == before["mailscan_progress_subscribers"]
                and after["mailscan_progress_channels"] == before["mailscan_progress_channels"]
                and after["mailscan_websockets_open"] == before["mailscan_websockets_open"]
                and after["mailscan_asyncio_tasks"] <= before["mailscan_asyncio_tasks"]
            )

        # On a timeout the asserts below name what stayed behind.
        with contextlib.suppress(AssertionError):
            settled_s = await wait_until(settled, timeout_s=10)
            logger.info("API released 50 vanished clients within %.2f s", settled_s)
        after = await scrape(http)
        logger.info(
            "subscribers %d -> %d -> %d, asyncio tasks %d -> %d -> %d",
            before["mailscan_progress_subscribers"],
            during["mailscan_progress_subscribers"],
            after["mailscan_progress_subscribers"],
            before["mailscan_asyncio_tasks"],
            during["mailscan_asyncio_tasks"],
            after["mailscan_asyncio_tasks"],
        )

    assert after["mailscan_progress_subscribers"] == before["mailscan_progress_subscribers"]
    assert after["mailscan_progress_channels"] == before["mailscan_progress_channels"]
    assert after["mailscan_websockets_open"] == before["mailscan_websockets_open"]
    assert after["mailscan_asyncio_tasks"] <= before["mailscan_asyncio_tasks"]

    # The hub's reader sends UNSUBSCRIBE within its read interval after the last leave.
    async def unsubscribed() -> bool:
        numsub = dict(await runtime.redis.pubsub_numsub(*channels))
        return set(numsub.values()) == {0}

    await wait_until(unsubscribed, timeout_s=2)
    assert await redis_channels(runtime) == channels_before


async def test_operation_errors_keep_socket_and_others(
    api_server: ApiProcess, runtime: Runtime
) -> None:
    user_id = new_user_id()
    task = await new_task(user_id)
    client = await GraphQLSocket.open(api_server.ws_url, user_id)
    try:
        await client.start("live", PROGRESS, {"taskId": str(task.id)})
        assert (await client.data("live"))["scanProgress"]["status"] == "RUNNING"

        await client.start("syntax", "subscription {", {})
        syntax = await client.receive()
        assert syntax["type"] == "error"
        assert syntax["id"] == "syntax"
        assert "Syntax Error" in syntax["payload"][0]["message"]

        await client.start("invalid", "subscription { noSuchField }", {})
        invalid = await client.receive()
        assert invalid["type"] == "error"
        assert invalid["id"] == "invalid"

        await client.start("missing", PROGRESS, {"taskId": "0123456789abcdef01234567"})
        missing = await client.receive()
        assert missing["type"] == "error"
        assert missing["payload"][0]["extensions"] == {"code": "NOT_FOUND"}

        # A complete for an id that ended with an error, and one for an id never used.
        await client.send({"id": "invalid", "type": "complete"})
        await client.send({"id": "never-started", "type": "complete"})

        await client.start("query", "query { accounts { id } }", {})
        accounts = await client.data("query")
        assert len(accounts["accounts"]) == 1
        assert await client.receive() == {"id": "query", "type": "complete"}

        await publish(runtime, task, percent=55.0, phase=ScanPhase.FETCHING)
        live = (await client.data("live"))["scanProgress"]
        assert live["percent"] == 55.0
        await publish(runtime, task, status=ScanStatus.COMPLETED, phase=ScanPhase.DONE)
        assert (await client.data("live"))["scanProgress"]["status"] == "COMPLETED"
        assert await client.receive() == {"id": "live", "type": "complete"}
        assert client.connection.close_code is None
    finally:
        await client.close()


async def test_legacy_error_keeps_other_subscription(
    api_server: ApiProcess, runtime: Runtime
) -> None:
    user_id = new_user_id()
    task = await new_task(user_id)
    client = await GraphQLSocket.open(api_server.ws_url, user_id, LEGACY_WS)
    try:
        await client.start("live", PROGRESS, {"taskId": str(task.id)})
        assert (await client.data("live"))["scanProgress"]["status"] == "RUNNING"
        await client.start("missing", PROGRESS, {"taskId": "0123456789abcdef01234567"})
        missing = await client.receive()
        assert missing["type"] == "error"
        assert missing["payload"]["extensions"] == {"code": "NOT_FOUND"}
        await client.send({"id": "never-started", "type": "stop"})

        await publish(runtime, task, percent=70.0)
        assert (await client.data("live"))["scanProgress"]["percent"] == 70.0
    finally:
        await client.close()


@pytest.fixture(scope="module")
def fast_keepalive_api(services: Any) -> AsyncIterator[ApiProcess]:
    """An API process of this module's own whose keepalive interval is 0.3 s."""
    api = ApiProcess(
        services.state_dir / "api-keepalive.log", env={"MAILSCAN_WS_KEEPALIVE_S": "0.3"}
    )
    api.start()
    yield api
    api.stop()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_server_sends_keepalives(fast_keepalive_api: ApiProcess, protocol: str) -> None:
    client = await GraphQLSocket.open(fast_keepalive_api.ws_url, new_user_id(), protocol)
    try:
        # receive() skips keepalives, so it times out while only keepalives arrive.
        with pytest.raises(TimeoutError):
            await client.receive(timeout_s=1.5)
    finally:
        await client.close()
    # 1.5 s at one keepalive per 0.3 s.
    assert client.keepalives >= 3
