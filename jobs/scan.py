"""The body of one scan attempt: claim the task, read the mailbox, save, report, finish.

The attempt reads everything from the task document, so a redelivered or retried message
resumes the same task from its checkpoints. Failures end the attempt in exactly one of three
ways: FAILED (permanent error or attempts used up), QUEUED with ``next_retry_at`` (transient
error, retried with backoff), or CANCELLED.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jobs.analysis import analyse_headers, analyse_message
from jobs.documents import (
    EmailAccount,
    FolderCheckpoint,
    ScanPhase,
    ScanStatus,
    ScanTask,
    TaskError,
    utcnow,
)
from jobs.errors import ConfigurationError, PermanentScanError, ScanError, TransientScanError
from jobs.fairness import admit
from jobs.imap import FetchedMessage, ImapSession
from jobs.lease import LeaseKeeper, ScanCancelled
from jobs.lifecycle import parse_object_id
from jobs.progress import ProgressEvent, estimate, event_from_task
from jobs.results import AnalysedMessage, save_batch, summarise
from jobs.runtime import Runtime
from jobs.secrets import decrypt_secret
from jobs.task_state import (
    claim_task,
    finish_task,
    requeue_for_retry,
    save_checkpoint,
    update_owned,
)

logger = logging.getLogger(__name__)


@dataclass
class FolderPlan:
    """UIDs of one folder that fall in the scan window, and how many are already saved."""

    name: str
    uidvalidity: int
    pending: list[int]
    saved_before: int


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


def analyse(fetched: FetchedMessage) -> AnalysedMessage:
    if fetched.header_only:
        fields = analyse_headers(fetched.raw, fetched.size)
    else:
        fields = analyse_message(fetched.raw)
    return AnalysedMessage(
        uid=fetched.uid,
        flags=fetched.flags,
        internal_date=fetched.internal_date,
        fields=fields,
    )


def analyse_batch(batch: Sequence[FetchedMessage]) -> list[AnalysedMessage]:
    return [analyse(fetched) for fetched in batch]


def retry_delay_s(rt: Runtime, attempt: int) -> float:
    """Exponential backoff with +-25% jitter, so retries of many tasks do not align."""
    base = min(rt.settings.retry_max_s, rt.settings.retry_base_s * 2 ** max(attempt - 1, 0))
    jitter = random.uniform(0.75, 1.25)
    return round(float(base) * jitter, 3)


class ScanAttempt:
    """One attempt at one task, owned by one worker through its lease."""

    def __init__(self, rt: Runtime, task: ScanTask, worker_id: str) -> None:
        self.rt = rt
        self.task = task
        self.task_id = str(task.id)
        self.worker_id = worker_id
        self.counters = Counters()
        self.phase = ScanPhase.CONNECTING
        self.lease = LeaseKeeper(rt, task, worker_id)

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
        status = ScanStatus.CANCELLING if self.lease.cancel_requested else ScanStatus.RUNNING
        await self.rt.publisher.publish(self._event(status, message), force=force)

    async def _enter_phase(self, phase: ScanPhase) -> None:
        self.phase = phase
        await update_owned(self.task, self.worker_id, {"phase": phase.value})
        await self._report(force=True)

    # -- mailbox --------------------------------------------------------------------------

    async def _load_account(self) -> tuple[EmailAccount, str]:
        object_id = parse_object_id(self.task.account_id)
        account = await EmailAccount.get(object_id) if object_id is not None else None
        if account is None:
            raise PermanentScanError(
                "ACCOUNT_NOT_FOUND",
                f"account {self.task.account_id!r} was removed; connect it again to scan it",
            )
        try:
            password = decrypt_secret(self.rt.settings, account.password_encrypted)
        except ConfigurationError as exc:
            raise PermanentScanError("SECRET_UNREADABLE", str(exc)) from exc
        return account, password

    def _open_session(self, account: EmailAccount) -> ImapSession:
        settings = self.rt.settings
        return ImapSession(
            account.host,
            account.port,
            account.security.value,
            timeout_s=settings.imap_timeout_s,
            ca_file=settings.imap_ca_file or None,
            allow_insecure=settings.allow_insecure_imap,
        )

    async def _plan_folder(self, session: ImapSession, folder: str) -> FolderPlan:
        uidvalidity = await asyncio.to_thread(session.select, folder)
        uids = await asyncio.to_thread(session.search_since, self.task.since.date())
        checkpoint = self.task.checkpoints.get(folder)
        if checkpoint is None or checkpoint.uidvalidity != uidvalidity:
            # A new UIDVALIDITY means the old UIDs name other messages: start the folder over.
            return FolderPlan(folder, uidvalidity, uids, 0)
        pending = [uid for uid in uids if uid > checkpoint.last_uid]
        return FolderPlan(folder, uidvalidity, pending, len(uids) - len(pending))

    async def _scan_folder(self, session: ImapSession, plan: FolderPlan) -> None:
        uidvalidity = await asyncio.to_thread(session.select, plan.name)
        if uidvalidity != plan.uidvalidity:
            raise TransientScanError(
                "UIDVALIDITY_CHANGED",
                f"folder {plan.name!r} changed its UIDVALIDITY during the scan; "
                "the next attempt scans it again",
            )
        checkpoint = self.task.checkpoints.get(plan.name)
        saved = checkpoint.saved if checkpoint and checkpoint.uidvalidity == plan.uidvalidity else 0
        batch_size = self.rt.settings.fetch_batch_size

        for start in range(0, len(plan.pending), batch_size):
            self.lease.raise_if_stopped()
            uids = plan.pending[start : start + batch_size]
            fetched = await asyncio.to_thread(
                session.fetch, uids, max_message_bytes=self.rt.settings.max_message_bytes
            )
            self.lease.raise_if_stopped()
            analysed = await asyncio.to_thread(analyse_batch, fetched)
            await save_batch(self.task, plan.name, plan.uidvalidity, analysed)

            saved += len(analysed)
            self.counters.processed += len(uids)
            checkpoint = FolderCheckpoint(
                uidvalidity=plan.uidvalidity, last_uid=uids[-1], saved=saved
            )
            owned = await save_checkpoint(
                self.task, self.worker_id, plan.name, checkpoint, self._progress_fields()
            )
            if not owned:
                raise ScanCancelled("lease lost")
            self.task.checkpoints[plan.name] = checkpoint
            await self._report()

    def _progress_fields(self) -> dict[str, object]:
        return {
            "processed": self.counters.processed,
            "total": self.counters.total,
            "percent": self.counters.percent(),
            "phase": self.phase.value,
        }

    async def _scan_mailbox(self) -> None:
        account, password = await self._load_account()
        session = self._open_session(account)
        self.lease.on_cancel(session.abort)
        try:
            await asyncio.to_thread(session.connect_and_login, account.username, password)

            await self._enter_phase(ScanPhase.LISTING)
            plans = [await self._plan_folder(session, folder) for folder in account.folders]
            self.counters.total = sum(len(plan.pending) + plan.saved_before for plan in plans)
            self.counters.done_before = sum(plan.saved_before for plan in plans)
            self.counters.processed = self.counters.done_before
            await update_owned(self.task, self.worker_id, self._progress_fields())

            await self._enter_phase(ScanPhase.FETCHING)
            for plan in plans:
                await self._scan_folder(session, plan)
        finally:
            await asyncio.to_thread(session.close)

    # -- outcomes -------------------------------------------------------------------------

    async def _publish_final(self, task: ScanTask | None, message: str | None) -> None:
        if task is None:
            logger.warning("task %s lost its lease before it could finish", self.task_id)
            return
        self.phase = task.phase
        event = self._event(task.status, message)
        event = event.model_copy(update={"percent": task.percent})
        await self.rt.publisher.publish(event, force=True)

    async def _complete(self) -> None:
        await self._enter_phase(ScanPhase.SAVING)
        summary = await summarise(self.task)
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
            "task %s user %s completed: %d messages, %d flagged, %.1f s, attempt %d",
            self.task_id,
            self.task.user_id,
            summary.messages,
            summary.flagged,
            elapsed,
            self.task.attempts,
        )
        await self._publish_final(task, None)

    async def _cancelled(self) -> None:
        summary = await summarise(self.task)
        task = await finish_task(self.task, self.worker_id, ScanStatus.CANCELLED, summary=summary)
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
            self.task, self.worker_id, ScanStatus.FAILED, error=reason, summary=summary
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
        from jobs.actors import scan_mailbox

        delay_s = retry_delay_s(self.rt, self.task.attempts)
        retry_at = utcnow() + timedelta(seconds=delay_s)
        reason = TaskError(code=error.code, message=error.message, retryable=True)
        task = await requeue_for_retry(self.task, self.worker_id, reason, retry_at)
        if task is None:
            logger.warning("task %s lost its lease; its new owner decides on retries", self.task_id)
            return
        await asyncio.to_thread(
            scan_mailbox.send_with_options, args=(self.task_id,), delay=int(delay_s * 1000)
        )
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

    async def run(self) -> None:
        logger.info(
            "task %s user %s attempt %d started by %s",
            self.task_id,
            self.task.user_id,
            self.task.attempts,
            self.worker_id,
        )
        await self._report(force=True)
        try:
            async with self.lease:
                await self._scan_mailbox()
                self.lease.raise_if_stopped()
                await self._complete()
        except ScanCancelled:
            await self._cancelled()
        except ScanError as exc:
            # Aborting the IMAP socket on cancel surfaces as a connection error.
            if self.lease.cancel_requested:
                await self._cancelled()
            else:
                await self._failed(exc)
        except (PyMongoError, RedisError, OSError) as exc:
            logger.warning("task %s: storage unavailable (%s); retrying", self.task_id, exc)
            await self._failed(
                TransientScanError(
                    "STORAGE_UNAVAILABLE", "the database or Redis was briefly unavailable"
                )
            )
        except Exception:
            logger.exception(
                "task %s user %s: unexpected error; the task ends FAILED",
                self.task_id,
                self.task.user_id,
            )
            await self._failed(
                PermanentScanError(
                    "INTERNAL_ERROR", "the scan stopped on an internal error; retry it later"
                )
            )


async def run_scan(rt: Runtime, task_id: str, worker_id: str) -> None:
    """Run one attempt of ``task_id`` if this worker can claim it; otherwise do nothing."""
    task = await claim_task(task_id, worker_id, rt.settings.lease_s)
    if task is None:
        logger.info(
            "task %s not claimed by %s: finished, missing or held by a live worker",
            task_id,
            worker_id,
        )
        return
    if not await admit(rt, task, worker_id):
        return

    if task.cancel_requested:
        done = await finish_task(task, worker_id, ScanStatus.CANCELLED)
        if done is not None:
            await rt.publisher.publish(event_from_task(done, "cancelled"), force=True)
        return

    if task.attempts > task.attempt_limit:
        reason = TaskError(
            code="TOO_MANY_ATTEMPTS",
            message=f"the scan stopped {task.attempt_limit} times without finishing; "
            "retry it, and report it if it keeps failing",
        )
        done = await finish_task(task, worker_id, ScanStatus.FAILED, error=reason)
        if done is not None:
            await rt.publisher.publish(event_from_task(done, reason.message), force=True)
        logger.error("task %s user %s failed: attempts exhausted", task_id, task.user_id)
        return

    await ScanAttempt(rt, task, worker_id).run()
