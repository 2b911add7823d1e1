"""Prometheus metrics at ``/metrics``, computed when scraped.

Task metrics are derived from the task documents, so every API replica reports the same
values for the whole deployment and no worker process counts anything. Queue metrics come from
the broker's Redis keys. Progress and websocket metrics describe this API process only.

NOTE: ``mailscan_messages_scanned_total`` and ``mailscan_scan_retries_total`` sum over the stored
tasks, so they drop when old tasks are deleted, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from api.websocket import OpenWebsockets
from jobs.health import (
    DURATION_BUCKETS_S,
    QueueFacts,
    TaskFacts,
    queue_facts,
    sending_broker,
    task_facts,
)
from jobs.hub import ProgressHub
from jobs.runtime import Runtime

logger = logging.getLogger(__name__)

#: Time each source (database, Redis) has to respond during a scrape, in seconds.
SOURCE_TIMEOUT_S = 5.0

_T = TypeVar("_T")


async def metrics(request: Request) -> Response:
    state = request.app.state
    runtime: Runtime = state.runtime
    tasks = await _read("database", task_facts())
    queue = await _read(
        "redis",
        queue_facts(
            runtime.redis,
            runtime.keys,
            runtime.settings.queue_name,
            exclude_broker=sending_broker().broker_id,
        ),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(list(_families(tasks, queue, state.hub, state.websockets))))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _read(source: str, facts: Awaitable[_T]) -> _T | None:
    try:
        return await asyncio.wait_for(facts, SOURCE_TIMEOUT_S)
    except Exception:
        # The scrape still returns the other metrics, and mailscan_source_up reports which failed.
        logger.warning("metrics: reading from %s failed", source, exc_info=True)
        return None


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _families(
    tasks: TaskFacts | None,
    queue: QueueFacts | None,
    hub: ProgressHub,
    websockets: OpenWebsockets,
) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "mailscan_source_up", "1 when the scrape could read the source.", labels=["source"]
    )
    up.add_metric(["database"], float(tasks is not None))
    up.add_metric(["redis"], float(queue is not None))
    yield up
    if tasks is not None:
        yield from _task_families(tasks)
    if queue is not None:
        yield from _queue_families(queue)
    yield from _process_families(hub, websockets)


def _task_families(tasks: TaskFacts) -> Iterator[Metric]:
    by_status = GaugeMetricFamily(
        "mailscan_scan_tasks", "Stored scan tasks by status.", labels=["status"]
    )
    for status, count in tasks.by_status.items():
        by_status.add_metric([status.value], count)
    yield by_status

    durations = HistogramMetricFamily(
        "mailscan_scan_duration_seconds",
        "Time from the first start to the end of each finished scan task.",
        labels=["status"],
    )
    for status, seconds in sorted(tasks.durations_s.items()):
        buckets = [
            (str(float(bound)), sum(1 for value in seconds if value <= bound))
            for bound in DURATION_BUCKETS_S
        ]
        buckets.append(("+Inf", len(seconds)))
        durations.add_metric([status.value], buckets, sum_value=sum(seconds))
    yield durations

    yield CounterMetricFamily(
        "mailscan_messages_scanned",
        "Messages processed by the stored scan tasks.",
        value=tasks.messages_scanned,
    )
    yield CounterMetricFamily(
        "mailscan_scan_retries",
        "Attempts after the first, over the stored scan tasks.",
        value=tasks.retries,
    )


def _queue_families(queue: QueueFacts) -> Iterator[Metric]:
    labels = [queue.queue_name]
    queued = GaugeMetricFamily(
        "mailscan_queue_messages", "Messages waiting for a worker.", labels=["queue"]
    )
    queued.add_metric(labels, queue.queued)
    yield queued
    delayed = GaugeMetricFamily(
        "mailscan_queue_delayed_messages", "Messages sent with a delay.", labels=["queue"]
    )
    delayed.add_metric(labels, queue.delayed)
    yield delayed
    oldest = GaugeMetricFamily(
        "mailscan_queue_oldest_message_age_seconds",
        "Age of the message at the head of the queue; 0 when the queue is empty.",
        labels=["queue"],
    )
    oldest.add_metric(labels, queue.oldest_queued_age_s or 0.0)
    yield oldest
    yield GaugeMetricFamily(
        "mailscan_live_workers",
        "Worker brokers with a heartbeat in the last 60 seconds.",
        value=len(queue.workers),
    )


def _process_families(hub: ProgressHub, websockets: OpenWebsockets) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "mailscan_progress_subscribers",
        "Progress subscriptions open in this API process.",
        value=hub.subscriber_count,
    )
    yield GaugeMetricFamily(
        "mailscan_progress_channels",
        "Redis channels the progress hub of this API process listens to.",
        value=hub.channel_count,
    )
    yield CounterMetricFamily(
        "mailscan_progress_reconnects",
        "Times the progress hub of this API process reconnected to Redis.",
        value=hub.reconnects,
    )
    yield GaugeMetricFamily(
        "mailscan_websockets_open",
        "Websockets open on this API process.",
        value=len(websockets),
    )
    yield GaugeMetricFamily(
        "mailscan_asyncio_tasks",
        "Asyncio tasks alive in this API process, the scrape's own included.",
        value=len(asyncio.all_tasks()),
    )
