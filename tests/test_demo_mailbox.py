"""The demo mailbox generator: deterministic, spread over the months, every finding kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs.analysis import analyse_message
from jobs.documents import FindingKind
from scripts.demo_mailbox import generate_demo_messages

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_demo_messages_show_every_finding_kind() -> None:
    results = [analyse_message(raw) for raw, _ in generate_demo_messages(now=NOW)]
    kinds = {finding.kind for fields in results for finding in fields.findings}
    assert kinds == set(FindingKind) - {FindingKind.OVERSIZED}


def test_demo_messages_are_mostly_clean() -> None:
    results = [analyse_message(raw) for raw, _ in generate_demo_messages(now=NOW)]
    flagged = sum(bool(fields.findings) for fields in results)
    assert 0.05 * len(results) < flagged < 0.25 * len(results)


def test_demo_messages_include_newsletters_and_attachments() -> None:
    results = [analyse_message(raw) for raw, _ in generate_demo_messages(now=NOW)]
    unsubscribes = [fields.unsubscribe for fields in results if fields.unsubscribe is not None]
    assert any(unsubscribe.one_click for unsubscribe in unsubscribes)
    assert any(not unsubscribe.one_click for unsubscribe in unsubscribes)
    assert any(fields.attachments for fields in results)
    assert any(fields.auth.dmarc == "pass" for fields in results)


def test_demo_dates_spread_over_months() -> None:
    dates = [internal_date for _, internal_date in generate_demo_messages(months=3, now=NOW)]
    assert len(dates) == 300
    assert dates == sorted(dates)
    assert all(date.tzinfo is UTC for date in dates)
    assert NOW - timedelta(days=92) < dates[0] < NOW - timedelta(days=80)
    assert NOW - timedelta(days=10) < dates[-1] <= NOW


def test_demo_date_header_precedes_internal_date() -> None:
    for raw, internal_date in generate_demo_messages(count=50, now=NOW):
        fields = analyse_message(raw)
        if fields.date is not None:
            assert internal_date - timedelta(minutes=11) < fields.date <= internal_date


def test_demo_messages_deterministic_for_seed() -> None:
    first = list(generate_demo_messages(count=40, seed=3, now=NOW))
    second = list(generate_demo_messages(count=40, seed=3, now=NOW))
    other = list(generate_demo_messages(count=40, seed=4, now=NOW))
    assert first == second
    assert first != other


def test_demo_count_respected() -> None:
    assert list(generate_demo_messages(count=0, now=NOW)) == []
    assert len(list(generate_demo_messages(count=7, now=NOW))) == 7
