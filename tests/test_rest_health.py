"""``GET /api/admin/health`` against a real API started with an admin user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scripts.services.apps import ApiProcess

pytestmark = pytest.mark.integration

ADMIN = "rest-admin"

SYSTEM_HEALTH = """
query {
  systemHealth {
    queueName queuedMessages delayedMessages oldestQueuedSeconds runningTasks liveWorkers
    workers { id lastHeartbeatSecondsAgo }
    progressSubscribers progressChannels
  }
}
"""


@pytest.fixture(scope="module")
def admin_api(services: Any) -> Iterator[ApiProcess]:
    api = ApiProcess(services.state_dir / "api-admin.log", env={"MAILSCAN_ADMIN_USERS": ADMIN})
    api.start()
    yield api
    api.stop()


def bearer(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer dev:{user_id}"}


async def test_health_matches_system_health(admin_api: ApiProcess, worker: Any) -> None:
    async with httpx.AsyncClient(base_url=admin_api.http_url, timeout=30) as client:
        rest = await client.get("/api/admin/health", headers=bearer(ADMIN))
        graphql = await client.post(
            "/graphql", json={"query": SYSTEM_HEALTH}, headers=bearer(ADMIN)
        )

    assert rest.status_code == 200, rest.text
    assert graphql.status_code == 200, graphql.text
    facts = rest.json()
    expected = graphql.json()["data"]["systemHealth"]
    assert facts["queue_name"] == expected["queueName"]
    assert facts["queued_messages"] == expected["queuedMessages"]
    assert facts["delayed_messages"] == expected["delayedMessages"]
    assert facts["running_tasks"] == expected["runningTasks"]
    assert facts["live_workers"] == expected["liveWorkers"]
    assert facts["live_workers"] >= 1
    assert sorted(row["id"] for row in facts["workers"]) == sorted(
        row["id"] for row in expected["workers"]
    )
    assert facts["progress_subscribers"] == expected["progressSubscribers"]
    assert facts["progress_channels"] == expected["progressChannels"]
    assert set(facts) == {
        "queue_name",
        "queued_messages",
        "delayed_messages",
        "oldest_queued_seconds",
        "running_tasks",
        "live_workers",
        "workers",
        "progress_subscribers",
        "progress_channels",
    }


async def test_health_forbidden_for_other_users(admin_api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=admin_api.http_url, timeout=30) as client:
        response = await client.get("/api/admin/health", headers=bearer("rest-not-admin"))

    assert response.status_code == 403
    assert response.json() == {"error": {"code": "FORBIDDEN", "message": "admin access required"}}


async def test_health_requires_sign_in(admin_api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=admin_api.http_url, timeout=30) as client:
        response = await client.get("/api/admin/health")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
