"""The progress hub across a Redis restart, against the real uvicorn API and the session's Redis.

The session's Redis keeps no data on disk, so the restart also loses the progress snapshots
and sequence counters. Subscribers must get the current state from the task document, and then
accept the new events, whose sequence starts again from 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest

from jobs.documents import ScanPhase, ScanStatus, ScanTask
from jobs.runtime import Runtime
from scripts.services import Redis
from scripts.services.apps import ApiProcess
from tests.test_api_harness import new_user_id
from tests.test_websocket_hygiene import (
    MY_SCANS,
    PROGRESS,
    GraphQLSocket,
    new_task,
    publish,
    runtime,
    scrape,
    wait_until,
)

pytestmark = pytest.mark.integration

__all__ = ["runtime"]

logger = logging.getLogger(__name__)


async def restart_redis(redis_server: Redis, down_s: float = 1.0) -> None:
    """Stop the session's Redis, keep it down for ``down_s``, and start it on the same port."""
    await asyncio.to_thread(redis_server.stop)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(redis_server.start)


async def receive_results(client: GraphQLSocket, count: int) -> list[tuple[str, dict[str, Any]]]:
    """Receive ``count`` results and return (operation id, payload field) pairs in order."""
    results = []
    for _ in range(count):
        message = await client.receive(timeout_s=20)
        assert message["type"] == "next", message
        [value] = message["payload"]["data"].values()
        results.append((message["id"], value))
    return results


def latest(results: list[tuple[str, dict[str, Any]]], operation_id: str, task: ScanTask) -> Any:
    """Return the last result of the operation about ``task``."""
    found = [value for key, value in results if key == operation_id]
    found = [value for value in found if value["taskId"] == str(task.id)]
    assert found, f"no {operation_id} result for task {task.id} in {results}"
    return found[-1]


async def test_subscribers_get_state_again_after_redis_restart(
    api_server: ApiProcess, redis_server: Redis, runtime: Runtime
) -> None:
    user_id = new_user_id()
    task = await new_task(user_id)
    ends_meanwhile = await new_task(user_id)
    first = await publish(runtime, task, percent=10.0, phase=ScanPhase.FETCHING)
    client = await GraphQLSocket.open(api_server.ws_url, user_id)
    try:
        await client.start("task", PROGRESS, {"taskId": str(task.id)})
        await client.start("mine", MY_SCANS, {})
        snapshots = await receive_results(client, 3)
        assert latest(snapshots, "task", task)["sequence"] == first.sequence
        assert latest(snapshots, "mine", task)["sequence"] == first.sequence
        assert latest(snapshots, "mine", ends_meanwhile)["status"] == "RUNNING"

        # While Redis is down the worker still saves its progress in the task document.
        await restart_redis(redis_server)
        restarted = time.monotonic()
        await ScanTask.find_one(ScanTask.id == task.id).update(
            {"$set": {"percent": 50.0, "processed": 50, "total": 100}}
        )
        await ScanTask.find_one(ScanTask.id == ends_meanwhile.id).update(
            {"$set": {"status": ScanStatus.COMPLETED.value, "percent": 100.0}}
        )

        again = await receive_results(client, 3)
        resynced_s = time.monotonic() - restarted
        logger.info("subscribers got the state again %.2f s after Redis started", resynced_s)
        assert latest(again, "task", task)["percent"] == 50.0
        assert latest(again, "mine", task)["percent"] == 50.0
        assert latest(again, "mine", ends_meanwhile)["status"] == "COMPLETED"
        assert resynced_s < 10

        # The restarted Redis lost the counter; the publisher goes on above its last event.
        fresh = await publish(runtime, task, percent=60.0, phase=ScanPhase.FETCHING)
        assert fresh.sequence == first.sequence + 1
        live = await receive_results(client, 2)
        assert latest(live, "task", task)["percent"] == 60.0
        assert latest(live, "mine", task)["percent"] == 60.0

        await publish(runtime, task, status=ScanStatus.COMPLETED, phase=ScanPhase.DONE)
        # The task subscription's "complete" may arrive before or after myScans' event.
        messages = [await client.receive(timeout_s=20) for _ in range(3)]
        assert {"id": "task", "type": "complete"} in messages
        done = [
            (message["id"], next(iter(message["payload"]["data"].values())))
            for message in messages
            if message["type"] == "next"
        ]
        assert latest(done, "task", task)["status"] == "COMPLETED"
        assert latest(done, "mine", task)["status"] == "COMPLETED"
    finally:
        await client.close()

    async with httpx.AsyncClient(base_url=api_server.http_url) as http:
        metrics = await scrape(http)
    assert metrics["mailscan_progress_reconnects_total"] >= 1


async def test_subscribe_while_redis_down_waits_for_it(
    api_server: ApiProcess, redis_server: Redis, runtime: Runtime
) -> None:
    user_id = new_user_id()
    task = await new_task(user_id)
    client = await GraphQLSocket.open(api_server.ws_url, user_id)
    try:
        await asyncio.to_thread(redis_server.stop)
        await client.start("task", PROGRESS, {"taskId": str(task.id)})
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis_server.start)
        restarted = time.monotonic()
        snapshot = (await client.data("task", timeout_s=15))["scanProgress"]
        logger.info("subscription started %.2f s after Redis started", time.monotonic() - restarted)
        assert snapshot["status"] == "RUNNING"
        assert snapshot["sequence"] == 0

        await publish(runtime, task, percent=30.0)
        assert (await client.data("task"))["scanProgress"]["percent"] == 30.0
    finally:
        await client.close()

    async def no_subscribers() -> bool:
        async with httpx.AsyncClient(base_url=api_server.http_url) as http:
            return (await scrape(http))["mailscan_progress_subscribers"] == 0

    await wait_until(no_subscribers, timeout_s=5)
