"""Read-only queries behind the API: one task, task history and findings.

Lists are pages ordered newest first by ``_id`` (an ObjectId grows with its creation time).
A cursor is the URL-safe base64 text of the last id of a page, and the next page contains the
ids below it, so items inserted meanwhile never shift a page. Every query filters on the
user id, so another user's objects are never found.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from beanie import Document, PydanticObjectId, SortDirection

from jobs.documents import Finding, FindingKind, ScanStatus, ScanTask
from jobs.errors import InvalidInputError, NotFoundError, quoted
from jobs.lifecycle import parse_object_id
from jobs.settings import Settings

DocumentT = TypeVar("DocumentT", bound=Document)


@dataclass(frozen=True)
class Page(Generic[DocumentT]):
    """One page of a list, newest first."""

    items: list[DocumentT]
    #: True when older items follow the last one.
    has_next: bool

    def cursor(self, item: DocumentT) -> str:
        """Return the cursor that pages past ``item``."""
        return encode_cursor(str(item.id))


def encode_cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode()


def decode_cursor(cursor: str, *, object_id: bool = True) -> PydanticObjectId | str:
    """Return the id inside ``cursor``; raises InvalidInputError naming ``after`` if malformed.

    ``object_id`` is False for collections whose ``_id`` is a string key (findings).
    """
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    decoded: PydanticObjectId | str | None = parse_object_id(text) if object_id else text or None
    if decoded is None:
        raise InvalidInputError(
            "after",
            f"cursor {cursor!r} is not valid; pass the endCursor of a previous page or omit it",
        )
    return decoded


async def get_task(user_id: str, task_id: str) -> ScanTask | None:
    """Return the user's task, or None when the id is malformed, unknown or another user's."""
    object_id = parse_object_id(task_id)
    if object_id is None:
        return None
    return await ScanTask.find_one({"_id": object_id, "user_id": user_id})


async def task_history(
    settings: Settings,
    user_id: str,
    *,
    first: int,
    after: str | None,
    statuses: Sequence[ScanStatus] | None = None,
    account_id: str | None = None,
) -> Page[ScanTask]:
    """Return a page of the user's tasks, newest first, optionally filtered.

    Raises InvalidInputError when ``first`` is outside 1 to ``settings.max_page_size`` or
    ``after`` is not a cursor of this API.
    """
    query: dict[str, Any] = {"user_id": user_id}
    if statuses:
        query["status"] = {"$in": [status.value for status in statuses]}
    if account_id is not None:
        query["account_id"] = account_id
    return await _page(ScanTask, query, _page_size(settings, first), after)


async def scan_findings(
    settings: Settings,
    user_id: str,
    task_id: str,
    *,
    first: int,
    after: str | None,
    kind: FindingKind | None = None,
) -> Page[Finding]:
    """Return a page of one task's findings, newest first, optionally of one kind.

    Raises NotFoundError when the user has no such task, and InvalidInputError as
    :func:`task_history` does.
    """
    size = _page_size(settings, first)
    if await get_task(user_id, task_id) is None:
        raise NotFoundError(f"scan task {quoted(task_id)} not found")
    query: dict[str, Any] = {"task_id": task_id, "user_id": user_id}
    if kind is not None:
        query["kind"] = kind.value
    return await _page(Finding, query, size, after)


def _page_size(settings: Settings, first: int) -> int:
    if not 1 <= first <= settings.max_page_size:
        raise InvalidInputError(
            "first", f"first must be from 1 to {settings.max_page_size}, got {first}"
        )
    return first


async def _page(
    model: type[DocumentT], query: dict[str, Any], size: int, after: str | None
) -> Page[DocumentT]:
    if after is not None:
        string_ids = model is Finding
        query = {**query, "_id": {"$lt": decode_cursor(after, object_id=not string_ids)}}
    # Reading one extra item shows whether another page follows.
    items = (
        await model.find(query).sort([("_id", SortDirection.DESCENDING)]).limit(size + 1).to_list()
    )
    return Page(items=items[:size], has_next=len(items) > size)
