"""The body of one scan attempt: claim the task, read the mailbox, save, report, finish.

The attempt reads everything from the task document, so a redelivered or retried message
resumes the same task from its checkpoints. The outcomes of an attempt are in
:mod:`jobs.attempt`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jobs.analysis import analyse_headers, analyse_message
from jobs.attempt import AttemptState
from jobs.claim_lock import claim_lock
from jobs.dispatch import send_scan
from jobs.documents import (
    EmailAccount,
    FolderCheckpoint,
    ScanPhase,
    ScanStatus,
    ScanTask,
    TaskError,
)
from jobs.errors import ConfigurationError, PermanentScanError, ScanError, TransientScanError
from jobs.fairness import admit
from jobs.imap import FetchedMessage, ImapSession
from jobs.lease import ScanCancelled
from jobs.lifecycle import parse_object_id
from jobs.progress import event_from_task
from jobs.results import AnalysedMessage, save_batch
from jobs.runtime import Runtime
from jobs.secrets import decrypt_secret
from jobs.task_state import claim_task, finish_task, save_checkpoint, update_owned
from jobs.worker_runtime import stop_requested

logger = logging.getLogger(__name__)


@dataclass
class FolderPlan:
    """UIDs of one folder that fall in the scan window, and how many are already saved."""

    name: str
    uidvalidity: int
    pending: list[int]
    saved_before: int


class WorkerStopping(Exception):
    """The worker process is shutting down; the attempt hands its task back after a batch."""


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


class ScanAttempt(AttemptState):
    """One attempt at one task: read the mailbox batch by batch, checkpointing each batch."""

    def __init__(self, rt: Runtime, task: ScanTask, worker_id: str) -> None:
        super().__init__(rt, task, worker_id)
        self._batches_saved = 0

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
        """Fetch, analyse and save the folder's pending UIDs, batch by batch, as a pipeline.

        While one batch is analysed, the next one is fetched and the previous one saved, so
        the IMAP server, this process and the database work at the same time. Batches are
        saved and checkpointed one at a time in UID order, so a checkpoint never passes a
        batch that is not saved. At most three batches are held: fetched, analysed, saving.
        """
        uidvalidity = await asyncio.to_thread(session.select, plan.name)
        if uidvalidity != plan.uidvalidity:
            raise TransientScanError(
                "UIDVALIDITY_CHANGED",
                f"folder {plan.name!r} changed its UIDVALIDITY during the scan; "
                "the next attempt scans it again",
            )
        checkpoint = self.task.checkpoints.get(plan.name)
        saved = checkpoint.saved if checkpoint and checkpoint.uidvalidity == plan.uidvalidity else 0
        size = self.rt.settings.fetch_batch_size
        batches = [
            plan.pending[start : start + size] for start in range(0, len(plan.pending), size)
        ]

        fetching: asyncio.Task[list[FetchedMessage]] | None = None
        saving: asyncio.Task[None] | None = None
        try:
            for index, uids in enumerate(batches):
                self._raise_if_stopping()
                if fetching is None:
                    fetching = self._start_fetch(session, uids)
                fetched = await fetching
                fetching = None
                self.lease.raise_if_stopped()
                if index + 1 < len(batches):
                    fetching = self._start_fetch(session, batches[index + 1])

                analysed = await asyncio.to_thread(analyse_batch, fetched)

                if saving is not None:
                    await saving
                    saving = None
                saved += len(analysed)
                saving = asyncio.create_task(self._save(plan, uids, analysed, saved))
            if saving is not None:
                await saving
                saving = None
        finally:
            await _settle(session, fetching, saving)

    def _raise_if_stopping(self) -> None:
        self.lease.raise_if_stopped()
        if stop_requested():
            raise WorkerStopping

    def _start_fetch(
        self, session: ImapSession, uids: list[int]
    ) -> asyncio.Task[list[FetchedMessage]]:
        fetch = asyncio.to_thread(
            session.fetch, uids, max_message_bytes=self.rt.settings.max_message_bytes
        )
        return asyncio.ensure_future(fetch)

    async def _save(
        self, plan: FolderPlan, uids: list[int], analysed: list[AnalysedMessage], saved: int
    ) -> None:
        """Save one batch, then checkpoint it, then count it in the summary and report it."""
        await save_batch(self.task, plan.name, plan.uidvalidity, analysed)

        self.counters.processed += len(uids)
        checkpoint = FolderCheckpoint(uidvalidity=plan.uidvalidity, last_uid=uids[-1], saved=saved)
        owned = await save_checkpoint(
            self.task, self.worker_id, plan.name, checkpoint, self._progress_fields()
        )
        if not owned:
            raise ScanCancelled("lease lost")
        self.task.checkpoints[plan.name] = checkpoint
        self.tally.add(analysed)

        await self._report()
        self._batches_saved += 1
        self._crash_if_configured()

    def _crash_if_configured(self) -> None:
        limit = self.rt.settings.crash_after_batches
        if limit and self._batches_saved >= limit:
            logger.error(
                "task %s user %s: exiting the worker process after %d batches "
                "(MAILSCAN_CRASH_AFTER_BATCHES test hook)",
                self.task_id,
                self.task.user_id,
                self._batches_saved,
            )
            logging.shutdown()
            os._exit(70)

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
            if self.lease.lease_lost:
                logger.warning(
                    "task %s user %s: %s lost its lease; the new owner continues the scan",
                    self.task_id,
                    self.task.user_id,
                    self.worker_id,
                )
                return
            await self._cancelled()
        except WorkerStopping:
            await self._released()
        except ScanError as exc:
            # Aborting the IMAP socket on cancel or shutdown surfaces as a connection error.
            if self.lease.cancel_requested:
                await self._cancelled()
            elif self.lease.shutdown_abort:
                await self._released()
            else:
                await self._failed(exc)
        except (PyMongoError, RedisError, OSError) as exc:
            logger.warning(
                "task %s user %s: database or Redis unavailable (%s); retrying",
                self.task_id,
                self.task.user_id,
                exc,
            )
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


async def _settle(
    session: ImapSession,
    fetching: asyncio.Task[list[FetchedMessage]] | None,
    saving: asyncio.Task[None] | None,
) -> None:
    """Wait for the batches still in flight when a folder's pipeline stops early.

    The batch being saved is saved and checkpointed, so stopping after it loses nothing. The
    batch being fetched is dropped and fetched again by the next attempt. Aborting the session
    first keeps a slow server from holding up the stop. Their errors are only logged, because
    the error that stopped the pipeline is the one the attempt reports.
    """
    if fetching is not None:
        session.abort()
    for pending in (saving, fetching):
        if pending is None:
            continue
        try:
            await pending
        except Exception as exc:
            logger.debug("work in flight ended with %r after the scan stopped", exc)


async def run_scan(rt: Runtime, task_id: str, worker_id: str) -> None:
    """Run one attempt of ``task_id`` if this worker can claim it; otherwise do nothing."""
    if stop_requested():
        await _pass_on(rt, task_id, worker_id)
        return

    async with claim_lock(rt, task_id):
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
        # A task cancelled while RUNNING whose worker died arrives here through the sweeper.
        done = await finish_task(task, worker_id, ScanStatus.CANCELLED)
        await rt.redis.delete(rt.keys.cancel_flag(task_id))
        if done is not None:
            await rt.publisher.publish(event_from_task(done, "cancelled"), force=True)
            logger.info("task %s user %s cancelled before it ran again", task_id, task.user_id)
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
        logger.error(
            "task %s user %s ends FAILED: %d attempts stopped without finishing; "
            "retryScan resumes it from its checkpoints",
            task_id,
            task.user_id,
            task.attempts - 1,
        )
        return

    await ScanAttempt(rt, task, worker_id).run()


#: Delay of a message passed on by a stopping worker, in seconds, which gives the stopping
#: worker time to stop taking messages.
PASS_ON_DELAY_S = 1.0


async def _pass_on(rt: Runtime, task_id: str, worker_id: str) -> None:
    """Send the task again without claiming it, because this worker process is stopping.

    A worker thread can still receive a message after the shutdown began, and returning
    without work would acknowledge, and so lose, that message.
    """
    task = await ScanTask.get(parse_object_id(task_id))
    if task is None or task.status != ScanStatus.QUEUED:
        return
    message_id = await send_scan(rt, task, delay_s=PASS_ON_DELAY_S)
    logger.info(
        "task %s user %s not started: %s is shutting down; sent again as message %s",
        task_id,
        task.user_id,
        worker_id,
        message_id,
    )
