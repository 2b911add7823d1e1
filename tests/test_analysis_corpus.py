"""Every message of the shared corpora analyses without an exception into sane fields."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import bson
import pytest

from jobs.analysis import analyse_headers, analyse_message
from jobs.documents import FindingKind, MessageFields

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CORPUS_FILES = sorted((CORPUS / "mailbox").glob("*.eml")) + sorted(
    (CORPUS / "tricky").glob("*.eml")
)


def test_corpus_is_present() -> None:
    assert len(list((CORPUS / "mailbox").glob("*.eml"))) == 3249
    assert len(list((CORPUS / "tricky").glob("*.eml"))) == 300


def assert_sane(fields: MessageFields, size: int) -> None:
    assert fields.size == size
    assert fields.recipients_count >= 0
    if fields.date is not None:
        assert fields.date.utcoffset() == timedelta(0)
    if fields.sender_address is not None:
        assert "@" in fields.sender_address
        assert fields.sender_address == fields.sender_address.lower()
    for attachment in fields.attachments:
        assert attachment.size >= 0
        assert attachment.content_type.count("/") == 1
    for finding in fields.findings:
        assert finding.detail
    if fields.defects:
        assert any(finding.kind is FindingKind.MALFORMED for finding in fields.findings)
    # Storable as BSON: raises on lone surrogates left over from undecodable bytes.
    bson.encode(fields.model_dump())


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_corpus_message_analyses(path: Path) -> None:
    raw = path.read_bytes()
    fields = analyse_message(raw)
    assert_sane(fields, len(raw))


@pytest.mark.parametrize("path", CORPUS_FILES[::25], ids=lambda path: path.name)
def test_corpus_headers_analyse(path: Path) -> None:
    raw = path.read_bytes()
    header_section = raw.split(b"\n\n", 1)[0]
    fields = analyse_headers(header_section, len(raw))
    assert_sane(fields, len(raw))
    assert fields.findings[-1].kind is FindingKind.OVERSIZED


def test_mailbox_corpus_fields_are_mostly_found() -> None:
    results = [analyse_message(path.read_bytes()) for path in sorted(CORPUS.glob("mailbox/*"))]
    with_sender = sum(fields.sender_address is not None for fields in results)
    with_date = sum(fields.date is not None for fields in results)
    with_subject = sum(fields.subject is not None for fields in results)
    assert with_sender > 0.98 * len(results)
    assert with_date > 0.98 * len(results)
    assert with_subject > 0.98 * len(results)
