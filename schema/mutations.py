"""The Mutation type: connect and remove accounts, start, cancel and retry scans.

Expected failures come back as union members; anything else becomes an
INTERNAL_SERVER_ERROR GraphQL error (see ``schema.masking``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Annotated

import strawberry

from jobs import accounts, documents, fairness, lifecycle
from jobs.errors import (
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    QuotaExceededError,
    RequestError,
    ScanAlreadyRunningError,
)
from jobs.runtime import Runtime
from schema.context import Info
from schema.enums import ImapSecurity
from schema.errors import InvalidInput, InvalidState, NotFound, QuotaExceeded, ScanAlreadyRunning
from schema.types import EmailAccount, ScanTask

logger = logging.getLogger(__name__)


@strawberry.input(description="Where and how to log in to an IMAP mailbox.")
class ImapAccountInput:
    host: str
    port: int = 993
    security: ImapSecurity = ImapSecurity.SSL
    username: str
    password: str
    folders: list[str] = strawberry.field(default_factory=lambda: ["INBOX"])
    label: str | None = strawberry.field(
        default=None, description="At most 100 characters; defaults to username@host."
    )


@strawberry.type
class ConnectAccountSuccess:
    account: EmailAccount


@strawberry.type
class RemoveAccountSuccess:
    account_id: strawberry.ID


@strawberry.type
class StartScanSuccess:
    task: ScanTask


@strawberry.type
class CancelScanSuccess:
    task: ScanTask


ConnectAccountResult = Annotated[
    ConnectAccountSuccess | InvalidInput, strawberry.union("ConnectAccountResult")
]
RemoveAccountResult = Annotated[
    RemoveAccountSuccess | NotFound, strawberry.union("RemoveAccountResult")
]
# InvalidState is returned by retryScan only: a task that is not FAILED or CANCELLED.
StartScanResult = Annotated[
    StartScanSuccess | InvalidInput | NotFound | ScanAlreadyRunning | QuotaExceeded | InvalidState,
    strawberry.union("StartScanResult"),
]
CancelScanResult = Annotated[
    CancelScanSuccess | NotFound | InvalidState, strawberry.union("CancelScanResult")
]


def _log_rejection(operation: str, user_id: str, error: RequestError) -> None:
    logger.info("user %s %s rejected: %s %s", user_id, operation, error.code, error.message)


async def _start_result(
    operation: str, user_id: str, started: Awaitable[documents.ScanTask]
) -> StartScanResult:
    try:
        task = await started
    except RequestError as exc:
        _log_rejection(operation, user_id, exc)
        return _start_error(exc)
    return StartScanSuccess(task=ScanTask.from_document(task))


def _start_error(error: RequestError) -> StartScanResult:
    if isinstance(error, InvalidInputError):
        return InvalidInput.from_error(error)
    if isinstance(error, NotFoundError):
        return NotFound.from_error(error)
    if isinstance(error, ScanAlreadyRunningError):
        return ScanAlreadyRunning.from_error(error)
    if isinstance(error, QuotaExceededError):
        return QuotaExceeded.from_error(error)
    if isinstance(error, InvalidStateError):
        return InvalidState.from_error(error)
    raise error


async def _rate_limit(operation: str, rt: Runtime, user_id: str) -> QuotaExceeded | None:
    """Count one scan start; return QuotaExceeded when the user is over the limit."""
    try:
        await fairness.check_start_rate(rt, user_id)
    except QuotaExceededError as exc:
        _log_rejection(operation, user_id, exc)
        return QuotaExceeded.from_error(exc)
    return None


async def resolve_connect_imap_account(info: Info, input: ImapAccountInput) -> ConnectAccountResult:
    context = info.context
    user_id = context.require_user_id()
    try:
        account = await accounts.connect_imap_account(
            context.runtime,
            user_id,
            host=input.host,
            port=input.port,
            security=ImapSecurity(input.security),
            username=input.username,
            password=input.password,
            folders=input.folders,
            label=input.label,
        )
    except InvalidInputError as exc:
        _log_rejection("connectImapAccount", user_id, exc)
        return InvalidInput.from_error(exc)
    return ConnectAccountSuccess(account=EmailAccount.from_document(account))


async def resolve_remove_account(info: Info, id: strawberry.ID) -> RemoveAccountResult:
    context = info.context
    user_id = context.require_user_id()
    try:
        await accounts.remove_account(context.runtime, user_id, str(id))
    except NotFoundError as exc:
        _log_rejection("removeAccount", user_id, exc)
        return NotFound.from_error(exc)
    return RemoveAccountSuccess(account_id=id)


async def resolve_start_scan(
    info: Info, account_id: strawberry.ID, months: int = 1
) -> StartScanResult:
    context = info.context
    user_id = context.require_user_id()
    limited = await _rate_limit("startScan", context.runtime, user_id)
    if limited is not None:
        return limited
    started = lifecycle.start_scan(context.runtime, user_id, str(account_id), months)
    return await _start_result("startScan", user_id, started)


async def resolve_cancel_scan(info: Info, task_id: strawberry.ID) -> CancelScanResult:
    context = info.context
    user_id = context.require_user_id()
    try:
        task = await lifecycle.cancel_scan(context.runtime, user_id, str(task_id))
    except NotFoundError as exc:
        _log_rejection("cancelScan", user_id, exc)
        return NotFound.from_error(exc)
    except InvalidStateError as exc:
        _log_rejection("cancelScan", user_id, exc)
        return InvalidState.from_error(exc)
    return CancelScanSuccess(task=ScanTask.from_document(task))


async def resolve_retry_scan(info: Info, task_id: strawberry.ID) -> StartScanResult:
    context = info.context
    user_id = context.require_user_id()
    limited = await _rate_limit("retryScan", context.runtime, user_id)
    if limited is not None:
        return limited
    started = lifecycle.retry_scan(context.runtime, user_id, str(task_id))
    return await _start_result("retryScan", user_id, started)


@strawberry.type
class Mutation:
    connect_imap_account: ConnectAccountResult = strawberry.mutation(
        resolver=resolve_connect_imap_account,
        description="Store an IMAP account; the mail server is not contacted.",
    )
    remove_account: RemoveAccountResult = strawberry.mutation(
        resolver=resolve_remove_account,
        description="Cancel the account's scans, then delete it and its scanned messages; "
        "its task history stays.",
    )
    start_scan: StartScanResult = strawberry.mutation(
        resolver=resolve_start_scan,
        description="Queue a scan of the last `months` months (1 to 240) and return at once.",
    )
    cancel_scan: CancelScanResult = strawberry.mutation(
        resolver=resolve_cancel_scan,
        description="Ask a queued or running scan to stop; it ends CANCELLED.",
    )
    retry_scan: StartScanResult = strawberry.mutation(
        resolver=resolve_retry_scan,
        description="Queue a FAILED or CANCELLED scan again; it resumes where it stopped.",
    )
