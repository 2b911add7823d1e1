"""The Dramatiq broker shared by the API (which sends) and the workers (which consume).

Importing this module configures the global Dramatiq broker from the process settings, so it
must be imported before any actor is declared.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware

from jobs.settings import Settings, get_settings

logger = logging.getLogger(__name__)


class PrefetchPerThread(Middleware):
    """Limit each worker process to one prefetched message per worker thread.

    Dramatiq prefetches twice the thread count by default, so a busy process can hold scans
    that an idle process could run at once.
    """

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        worker.queue_prefetch = worker.worker_threads
        logger.info("worker prefetch set to %d messages", worker.queue_prefetch)


def build_broker(settings: Settings) -> RedisBroker:
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_url, namespace=f"{settings.redis_prefix}-dramatiq"
    )
    broker.add_middleware(AsyncIO())
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PrefetchPerThread())
    return broker


broker = build_broker(get_settings())
dramatiq.set_broker(broker)
