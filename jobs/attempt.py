"""Progress reporting and the outcomes of one scan attempt.

An attempt ends in exactly one of these ways: COMPLETED, CANCELLED, FAILED (permanent error
or attempts used up), QUEUED with ``next_retry_at`` (transient error, retried with backoff),
or QUEUED at once because its worker process is shutting down. :class:`AttemptState` contains
what those outcomes need; :class:`jobs.scan.ScanAttempt` adds the reading of the mailbox.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta

from redis.exceptions import RedisError

from jobs.dispatch import send_scan
from jobs.documents import ScanPhase, ScanStatus, ScanSummary, ScanTask, TaskError, utcnow
from jobs.errors import ScanError
from jobs.lease import LeaseKeeper
from jobs.progress import ProgressEvent, estimate
from jobs.results import summarise
from jobs.runtime import Runtime
from jobs.tally import SummaryTally
from jobs.task_state import finish_task, release_task, requeue_for_retry, update_owned

logger = logging.getLogger(__name__)


@dataclass
class Counters:
    processed: int = 0
    total: int = 0
    done_before: int = 0
    started: float = field(default_factory=time.monotonic)

    def percent(self) -> float:
        if self.total == 0:
            return 0.0
        return round(min(100.0, 100.0 * self.processed / self.total), 2)


def retry_delay_s(rt: Runtime, attempt: int) -> float:
    """Exponential backoff with +-25% jitter, so retries of many tasks do not align."""
    base = min(rt.settings.retry_max_s, rt.settings.retry_base_s * 2 ** max(attempt - 1, 0))
    jitter = random.uniform(0.75, 1.25)
    return round(float(base) * jitter, 3)


class AttemptState:
    """One attempt at one task, owned by one worker through its lease."""

    def __init__(self, rt: Runtime, task: ScanTask, worker_id: str) -> None:
        self.rt = rt
        self.task = task
        self.task_id = str(task.id)
        self.worker_id = worker_id
        self.counters = Counters()
        self.phase = ScanPhase.CONNECTING
        self.lease = LeaseKeeper(rt, task, worker_id)
        #: What this attempt saved and checkpointed, counted for the summary.
        self.tally = SummaryTally()
        #: Progress events skipped since Redis became unavailable.
        self._unpublished = 0

    # -- progress -------------------------------------------------------------------------

    def _event(self, status: ScanStatus, message: str | None = None) -> ProgressEvent:
        rate, eta = estimate(
            self.counters.processed,
            self.counters.total,
            self.counters.started,
            self.counters.done_before,
        )
        return ProgressEvent(
            task_id=self.task_id,
            user_id=self.task.user_id,
            status=status,
            phase=self.phase,
            percent=self.counters.percent(),
            processed=self.counters.processed,
            total=self.counters.total,
            eta_seconds=eta,
            messages_per_second=rate,
            message=message,
            updated_at=utcnow(),
        )

    async def _report(self, *, force: bool = False, message: str | None = None) -> None:
        """Publish the current progress; a Redis outage skips the event and the scan goes on."""
        status = ScanStatus.CANCELLING if self.lease.cancel_requested else ScanStatus.RUNNING
        try:
            await self.rt.publisher.publish(self._event(status, message), force=force)
        except RedisError as exc:
            if not self._unpublished:
                logger.warning(
                    "task %s user %s: progress events not published while Redis is "
                    "unavailable (%s); the scan goes on",
                    self.task_id,
                    self.task.user_id,
                    exc,
                )
            self._unpublished += 1
            return
        if self._unpublished:
            logger.info(
                "task %s user %s: progress published again after %d events were skipped",
                self.task_id,
                self.task.user_id,
                self._unpublished,
            )
            self._unpublished = 0

    async def _enter_phase(self, phase: ScanPhase) -> None:
        self.phase = phase
        await update_owned(self.task, self.worker_id, {"phase": phase.value})
        await self._report(force=True)

    def _progress_fields(self) -> dict[str, object]:
        return {
            "processed": self.counters.processed,
            "total": self.counters.total,
            "percent": self.counters.percent(),
            "phase": self.phase.value,
        }

    # -- outcomes -------------------------------------------------------------------------

    async def _publish_final(self, task: ScanTask | None, message: str | None) -> None:
        if task is None:
            logger.warning(
                "task %s user %s lost its lease before it could finish; its new owner finishes it",
                self.task_id,
                self.task.user_id,
            )
            return
        self.phase = task.phase
        event = self._event(task.status, message)
        event = event.model_copy(update={"percent": task.percent})
        await self.rt.publisher.publish(event, force=True)

    async def _completed_summary(self) -> ScanSummary:
        """Count the summary in memory when this attempt saved every message of the task.

        Otherwise (the attempt resumed from checkpoints, or a message vanished between the
        listing and the fetch) it is counted from the saved documents.
        """
        complete = self.counters.done_before == 0 and self.tally.messages == self.counters.total
        if complete:
            return self.tally.summary()
        return await summarise(self.task)

    async def _complete(self) -> None:
        await self._enter_phase(ScanPhase.SAVING)
        summary = await self._completed_summary()
        self.counters.processed = self.counters.total
        task = await finish_task(
            self.task,
            self.worker_id,
            ScanStatus.COMPLETED,
            summary=summary,
            extra={
                "processed": self.counters.total,
                "total": self.counters.total,
                "percent": 100.0,
            },
        )
        elapsed = time.monotonic() - self.counters.started
        logger.info(
            "task %s user %s completed: %d messages (%d fetched by this attempt), "
            "%d flagged, %.1f s, attempt %d",
            self.task_id,
            self.task.user_id,
            summary.messages,
            self.counters.total - self.counters.done_before,
            summary.flagged,
            elapsed,
            self.task.attempts,
        )
        await self._publish_final(task, None)

    def _final_progress(self) -> dict[str, object]:
        # A batch saved just before the stop may lack its checkpoint. The counters include it,
        # so the stored progress matches the summary counted from the saved messages. Before
        # the listing the counters are empty, so the stored progress stays as it is.
        if self.counters.total == 0:
            return {}
        fields = self._progress_fields()
        fields.pop("phase", None)
        return fields

    async def _cancelled(self) -> None:
        summary = await summarise(self.task)
        task = await finish_task(
            self.task,
            self.worker_id,
            ScanStatus.CANCELLED,
            summary=summary,
            extra=self._final_progress(),
        )
        await self.rt.redis.delete(self.rt.keys.cancel_flag(self.task_id))
        logger.info(
            "task %s user %s cancelled after %d of %d messages",
            self.task_id,
            self.task.user_id,
            self.counters.processed,
            self.counters.total,
        )
        await self._publish_final(task, "cancelled")

    async def _failed(self, error: ScanError) -> None:
        if error.retryable and self.task.attempts < self.task.attempt_limit:
            await self._schedule_retry(error)
            return
        summary = await summarise(self.task)
        reason = TaskError(code=error.code, message=error.message, retryable=error.retryable)
        task = await finish_task(
            self.task,
            self.worker_id,
            ScanStatus.FAILED,
            error=reason,
            summary=summary,
            extra=self._final_progress(),
        )
        logger.info(
            "task %s user %s failed with %s after %d attempts: %s",
            self.task_id,
            self.task.user_id,
            error.code,
            self.task.attempts,
            error.message,
        )
        await self._publish_final(task, error.message)

    async def _schedule_retry(self, error: ScanError) -> None:
        delay_s = retry_delay_s(self.rt, self.task.attempts)
        retry_at = utcnow() + timedelta(seconds=delay_s)
        reason = TaskError(code=error.code, message=error.message, retryable=True)
        task = await requeue_for_retry(self.task, self.worker_id, reason, retry_at)
        if task is None:
            logger.warning(
                "task %s user %s lost its lease; its new owner decides on retries",
                self.task_id,
                self.task.user_id,
            )
            return
        await send_scan(self.rt, task, delay_s=delay_s)
        logger.info(
            "task %s user %s retry %d in %.1f s after %s: %s",
            self.task_id,
            self.task.user_id,
            self.task.attempts + 1,
            delay_s,
            error.code,
            error.message,
        )
        self.phase = ScanPhase.QUEUED
        await self.rt.publisher.publish(
            self._event(ScanStatus.QUEUED, f"retrying in {delay_s:.0f} s: {error.message}"),
            force=True,
        )

    async def _released(self) -> None:
        """Hand the task back to the queue because this worker process is shutting down."""
        task = await release_task(self.task, self.worker_id)
        if task is None and self.lease.lease_lost:
            logger.warning(
                "task %s user %s lost its lease during shutdown; its new owner continues it",
                self.task_id,
                self.task.user_id,
            )
            return
        if task is None:
            # release_task matches RUNNING only, so the task was cancelled meanwhile.
            await self._cancelled()
            return
        message_id = await send_scan(self.rt, task)
        logger.info(
            "task %s user %s released by %s at shutdown after %d of %d messages; "
            "sent again as message %s",
            self.task_id,
            self.task.user_id,
            self.worker_id,
            self.counters.processed,
            self.counters.total,
            message_id,
        )
        self.phase = ScanPhase.QUEUED
        await self.rt.publisher.publish(
            self._event(ScanStatus.QUEUED, "worker stopping; the scan continues on another worker"),
            force=True,
        )
