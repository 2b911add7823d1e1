"""Mailboxes for the benchmarks: the shared corpus, read in place, and copies of it with new
Message-IDs for mailboxes larger than the corpus."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

#: Corpus of 3,249 real messages shared with the tests; read in place, never copied here.
CORPUS_DIR = Path("/work/shared/corpus/mailbox")

_MESSAGE_ID = re.compile(
    rb"^Message-ID:[^\r\n]*(\r?\n[ \t][^\r\n]*)*", re.IGNORECASE | re.MULTILINE
)


@cache
def corpus() -> tuple[bytes, ...]:
    """Read every corpus message, in file-name order (cached)."""
    files = sorted(path for path in CORPUS_DIR.iterdir() if path.is_file())
    if not files:
        raise FileNotFoundError(f"no messages under {CORPUS_DIR}")
    return tuple(path.read_bytes() for path in files)


def with_new_message_id(raw: bytes) -> bytes:
    """``raw`` with a fresh Message-ID header (added at the top when it had none)."""
    header = f"Message-ID: <{uuid.uuid4().hex}@bench.mailscan.test>".encode()
    replaced, count = _MESSAGE_ID.subn(header, raw, count=1)
    return replaced if count else header + b"\r\n" + raw


def messages(count: int) -> Iterator[tuple[bytes, datetime]]:
    """``count`` messages dated within the last ten days (inside a one-month scan window).

    The first pass over the corpus yields it unchanged; later passes repeat it with new
    Message-IDs.
    """
    source = corpus()
    now = datetime.now(UTC)
    step = timedelta(days=10) / max(count, 1)
    for index in range(count):
        raw = source[index % len(source)]
        if index >= len(source):
            raw = with_new_message_id(raw)
        yield raw, now - timedelta(days=10) + step * index
