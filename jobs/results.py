"""Saving analysed messages and findings, and summarising a finished task.

Messages are upserted on their unique key (account, folder, UIDVALIDITY, UID) and findings on
(task, folder, UIDVALIDITY, UID, ordinal), so saving the same batch twice (after a crash or a
retry) changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from jobs.documents import (
    Finding,
    MessageFields,
    ScannedMessage,
    ScanSummary,
    ScanTask,
    SenderCount,
    utcnow,
)

#: Senders listed in a task summary.
TOP_SENDERS = 10


@dataclass(frozen=True)
class AnalysedMessage:
    uid: int
    flags: tuple[str, ...]
    internal_date: datetime | None
    fields: MessageFields


def _message_fields(fields: MessageFields) -> dict[str, Any]:
    # JSON mode turns enums into plain strings; the only datetime is put back as a datetime,
    # so MongoDB stores a date and not its text.
    values: dict[str, Any] = fields.model_dump(mode="json")
    values["date"] = fields.date
    values["finding_count"] = len(fields.findings)
    return values


async def save_batch(
    task: ScanTask, folder: str, uidvalidity: int, messages: list[AnalysedMessage]
) -> None:
    """Upsert the messages of one batch and the findings this task recorded on them."""
    if not messages:
        return
    task_id = str(task.id)
    now = utcnow()

    message_ops = []
    finding_ops = []
    for message in messages:
        key = {
            "account_id": task.account_id,
            "folder": folder,
            "uidvalidity": uidvalidity,
            "uid": message.uid,
        }
        values = _message_fields(message.fields)
        values.update(
            user_id=task.user_id,
            flags=list(message.flags),
            internal_date=message.internal_date,
            updated_at=now,
        )
        message_ops.append(
            UpdateOne(key, {"$set": values, "$addToSet": {"task_ids": task_id}}, upsert=True)
        )
        for ordinal, finding in enumerate(message.fields.findings):
            finding_key = {
                "task_id": task_id,
                "folder": folder,
                "uidvalidity": uidvalidity,
                "uid": message.uid,
                "ordinal": ordinal,
            }
            finding_values = {
                "user_id": task.user_id,
                "account_id": task.account_id,
                "kind": finding.kind.value,
                "detail": finding.detail,
                "message_id": message.fields.message_id,
                "subject": message.fields.subject,
                "sender_address": message.fields.sender_address,
                "date": message.fields.date,
            }
            finding_ops.append(UpdateOne(finding_key, {"$set": finding_values}, upsert=True))

    await ScannedMessage.get_pymongo_collection().bulk_write(message_ops, ordered=False)
    if finding_ops:
        await Finding.get_pymongo_collection().bulk_write(finding_ops, ordered=False)


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
