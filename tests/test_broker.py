"""The Dramatiq broker the API and the workers share."""

from __future__ import annotations

from dataclasses import replace

from jobs.broker import IDLE_FETCH_INTERVAL_MS, build_broker
from jobs.settings import get_settings


def test_idle_consumer_back_off_is_capped() -> None:
    # The URL is never connected to: building a consumer does no I/O.
    broker = build_broker(replace(get_settings(), redis_url="redis://127.0.0.1:1/0"))

    consumer = broker.consume("scans", prefetch=4, timeout=1000)

    assert consumer.timeout == IDLE_FETCH_INTERVAL_MS  # type: ignore[attr-defined]
    assert consumer.prefetch == 4  # type: ignore[attr-defined]


def test_shorter_worker_timeout_is_kept() -> None:
    broker = build_broker(replace(get_settings(), redis_url="redis://127.0.0.1:1/0"))

    consumer = broker.consume("scans", prefetch=1, timeout=20)

    assert consumer.timeout == 20  # type: ignore[attr-defined]
