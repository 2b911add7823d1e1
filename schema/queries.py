"""The Query type: task history, one task, accounts and the findings of a task."""

from __future__ import annotations

import strawberry

from jobs import accounts, queries
from jobs.errors import RequestError
from schema.admin import SystemHealth, resolve_system_health
from schema.context import Info
from schema.enums import FindingKind, ScanStatus
from schema.errors import graphql_error
from schema.pagination import FindingConnection, ScanTaskConnection
from schema.types import EmailAccount, ScanTask

#: Page sizes used when ``first`` is omitted or null.
HISTORY_PAGE_SIZE = 20
FINDINGS_PAGE_SIZE = 50


async def resolve_task_history(
    info: Info,
    first: int | None = HISTORY_PAGE_SIZE,
    after: str | None = None,
    status: list[ScanStatus] | None = None,
    account_id: strawberry.ID | None = None,
) -> ScanTaskConnection:
    context = info.context
    try:
        page = await queries.task_history(
            context.runtime.settings,
            context.require_user_id(),
            first=HISTORY_PAGE_SIZE if first is None else first,
            after=after,
            statuses=status,
            account_id=account_id,
        )
    except RequestError as exc:
        raise graphql_error(exc) from exc
    return ScanTaskConnection.from_page(page, after)


async def resolve_task(info: Info, id: strawberry.ID) -> ScanTask | None:
    task = await queries.get_task(info.context.require_user_id(), str(id))
    return ScanTask.from_document(task) if task is not None else None


async def resolve_accounts(info: Info) -> list[EmailAccount]:
    found = await accounts.list_accounts(info.context.require_user_id())
    return [EmailAccount.from_document(account) for account in found]


async def resolve_scan_findings(
    info: Info,
    task_id: strawberry.ID,
    first: int | None = FINDINGS_PAGE_SIZE,
    after: str | None = None,
    kind: FindingKind | None = None,
) -> FindingConnection:
    context = info.context
    try:
        page = await queries.scan_findings(
            context.runtime.settings,
            context.require_user_id(),
            str(task_id),
            first=FINDINGS_PAGE_SIZE if first is None else first,
            after=after,
            kind=kind,
        )
    except RequestError as exc:
        raise graphql_error(exc) from exc
    return FindingConnection.from_page(page, after)


@strawberry.type
class Query:
    task_history: ScanTaskConnection = strawberry.field(
        resolver=resolve_task_history, description="The user's scan tasks, newest first."
    )
    task: ScanTask | None = strawberry.field(
        resolver=resolve_task,
        description="One of the user's tasks; null when there is no such task.",
    )
    accounts: list[EmailAccount] = strawberry.field(
        resolver=resolve_accounts, description="The user's connected accounts, oldest first."
    )
    scan_findings: FindingConnection = strawberry.field(
        resolver=resolve_scan_findings,
        description="Findings of one of the user's tasks, newest first; NOT_FOUND error for "
        "an unknown task.",
    )
    system_health: SystemHealth = strawberry.field(
        resolver=resolve_system_health,
        description="Queue, worker and subscriber state; FORBIDDEN error for non-admins.",
    )
