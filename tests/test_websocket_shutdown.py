"""SIGTERM to a real uvicorn API: websockets close with 1001, and reconnecting clients get the
current state from the restarted API."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from jobs.documents import ScanPhase
from jobs.runtime import Runtime
from scripts.services.apps import ApiProcess
from tests.test_api_harness import new_user_id
from tests.test_websocket_hygiene import (
    LEGACY_WS,
    MY_SCANS,
    PROGRESS,
    GraphQLSocket,
    new_task,
    publish,
    runtime,
)

pytestmark = pytest.mark.integration

__all__ = ["runtime"]

logger = logging.getLogger(__name__)


@pytest.fixture
def own_api(services: Any) -> Iterator[ApiProcess]:
    """An API process that the test may stop; stopped after the test if still running."""
    api = ApiProcess(services.state_dir / "api-shutdown.log")
    api.start()
    yield api
    api.stop()


async def close_code(client: GraphQLSocket, timeout_s: float = 10.0) -> int | None:
    """Wait until the server closes the socket and return the close code it sent."""
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(client.receive(), timeout_s)
    return client.connection.close_code


async def test_sigterm_closes_websockets_with_1001(own_api: ApiProcess, runtime: Runtime) -> None:
    user_id = new_user_id()
    task = await new_task(user_id)
    await publish(runtime, task, percent=20.0, phase=ScanPhase.FETCHING)

    transport = await GraphQLSocket.open(own_api.ws_url, user_id)
    await transport.start("task", PROGRESS, {"taskId": str(task.id)})
    assert (await transport.data("task"))["scanProgress"]["percent"] == 20.0
    legacy = await GraphQLSocket.open(own_api.ws_url, user_id, LEGACY_WS)
    await legacy.start("mine", MY_SCANS, {})
    assert (await legacy.data("mine"))["myScans"]["percent"] == 20.0
    idle = await GraphQLSocket.open(own_api.ws_url, user_id)

    assert own_api.process is not None
    stopping = time.monotonic()
    own_api.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(close_code(transport), close_code(legacy), close_code(idle))
    closed_s = time.monotonic() - stopping
    exit_code = await asyncio.to_thread(own_api.process.wait, 15)
    exited_s = time.monotonic() - stopping
    logger.info("websockets closed %.2f s and API exited %.2f s after SIGTERM", closed_s, exited_s)
    assert codes == [1001, 1001, 1001]
    assert transport.connection.close_reason == "server shutting down"
    assert exit_code == -signal.SIGTERM

    # Progress made while the API was down is in the snapshot that reconnecting clients read.
    latest = await publish(runtime, task, percent=35.0, phase=ScanPhase.FETCHING)
    await asyncio.to_thread(own_api.start)
    again = await GraphQLSocket.open(own_api.ws_url, user_id)
    try:
        await again.start("task", PROGRESS, {"taskId": str(task.id)})
        state = (await again.data("task"))["scanProgress"]
    finally:
        await again.close()
    assert state["percent"] == 35.0
    assert state["sequence"] == latest.sequence
