"""The lease a running scan holds on its task, and the watch for cancellation.

While a scan runs, :class:`LeaseKeeper` renews the task's lease every third of its length and
polls the task's cancel flag in Redis every :data:`CANCEL_POLL_S`. A cancel request, or a lease
taken over by another worker, stops the scan at its next check and runs the registered abort
callbacks at once, which close the IMAP socket so a long FETCH does not hold the scan. A worker
shutdown does the same once the running batch outlasts ``Settings.shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jobs.documents import ScanTask
from jobs.runtime import Runtime
from jobs.task_state import renew_lease
from jobs.worker_runtime import stop_requested

logger = logging.getLogger(__name__)

#: Interval between two reads of the cancel flag, in seconds.
CANCEL_POLL_S = 0.25


class ScanCancelled(Exception):
    """The scan must stop: its task was cancelled or its lease was lost."""


class LeaseKeeper:
    def __init__(self, rt: Runtime, task: ScanTask, worker_id: str) -> None:
        self._rt = rt
        self._task = task
        self._worker_id = worker_id
        self._watch: asyncio.Task[None] | None = None
        self._abort_callbacks: list[Callable[[], None]] = []
        self.cancel_requested = task.cancel_requested
        self.lease_lost = False
        #: Set when the worker shut down and the batch outlasted ``shutdown_grace_s``.
        self.shutdown_abort = False

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (in a thread) as soon as the scan must stop."""
        self._abort_callbacks.append(callback)

    def raise_if_stopped(self) -> None:
        if self.lease_lost:
            raise ScanCancelled("lease lost")
        if self.cancel_requested:
            raise ScanCancelled("cancel requested")

    async def __aenter__(self) -> LeaseKeeper:
        self._watch = asyncio.create_task(self._watch_forever(), name=f"lease-{self._task.id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _stop(self) -> None:
        for callback in self._abort_callbacks:
            await asyncio.to_thread(callback)

    async def _watch_forever(self) -> None:
        renew_every = max(self._rt.settings.lease_s / 3, CANCEL_POLL_S)
        loop = asyncio.get_running_loop()
        next_renewal = loop.time() + renew_every
        flag = self._rt.keys.cancel_flag(str(self._task.id))
        failures = 0
        stop_deadline: float | None = None
        while not (self.cancel_requested or self.lease_lost or self.shutdown_abort):
            await asyncio.sleep(CANCEL_POLL_S)
            if stop_deadline is None and stop_requested():
                stop_deadline = loop.time() + self._rt.settings.shutdown_grace_s
            if stop_deadline is not None and loop.time() >= stop_deadline:
                self.shutdown_abort = True
                break
            try:
                # The renewal goes first so that a Redis outage does not stop it.
                if loop.time() >= next_renewal:
                    next_renewal = loop.time() + renew_every
                    await self._renew()
                if await self._rt.redis.exists(flag):
                    self.cancel_requested = True
            except (RedisError, PyMongoError, OSError) as exc:
                # The scan itself meets the same outage and retries; the lease has slack.
                if not failures:
                    logger.warning(
                        "task %s user %s: lease watch failed (%s); trying again",
                        self._task.id,
                        self._task.user_id,
                        exc,
                    )
                failures += 1
                continue
            if failures:
                logger.info(
                    "task %s user %s: lease watch works again after %d failed checks",
                    self._task.id,
                    self._task.user_id,
                    failures,
                )
                failures = 0
        logger.info(
            "task %s user %s stopping: %s",
            self._task.id,
            self._task.user_id,
            self._stop_reason(),
        )
        await self._stop()

    def _stop_reason(self) -> str:
        if self.lease_lost:
            return "lease lost"
        if self.cancel_requested:
            return "cancel requested"
        return "worker shutting down and the batch outlasted the shutdown grace"

    async def _renew(self) -> None:
        current = await renew_lease(self._task, self._worker_id, self._rt.settings.lease_s)
        if current is None:
            self.lease_lost = True
        elif current.cancel_requested:
            self.cancel_requested = True
