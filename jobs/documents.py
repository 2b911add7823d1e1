"""Beanie documents: accounts, scan tasks, scanned messages and findings.

Datetimes are stored as UTC; every validator below turns naive values read back from the
database into timezone-aware UTC ones, because MongoDB drops the offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from beanie import Document
from pydantic import AfterValidator, BaseModel, Field
from pymongo import ASCENDING, DESCENDING, IndexModel


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UTCDateTime = Annotated[datetime, AfterValidator(_as_utc)]


def utcnow() -> datetime:
    # MongoDB keeps milliseconds; truncating here makes a saved value equal to the value read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class ScanStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATUSES = frozenset({ScanStatus.COMPLETED, ScanStatus.FAILED, ScanStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({ScanStatus.QUEUED, ScanStatus.RUNNING, ScanStatus.CANCELLING})


class ScanPhase(StrEnum):
    QUEUED = "queued"
    CONNECTING = "connecting"
    LISTING = "listing"
    FETCHING = "fetching"
    ANALYSING = "analysing"
    SAVING = "saving"
    DONE = "done"


class ImapSecurity(StrEnum):
    SSL = "SSL"
    STARTTLS = "STARTTLS"
    NONE = "NONE"


class FindingKind(StrEnum):
    DANGEROUS_ATTACHMENT = "DANGEROUS_ATTACHMENT"
    DISPLAY_NAME_SPOOF = "DISPLAY_NAME_SPOOF"
    LINK_MISMATCH = "LINK_MISMATCH"
    AUTH_FAILURE = "AUTH_FAILURE"
    REPLY_TO_MISMATCH = "REPLY_TO_MISMATCH"
    MALFORMED = "MALFORMED"
    OVERSIZED = "OVERSIZED"


class EmailAccount(Document):
    """An IMAP mailbox a user connected. The password is stored only encrypted."""

    user_id: str
    label: str
    host: str
    port: int
    security: ImapSecurity
    username: str
    #: Fernet token of the password (see ``jobs.secrets``); never returned by the API.
    password_encrypted: str
    folders: list[str] = Field(default_factory=lambda: ["INBOX"])
    created_at: UTCDateTime = Field(default_factory=utcnow)

    class Settings:
        name = "accounts"
        indexes = [IndexModel([("user_id", ASCENDING), ("created_at", ASCENDING)])]


class FolderCheckpoint(BaseModel):
    """Scan position in one folder: every UID up to ``last_uid`` under ``uidvalidity`` is saved."""

    uidvalidity: int
    last_uid: int = 0
    saved: int = 0


class TaskError(BaseModel):
    code: str
    message: str
    retryable: bool = False


class SenderCount(BaseModel):
    address: str
    messages: int


class ScanSummary(BaseModel):
    messages: int = 0
    newsletters: int = 0
    flagged: int = 0
    findings: dict[str, int] = Field(default_factory=dict)
    top_senders: list[SenderCount] = Field(default_factory=list)


class ScanTask(Document):
    """One scan of one account. The actor reads everything it needs from this document."""

    user_id: str
    account_id: str
    #: Account label when the task was created, kept after the account is removed.
    account_label: str = ""
    months: int
    #: Messages with an INTERNALDATE on or after this instant are scanned.
    since: UTCDateTime
    status: ScanStatus = ScanStatus.QUEUED
    phase: ScanPhase = ScanPhase.QUEUED
    percent: float = 0.0
    processed: int = 0
    total: int = 0
    attempts: int = 0
    #: Claims allowed before the task ends FAILED; ``retryScan`` raises it.
    attempt_limit: int = 5
    created_at: UTCDateTime = Field(default_factory=utcnow)
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None
    next_retry_at: UTCDateTime | None = None
    error: TaskError | None = None
    summary: ScanSummary | None = None
    #: Folder name -> position reached; written after each saved batch.
    checkpoints: dict[str, FolderCheckpoint] = Field(default_factory=dict)
    cancel_requested: bool = False
    #: Worker that holds the lease, and when the lease runs out.
    lease_owner: str | None = None
    lease_expires_at: UTCDateTime | None = None
    #: Id of the Dramatiq message that carries this task, for diagnostics.
    message_id: str | None = None
    #: Key of that message in the Redis broker's message hash, and when it was sent; the
    #: sweeper sends the task again when the message is gone while the task is QUEUED.
    broker_message_id: str | None = None
    queued_at: UTCDateTime | None = None
    #: When a sweeper last sent this task again after its lease expired.
    rescued_at: UTCDateTime | None = None

    class Settings:
        name = "scan_tasks"
        indexes = [
            IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)]),
            IndexModel([("user_id", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)]),
            IndexModel([("account_id", ASCENDING), ("status", ASCENDING)]),
            IndexModel([("status", ASCENDING), ("lease_expires_at", ASCENDING)]),
        ]


class Attachment(BaseModel):
    name: str | None = None
    content_type: str
    size: int


class Unsubscribe(BaseModel):
    mailto: str | None = None
    https: str | None = None
    one_click: bool = False


class AuthenticationResults(BaseModel):
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None


class FindingData(BaseModel):
    kind: FindingKind
    #: Human-readable explanation naming the value that triggered the finding.
    detail: str


class MessageFields(BaseModel):
    """Fields that analysing one raw message produces (see ``jobs.analysis``)."""

    message_id: str | None = None
    sender_address: str | None = None
    sender_name: str | None = None
    recipients_count: int = 0
    subject: str | None = None
    date: UTCDateTime | None = None
    size: int = 0
    attachments: list[Attachment] = Field(default_factory=list)
    unsubscribe: Unsubscribe | None = None
    auth: AuthenticationResults = Field(default_factory=AuthenticationResults)
    defects: list[str] = Field(default_factory=list)
    findings: list[FindingData] = Field(default_factory=list)


def message_key(account_id: str, folder: str, uidvalidity: int, uid: int) -> str:
    """Return the ``_id`` of a scanned message: its unique key as one sortable string.

    The numbers are zero-padded and the folder name comes last, so the key is unique for any
    folder name and sorts by UID within a folder.
    """
    return f"{account_id}:{uidvalidity:010d}:{uid:010d}:{folder}"


def finding_key(task_id: str, folder: str, uidvalidity: int, uid: int, ordinal: int) -> str:
    """Return the ``_id`` of a finding; ids of one task sort by message UID, then ordinal."""
    return f"{task_id}:{uidvalidity:010d}:{uid:010d}:{ordinal:03d}:{folder}"


class ScannedMessage(MessageFields, Document):
    """One analysed message, unique per (account, folder, UIDVALIDITY, UID).

    Its ``_id`` is :func:`message_key`, so saving the message again is an upsert on the
    primary key, which every MongoDB API server looks up by index.
    """

    id: str | None = None  # type: ignore[assignment]
    user_id: str
    account_id: str
    folder: str
    uidvalidity: int
    uid: int
    flags: list[str] = Field(default_factory=list)
    internal_date: UTCDateTime | None = None
    finding_count: int = 0
    #: Every task that recorded this message.
    task_ids: list[str] = Field(default_factory=list)
    updated_at: UTCDateTime = Field(default_factory=utcnow)

    class Settings:
        name = "scanned_messages"
        indexes = [
            IndexModel(
                [
                    ("account_id", ASCENDING),
                    ("folder", ASCENDING),
                    ("uidvalidity", ASCENDING),
                    ("uid", ASCENDING),
                ],
                unique=True,
                name="message_key",
            ),
            IndexModel([("task_ids", ASCENDING)]),
        ]


class Finding(Document):
    """One finding on one message, as recorded by one task; ``scanFindings`` pages these.

    Its ``_id`` is :func:`finding_key`, so a page sorted by ``_id`` lists a task's findings
    by message and a retried batch upserts the same documents.
    """

    id: str | None = None  # type: ignore[assignment]
    task_id: str
    user_id: str
    account_id: str
    folder: str
    uidvalidity: int
    uid: int
    #: Position of this finding among the message's findings, part of the unique key.
    ordinal: int
    kind: FindingKind
    detail: str
    message_id: str | None = None
    subject: str | None = None
    sender_address: str | None = None
    date: UTCDateTime | None = None

    class Settings:
        name = "findings"
        indexes = [
            IndexModel(
                [
                    ("task_id", ASCENDING),
                    ("folder", ASCENDING),
                    ("uidvalidity", ASCENDING),
                    ("uid", ASCENDING),
                    ("ordinal", ASCENDING),
                ],
                unique=True,
                name="finding_key",
            ),
            IndexModel([("task_id", ASCENDING), ("kind", ASCENDING), ("_id", DESCENDING)]),
        ]


class User(Document):
    """A person who signed in with Google; created on the first sign-in."""

    #: The ``sub`` claim of the Google ID token: Google's stable id of the account.
    subject: str
    email: str | None = None
    name: str | None = None
    created_at: UTCDateTime = Field(default_factory=utcnow)

    class Settings:
        name = "users"
        indexes = [IndexModel([("subject", ASCENDING)], unique=True, name="subject")]


DOCUMENT_MODELS: list[type[Document]] = [EmailAccount, ScanTask, ScannedMessage, Finding, User]
