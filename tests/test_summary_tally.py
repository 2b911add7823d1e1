"""The summary counted while a scan saves its batches. The end-to-end corpus scan checks it
against the summary counted from the database."""

from __future__ import annotations

from jobs.documents import FindingData, FindingKind, MessageFields, Unsubscribe
from jobs.results import TOP_SENDERS, AnalysedMessage
from jobs.tally import SummaryTally


def message(
    uid: int,
    sender: str | None,
    kinds: tuple[FindingKind, ...] = (),
    newsletter: bool = False,
) -> AnalysedMessage:
    fields = MessageFields(
        sender_address=sender,
        unsubscribe=Unsubscribe(mailto="leave@example.org") if newsletter else None,
        findings=[FindingData(kind=kind, detail="test") for kind in kinds],
    )
    return AnalysedMessage(uid=uid, flags=(), internal_date=None, fields=fields)


def test_summary_counts_by_kind() -> None:
    tally = SummaryTally()
    tally.add(
        [
            message(1, "a@example.org", (FindingKind.MALFORMED, FindingKind.MALFORMED)),
            message(2, "b@example.org", newsletter=True),
        ]
    )
    tally.add([message(3, None, (FindingKind.LINK_MISMATCH,), newsletter=True)])

    summary = tally.summary()

    assert summary.messages == 3
    assert summary.newsletters == 2
    assert summary.flagged == 2
    assert summary.findings == {"MALFORMED": 2, "LINK_MISMATCH": 1}


def test_top_senders_by_count_then_address() -> None:
    tally = SummaryTally()
    batch = [message(1, "zed@example.org"), message(2, "zed@example.org")]
    batch += [message(3, "bob@example.org"), message(4, "amy@example.org"), message(5, None)]
    tally.add(batch)

    ranked = [(row.address, row.messages) for row in tally.summary().top_senders]

    assert ranked == [("zed@example.org", 2), ("amy@example.org", 1), ("bob@example.org", 1)]


def test_top_senders_cut_at_limit() -> None:
    tally = SummaryTally()
    tally.add(message(uid, f"sender{uid:02d}@example.org") for uid in range(TOP_SENDERS + 5))

    senders = tally.summary().top_senders

    assert len(senders) == TOP_SENDERS
    assert senders[0].address == "sender00@example.org"


def test_summary_of_empty_tally() -> None:
    summary = SummaryTally().summary()

    assert (summary.messages, summary.flagged, summary.findings, summary.top_senders) == (
        0,
        0,
        {},
        [],
    )
