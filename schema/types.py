"""GraphQL object types built from the Beanie documents and progress events."""

from __future__ import annotations

from datetime import datetime

import strawberry

from jobs import documents, fairness
from jobs.progress import ProgressEvent
from schema.context import Info
from schema.enums import FindingKind, ImapSecurity, ScanPhase, ScanStatus


@strawberry.type(description="An IMAP mailbox the user connected. The password is never returned.")
class EmailAccount:
    id: strawberry.ID
    label: str
    host: str
    port: int
    security: ImapSecurity
    username: str
    folders: list[str]
    created_at: datetime

    @classmethod
    def from_document(cls, account: documents.EmailAccount) -> EmailAccount:
        return cls(
            id=strawberry.ID(str(account.id)),
            label=account.label,
            host=account.host,
            port=account.port,
            security=account.security,
            username=account.username,
            folders=list(account.folders),
            created_at=account.created_at,
        )


@strawberry.type(description="Why a scan task failed, or why its last attempt failed.")
class TaskError:
    code: str
    message: str
    retryable: bool = strawberry.field(
        description="True when another attempt may succeed, so the task is or can be retried."
    )


@strawberry.type(description="Number of findings of one kind.")
class FindingCount:
    kind: FindingKind
    count: int


@strawberry.type(description="Number of messages from one sender address.")
class SenderCount:
    address: str
    messages: int


@strawberry.type(description="Totals of a finished scan.")
class ScanSummary:
    messages: int
    newsletters: int
    flagged: int
    findings: list[FindingCount]
    top_senders: list[SenderCount]

    @classmethod
    def from_document(cls, summary: documents.ScanSummary) -> ScanSummary:
        # A kind written by a newer worker and unknown to this API is left out.
        known = {kind.value for kind in documents.FindingKind}
        counts = [
            FindingCount(kind=documents.FindingKind(kind), count=count)
            for kind, count in sorted(summary.findings.items())
            if kind in known
        ]
        senders = [
            SenderCount(address=sender.address, messages=sender.messages)
            for sender in summary.top_senders
        ]
        return cls(
            messages=summary.messages,
            newsletters=summary.newsletters,
            flagged=summary.flagged,
            findings=counts,
            top_senders=senders,
        )


async def _queue_position(root: ScanTask, info: Info) -> int | None:
    if root.status != ScanStatus.QUEUED:
        return None
    return await fairness.queue_position(info.context.require_user_id(), str(root.id))


async def _task_account(root: ScanTask, info: Info) -> EmailAccount | None:
    account = await info.context.accounts.load(str(root.account_id))
    return EmailAccount.from_document(account) if account is not None else None


@strawberry.type(description="One scan of one account, with its progress and outcome.")
class ScanTask:
    id: strawberry.ID
    account_id: strawberry.ID
    account_label: str = strawberry.field(
        description="Label of the account when the task was created; kept after removal."
    )
    months: int
    status: ScanStatus
    phase: ScanPhase
    percent: float
    processed: int
    total: int
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_retry_at: datetime | None = strawberry.field(
        description="When the next attempt starts, while a failed attempt waits for its retry."
    )
    error: TaskError | None
    summary: ScanSummary | None

    account: EmailAccount | None = strawberry.field(
        resolver=_task_account, description="The scanned account; null once the account is removed."
    )
    queue_position: int | None = strawberry.field(
        resolver=_queue_position,
        description="Position of a QUEUED task among the user's QUEUED tasks, from 1 for the "
        "oldest; null in any other status.",
    )

    @classmethod
    def from_document(cls, task: documents.ScanTask) -> ScanTask:
        error = task.error
        return cls(
            id=strawberry.ID(str(task.id)),
            account_id=strawberry.ID(task.account_id),
            account_label=task.account_label,
            months=task.months,
            status=task.status,
            phase=task.phase,
            percent=task.percent,
            processed=task.processed,
            total=task.total,
            attempts=task.attempts,
            created_at=task.created_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            next_retry_at=task.next_retry_at,
            error=TaskError(code=error.code, message=error.message, retryable=error.retryable)
            if error is not None
            else None,
            summary=ScanSummary.from_document(task.summary) if task.summary is not None else None,
        )


@strawberry.type(description="One problem found in one message by one scan.")
class Finding:
    id: strawberry.ID
    kind: FindingKind
    detail: str
    folder: str
    uid: int
    message_id: str | None
    subject: str | None
    sender_address: str | None
    date: datetime | None

    @classmethod
    def from_document(cls, finding: documents.Finding) -> Finding:
        return cls(
            id=strawberry.ID(str(finding.id)),
            kind=finding.kind,
            detail=finding.detail,
            folder=finding.folder,
            uid=finding.uid,
            message_id=finding.message_id,
            subject=finding.subject,
            sender_address=finding.sender_address,
            date=finding.date,
        )


# Subscribers with the same operation share the result of each event (schema.sharing), so a
# field added here must not read the request context or have side effects.
@strawberry.type(description="State of a scan task at one moment, sent live while it runs.")
class ScanProgress:
    task_id: strawberry.ID
    status: ScanStatus
    phase: ScanPhase
    percent: float = strawberry.field(description="0 to 100; never decreases within one attempt.")
    processed: int
    total: int
    eta_seconds: float | None
    messages_per_second: float | None
    sequence: int = strawberry.field(
        description="Position among the published events of the task, from 1. A subscription "
        "starts with the latest published event and its own sequence; 0 or less means that "
        "no published event was stored and the state was read from the task document."
    )
    message: str | None
    updated_at: datetime

    @classmethod
    def from_event(cls, event: ProgressEvent) -> ScanProgress:
        return cls(
            task_id=strawberry.ID(event.task_id),
            status=event.status,
            phase=event.phase,
            percent=event.percent,
            processed=event.processed,
            total=event.total,
            eta_seconds=event.eta_seconds,
            messages_per_second=event.messages_per_second,
            sequence=event.sequence,
            message=event.message,
            updated_at=event.updated_at,
        )
