"""A message over MAILSCAN_MAX_MESSAGE_BYTES is recorded from its headers with an OVERSIZED
finding, and the scan goes on. Real Dovecot over IMAPS and a real worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.documents import Finding, ScannedMessage, ScanStatus
from jobs.runtime import Runtime
from tests.scan_harness import (
    Workers,
    connect,
    fill_mailbox,
    make_message,
    rt,
    start,
    wait_for_status,
    workers,
)

pytestmark = pytest.mark.integration

__all__ = ["rt", "workers"]  # fixtures used by the tests below

LIMIT_BYTES = 4096


async def test_oversized_message_recorded_from_headers(
    rt: Runtime, workers: Workers, mail_user: Any
) -> None:
    user = mail_user()
    fill_mailbox(user, 5)
    big = make_message(99, size=50_000)
    user.deliver(big, internal_date=datetime.now(UTC) - timedelta(days=2))
    account_id = await connect(rt, user)
    workers.start(MAILSCAN_MAX_MESSAGE_BYTES=str(LIMIT_BYTES))

    task_id = await start(rt, user.name, account_id)
    task = await wait_for_status(task_id, ScanStatus.COMPLETED)

    assert task.summary is not None
    assert task.summary.messages == 6
    assert task.summary.findings == {"OVERSIZED": 1}
    oversized = await ScannedMessage.find_one({"account_id": account_id, "subject": "Message 99"})
    assert oversized is not None
    # RFC822.SIZE counts CRLF line endings, as IMAP serves the message.
    size = len(big.replace(b"\n", b"\r\n"))
    assert size > LIMIT_BYTES
    assert oversized.size == size
    assert oversized.message_id == "<m99@example.org>"
    assert oversized.sender_address == "sender1@example.org"
    assert oversized.attachments == []
    finding = await Finding.find_one({"task_id": task_id})
    assert finding is not None
    assert finding.kind == "OVERSIZED"
    assert f"message of {size} bytes is over the size limit" in finding.detail
