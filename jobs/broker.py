"""The Dramatiq broker shared by the API (which sends) and the workers (which consume).

Importing this module configures the global Dramatiq broker from the process settings, so it
must be imported before any actor is declared. :func:`configure_broker` moves the declared
actors to a broker built from other settings (an app built with explicit settings, tests).
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import Broker, Consumer
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware

from jobs.keys import RedisKeys
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


#: Maximum pause of an idle consumer between two fetches from Redis, in milliseconds.
IDLE_FETCH_INTERVAL_MS = 100


class ScanBroker(RedisBroker):
    """A Redis broker that remembers the URL it was built from."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(url=url, namespace=namespace)  # type: ignore[no-untyped-call]
        self.url = url

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """Return Dramatiq's Redis consumer with its idle back-off capped.

        An idle Dramatiq 2.2 consumer doubles its pause between fetches up to the worker
        timeout (1 s by default), so an idle worker noticed a new scan up to a second late.
        Capped, each worker process sends about ten fetches a second per queue while idle.
        """
        return super().consume(queue_name, prefetch, min(timeout, IDLE_FETCH_INTERVAL_MS))


def build_broker(settings: Settings) -> ScanBroker:
    broker = ScanBroker(settings.redis_url, RedisKeys(settings.redis_prefix).broker_namespace)
    broker.add_middleware(AsyncIO())
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PrefetchPerThread())
    return broker


def current_broker() -> RedisBroker:
    """Return the broker this process sends to and consumes from."""
    current = dramatiq.get_broker()
    assert isinstance(current, RedisBroker), f"unexpected Dramatiq broker {current!r}"
    return current


def configure_broker(settings: Settings) -> RedisBroker:
    """Use a broker on ``settings.redis_url``, keeping every actor declared so far.

    Does nothing when the current broker already uses that Redis and namespace.
    """
    current = current_broker()
    namespace = RedisKeys(settings.redis_prefix).broker_namespace
    if (
        getattr(current, "mailscan_url", None) == settings.redis_url
        and current.namespace == namespace
    ):
        return current

    replacement = build_broker(settings)
    for actor in list(current.actors.values()):
        actor.broker = replacement
        replacement.declare_actor(actor)
    dramatiq.set_broker(replacement)
    logger.info("broker moved to namespace %s", namespace)
    return replacement


broker = build_broker(get_settings())
dramatiq.set_broker(broker)
