"""Entry point of the worker processes: ``dramatiq jobs.worker``."""

from __future__ import annotations

import logging

import jobs.actors  # noqa: F401  (declares the actors this worker consumes)
from jobs.broker import broker
from jobs.worker_middleware import WorkerLifecycle

logging.basicConfig(
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
)

broker.add_middleware(WorkerLifecycle())
