"""Saving analysed messages and findings, and summarising a finished task.

A message's ``_id`` is its unique key (account, folder, UIDVALIDITY, UID) and a finding's is
(task, folder, UIDVALIDITY, UID, ordinal), so saving the same batch twice (after a crash or a
retry) changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError

from jobs.documents import (
    Finding,
    MessageFields,
    ScannedMessage,
    ScanSummary,
    ScanTask,
    SenderCount,
    finding_key,
    message_key,
    utcnow,
)

#: Senders listed in a task summary.
TOP_SENDERS = 10
#: Write error code of a duplicate key.
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class AnalysedMessage:
    uid: int
    flags: tuple[str, ...]
    internal_date: datetime | None
    fields: MessageFields


def _duplicates(exc: BulkWriteError) -> list[int]:
    """Return the positions of the documents rejected as duplicates; re-raise other errors."""
    errors = exc.details.get("writeErrors", [])
    if any(error.get("code") != DUPLICATE_KEY for error in errors):
        raise exc
    return [int(error["index"]) for error in errors]


async def _insert_new(collection: Any, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert ``documents`` and return those already present (same ``_id``).

    Inserting and sorting out duplicates afterwards costs one command per batch. An upsert
    per document was about 30 times slower on FerretDB 1.24 (measured on PostgreSQL).
    """
    if not documents:
        return []
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        return [documents[index] for index in _duplicates(exc)]
    return []


def _message_document(
    task: ScanTask, folder: str, uidvalidity: int, message: AnalysedMessage, now: datetime
) -> dict[str, Any]:
    # JSON mode turns enums into plain strings; the only datetime is put back as a datetime,
    # so MongoDB stores a date and not its text.
    document: dict[str, Any] = message.fields.model_dump(mode="json")
    document.update(
        _id=message_key(task.account_id, folder, uidvalidity, message.uid),
        date=message.fields.date,
        finding_count=len(message.fields.findings),
        user_id=task.user_id,
        account_id=task.account_id,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=message.uid,
        flags=list(message.flags),
        internal_date=message.internal_date,
        task_ids=[str(task.id)],
        updated_at=now,
    )
    return document


def _finding_documents(
    task: ScanTask, folder: str, uidvalidity: int, message: AnalysedMessage
) -> list[dict[str, Any]]:
    task_id = str(task.id)
    fields = message.fields
    return [
        {
            "_id": finding_key(task_id, folder, uidvalidity, message.uid, ordinal),
            "task_id": task_id,
            "user_id": task.user_id,
            "account_id": task.account_id,
            "folder": folder,
            "uidvalidity": uidvalidity,
            "uid": message.uid,
            "ordinal": ordinal,
            "kind": finding.kind.value,
            "detail": finding.detail,
            "message_id": fields.message_id,
            "subject": fields.subject,
            "sender_address": fields.sender_address,
            "date": fields.date,
        }
        for ordinal, finding in enumerate(fields.findings)
    ]


async def _mark_rescanned(task: ScanTask, existing: list[dict[str, Any]], now: datetime) -> None:
    """Add the task to messages saved before and refresh their flags.

    NOTE: the analysed fields of a message saved before are kept from its first scan, because
    under one UID and UIDVALIDITY IMAP never changes a message's bytes, only its flags
    (RFC 3501). The task's own findings are always written.
    """
    by_flags: dict[tuple[str, ...], list[str]] = {}
    for document in existing:
        by_flags.setdefault(tuple(document["flags"]), []).append(document["_id"])

    # NOTE: FerretDB 1.24 on SQLite (make run) reads the whole collection for each of these
    # updates, about 13 s over 20,000 saved messages, so large rescans there crawl. MongoDB
    # finds the ids by index.
    collection = ScannedMessage.get_pymongo_collection()
    for flags, ids in by_flags.items():
        await collection.update_many(
            {"_id": {"$in": ids}},
            {
                "$addToSet": {"task_ids": str(task.id)},
                "$set": {"flags": list(flags), "updated_at": now},
            },
        )


async def save_batch(
    task: ScanTask, folder: str, uidvalidity: int, messages: list[AnalysedMessage]
) -> None:
    """Save the messages of one batch and the findings this task recorded on them.

    New messages and findings are inserted with one command each. Documents that exist
    already (a rescan, or a batch saved before a crash) are recognised by their ``_id``.
    """
    if not messages:
        return
    now = utcnow()
    documents = [_message_document(task, folder, uidvalidity, item, now) for item in messages]
    findings = [
        document
        for message in messages
        for document in _finding_documents(task, folder, uidvalidity, message)
    ]

    existing = await _insert_new(ScannedMessage.get_pymongo_collection(), documents)
    if existing:
        await _mark_rescanned(task, existing, now)
    # A finding present already is the same finding of the same task, saved before a retry.
    await _insert_new(Finding.get_pymongo_collection(), findings)


async def summarise(task: ScanTask) -> ScanSummary:
    """Count what this task recorded, from the saved documents (exact after any retry)."""
    task_id = str(task.id)
    messages = ScannedMessage.get_pymongo_collection()
    findings = Finding.get_pymongo_collection()

    total = await messages.count_documents({"task_ids": task_id})
    newsletters = await messages.count_documents(
        {"task_ids": task_id, "unsubscribe": {"$ne": None}}
    )
    flagged = await messages.count_documents({"task_ids": task_id, "finding_count": {"$gt": 0}})

    by_kind: Counter[str] = Counter()
    async for row in await findings.aggregate(
        [{"$match": {"task_id": task_id}}, {"$group": {"_id": "$kind", "count": {"$sum": 1}}}]
    ):
        by_kind[str(row["_id"])] = int(row["count"])

    senders = []
    async for row in await messages.aggregate(
        [
            {"$match": {"task_ids": task_id, "sender_address": {"$ne": None}}},
            {"$group": {"_id": "$sender_address", "messages": {"$sum": 1}}},
            {"$sort": {"messages": -1, "_id": 1}},
            {"$limit": TOP_SENDERS},
        ]
    ):
        senders.append(SenderCount(address=str(row["_id"]), messages=int(row["messages"])))

    return ScanSummary(
        messages=total,
        newsletters=newsletters,
        flagged=flagged,
        findings=dict(by_kind),
        top_senders=senders,
    )
