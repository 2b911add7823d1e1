"""``/healthz``, ``/readyz`` with Redis stopped, and the admin-only ``systemHealth`` query."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest
from dramatiq import Message

from jobs.broker import build_broker
from jobs.documents import ScanStatus
from jobs.runtime import Runtime
from jobs.settings import load_settings
from scripts.services import Redis
from scripts.services.apps import ApiProcess
from tests.test_api_harness import insert_account, insert_tasks, new_user_id, open_api
from tests.test_websocket_hygiene import runtime

pytestmark = pytest.mark.integration

__all__ = ["runtime"]

logger = logging.getLogger(__name__)

ADMIN = "health-admin"

SYSTEM_HEALTH = """
query {
  systemHealth {
    queueName queuedMessages delayedMessages oldestQueuedSeconds runningTasks liveWorkers
    workers { id lastHeartbeatSecondsAgo }
    progressSubscribers progressChannels
  }
}
"""


async def test_readyz_names_stopped_redis(api_server: ApiProcess, redis_server: Redis) -> None:
    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}

        await asyncio.to_thread(redis_server.stop)
        try:
            started = time.monotonic()
            down = await http.get("/readyz")
            answered_s = time.monotonic() - started
            alive = await http.get("/healthz")
        finally:
            await asyncio.to_thread(redis_server.start)
        logger.info("/readyz answered %.2f s after Redis stopped", answered_s)
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "failed": ["broker", "redis"]}
        assert answered_s < 5
        assert alive.status_code == 200

        started = time.monotonic()
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() - started < 10, "/readyz not ready 10 s after Redis started"
            await asyncio.sleep(0.1)
        logger.info("/readyz ready %.2f s after Redis started", time.monotonic() - started)


async def test_system_health_forbidden_for_users(services: Any) -> None:
    async with open_api(admin_users=(ADMIN,)) as api:
        body = await api.post(new_user_id(), SYSTEM_HEALTH)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"] == "admin access required"
    assert error["extensions"] == {"code": "FORBIDDEN"}


async def test_system_health_reports_queue_and_workers(services: Any, runtime: Runtime) -> None:
    # A queue of its own: the session's workers consume the default queue and would take
    # the probe message before systemHealth counts it.
    settings = replace(load_settings(), queue_name=f"health-probe-{uuid.uuid4().hex[:8]}")
    broker = build_broker(settings)
    queue = settings.queue_name
    broker.declare_queue(queue)
    sent_at_ms = int(time.time() * 1000) - 30_000
    waiting = Message(
        queue_name=queue, actor_name="health_probe", args=(), kwargs={}, options={},
        message_timestamp=sent_at_ms,
    )  # fmt: skip
    delayed = Message(queue_name=queue, actor_name="health_probe", args=(), kwargs={}, options={})
    keys = runtime.keys
    await runtime.redis.delete(keys.broker_queue(queue), keys.broker_queue(f"{queue}.DQ"))
    broker.enqueue(waiting)
    broker.enqueue(delayed, delay=60_000)
    try:
        async with open_api(admin_users=(ADMIN,), queue_name=queue) as api:
            user_id = new_user_id()
            account = await insert_account(user_id)
            await insert_tasks(user_id, account, [ScanStatus.RUNNING, ScanStatus.QUEUED])
            health = (await api.data(ADMIN, SYSTEM_HEALTH))["systemHealth"]
    finally:
        await runtime.redis.delete(
            keys.broker_queue(queue),
            f"{keys.broker_queue(queue)}.msgs",
            keys.broker_queue(f"{queue}.DQ"),
            f"{keys.broker_queue(f'{queue}.DQ')}.msgs",
        )
        broker.close()

    assert health["queueName"] == queue
    assert health["queuedMessages"] == 1
    assert health["delayedMessages"] == 1
    assert 29 <= health["oldestQueuedSeconds"] < 60
    assert health["runningTasks"] == 1
    # The test's broker wrote a heartbeat with each message it sent.
    assert broker.broker_id in [worker["id"] for worker in health["workers"]]
    assert health["liveWorkers"] == len(health["workers"])
    assert health["progressSubscribers"] == 0
    assert health["progressChannels"] == 0
