"""Dramatiq middleware of the worker processes: start the sweeper, announce shutdowns.

It runs only in worker processes (``jobs.worker`` adds it), after the AsyncIO middleware has
started the process's event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import Broker
from dramatiq.middleware import Middleware

from jobs.sweeper import Sweeper, log_sweeper_exit
from jobs.worker_runtime import get_worker_runtime, request_stop, worker_id

logger = logging.getLogger(__name__)


class WorkerLifecycle(Middleware):
    """Run the :class:`~jobs.sweeper.Sweeper` on the event loop while the worker runs, and
    let running scans hand their tasks back when the worker begins a graceful shutdown."""

    def __init__(self) -> None:
        self._sweeper: asyncio.Task[None] | None = None

    async def _run_sweeper(self) -> None:
        rt = await get_worker_runtime()
        await Sweeper(rt).run_forever()

    def _start_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._run_sweeper(), name="sweeper")
        self._sweeper.add_done_callback(log_sweeper_exit)

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            raise RuntimeError("the AsyncIO middleware must come before WorkerLifecycle")
        loop_thread.loop.call_soon_threadsafe(self._start_sweeper)

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        logger.info("worker %s shutting down: running scans stop after their batch", worker_id())
        request_stop()
        loop_thread = get_event_loop_thread()
        if self._sweeper is not None and loop_thread is not None:
            loop_thread.loop.call_soon_threadsafe(self._sweeper.cancel)
