"""Dramatiq actors. Importing this module declares them on the broker from ``jobs.broker``."""

from __future__ import annotations

import uuid

import dramatiq

import jobs.broker  # noqa: F401  (sets the global broker before the actors are declared)
from jobs.settings import get_settings
from jobs.worker_runtime import get_worker_runtime, worker_id

#: Maximum time one scan attempt may run, in milliseconds. The lease, not this limit, detects
#: stalled workers; this only bounds a scan that keeps making progress forever.
SCAN_TIME_LIMIT_MS = 24 * 3600 * 1000


@dramatiq.actor(
    queue_name=get_settings().queue_name,
    max_retries=0,
    time_limit=SCAN_TIME_LIMIT_MS,
)
async def scan_mailbox(task_id: str) -> None:
    """Run one attempt of a scan task. Retries are scheduled by the scan itself, which
    tells transient from permanent failures, so Dramatiq's own retries are off."""
    from jobs.scan import run_scan

    rt = await get_worker_runtime()
    # One lease owner per delivery, so two deliveries in one process cannot share a lease.
    await run_scan(rt, task_id, f"{worker_id()}:{uuid.uuid4().hex[:4]}")
