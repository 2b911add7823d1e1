"""``/metrics`` of the real uvicorn API: task metrics derived from the stored tasks.

The session's database is shared with other tests, so each check compares two scrapes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from jobs.documents import ScanStatus, ScanTask, utcnow
from jobs.runtime import Runtime
from scripts.services.apps import ApiProcess
from tests.test_api_harness import insert_account, new_user_id
from tests.test_websocket_hygiene import runtime, scrape

pytestmark = pytest.mark.integration

__all__ = ["runtime"]


async def insert_finished(
    user_id: str, status: ScanStatus, duration_s: float, processed: int, attempts: int
) -> ScanTask:
    account = await insert_account(user_id)
    finished = utcnow()
    task = ScanTask(
        user_id=user_id,
        account_id=str(account.id),
        months=1,
        since=finished - timedelta(days=30),
        status=status,
        processed=processed,
        total=processed,
        attempts=attempts,
        started_at=finished - timedelta(seconds=duration_s),
        finished_at=finished,
    )
    await task.insert()
    return task


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def test_metrics_count_finished_tasks(api_server: ApiProcess, runtime: Runtime) -> None:
    user_id = new_user_id()
    async with httpx.AsyncClient(base_url=api_server.http_url) as http:
        before = await scrape(http)
        await insert_finished(user_id, ScanStatus.COMPLETED, 3.0, processed=120, attempts=1)
        await insert_finished(user_id, ScanStatus.COMPLETED, 40.0, processed=30, attempts=3)
        await insert_finished(user_id, ScanStatus.FAILED, 10.0, processed=5, attempts=5)
        after = await scrape(http)

    assert after['mailscan_source_up{source="database"}'] == 1
    assert after['mailscan_source_up{source="redis"}'] == 1
    assert delta(before, after, 'mailscan_scan_tasks{status="COMPLETED"}') == 2
    assert delta(before, after, 'mailscan_scan_tasks{status="FAILED"}') == 1
    assert delta(before, after, 'mailscan_scan_tasks{status="RUNNING"}') == 0
    assert delta(before, after, "mailscan_messages_scanned_total") == 155
    assert delta(before, after, "mailscan_scan_retries_total") == 6

    completed = 'mailscan_scan_duration_seconds_bucket{le="%s",status="COMPLETED"}'
    assert delta(before, after, completed % "1.0") == 0
    assert delta(before, after, completed % "5.0") == 1
    assert delta(before, after, completed % "30.0") == 1
    assert delta(before, after, completed % "60.0") == 2
    assert delta(before, after, completed % "+Inf") == 2
    assert delta(before, after, 'mailscan_scan_duration_seconds_count{status="COMPLETED"}') == 2
    assert delta(
        before, after, 'mailscan_scan_duration_seconds_sum{status="COMPLETED"}'
    ) == pytest.approx(43.0)
    assert delta(before, after, 'mailscan_scan_duration_seconds_count{status="FAILED"}') == 1


async def test_metrics_text_format(api_server: ApiProcess, services: Any) -> None:
    async with httpx.AsyncClient(base_url=api_server.http_url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE mailscan_scan_duration_seconds histogram" in response.text
    assert "# TYPE mailscan_messages_scanned_total counter" in response.text
    assert "# TYPE mailscan_progress_subscribers gauge" in response.text
    assert 'mailscan_queue_messages{queue="scans"}' in response.text
    assert "mailscan_live_workers " in response.text
    assert "mailscan_asyncio_tasks " in response.text
