"""Low-level IMAP wire helpers: response reading, tags, sequence sets and mailbox names.

imaplib runs greeting, STARTTLS, LOGIN, EXAMINE and LOGOUT. SEARCH and FETCH go through
:class:`CommandPipe`, which writes to the same socket and reads from imaplib's buffered file
directly. imaplib matches every response line against several regular expressions and
keeps untagged data in a dict. The pipe only splits lines and literals, and that is what
makes large FETCH batches cheap.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from jobs.errors import TransientScanError
from jobs.imap.errors import Endpoint, ResponseError

#: Maximum length of a response line, in bytes. By estimate, a UID SEARCH result of about
#: 7 million UIDs fits, and a broken server cannot make the client buffer without bound.
MAX_LINE_BYTES = 64 * 1024 * 1024

_LITERAL_SUFFIX = re.compile(rb"\{(\d+)\}\r?\n\Z")

#: One response as read from the wire: text, literal, text, literal, ..., text.
#: Even indices contain text without the ``{n}`` markers and line ends, odd ones literals.
Segments = list[bytes]


class Transport(Protocol):
    """The part of ``imaplib.IMAP4`` that :class:`CommandPipe` uses."""

    def send(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class Completion:
    """Tagged status response of one command."""

    status: str  # OK, NO or BAD
    text: str


class ResponseReader:
    """Reads whole responses, literals included, from a buffered binary stream."""

    def __init__(self, stream: BinaryIO, *, max_literal_bytes: int) -> None:
        self._stream = stream
        self._max_literal_bytes = max_literal_bytes

    def read(self) -> Segments:
        """Read one response; raise EOFError if the server closed the connection."""
        segments: Segments = []
        while True:
            line = self._stream.readline(MAX_LINE_BYTES)
            if not line.endswith(b"\n"):
                if len(line) >= MAX_LINE_BYTES:
                    raise ResponseError(f"response line longer than {MAX_LINE_BYTES} bytes")
                raise EOFError("connection closed in the middle of a response")
            if line.endswith(b"}\r\n") or line.endswith(b"}\n"):
                match = _LITERAL_SUFFIX.search(line)
                if match is not None:
                    segments.append(line[: match.start()])
                    segments.append(self._read_literal(int(match.group(1))))
                    continue
            segments.append(line.rstrip(b"\r\n"))
            return segments

    def _read_literal(self, size: int) -> bytes:
        if size > self._max_literal_bytes:
            raise ResponseError(
                f"literal of {size} bytes exceeds the limit of {self._max_literal_bytes}"
            )
        data = self._stream.read(size)
        if len(data) != size:
            raise EOFError("connection closed in the middle of a literal")
        return data


class CommandPipe:
    """Sends tagged commands and collects their untagged responses and completions.

    Several commands may be in flight at once (pipelining): :meth:`run` sends them all
    before reading, and returns when every one of them is complete.
    """

    def __init__(self, transport: Transport, endpoint: Endpoint) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._counter = 0

    def run(
        self, commands: Sequence[bytes], reader: ResponseReader
    ) -> tuple[list[Segments], list[Completion]]:
        """Send ``commands`` and read until all are complete.

        Returns the untagged responses in arrival order and one completion per command.
        Raises TransientScanError on BYE and EOFError when the connection closes early.
        """
        tags = [self._send(command) for command in commands]
        pending = {tag: index for index, tag in enumerate(tags)}
        completions: list[Completion | None] = [None] * len(tags)
        untagged: list[Segments] = []
        while pending:
            response = reader.read()
            head = response[0]
            if head.startswith(b"* "):
                if head[2:5].upper() == b"BYE":
                    raise self._bye(head)
                untagged.append(response)
                continue
            tag, _, rest = head.partition(b" ")
            index = pending.pop(tag, None)
            if index is None:
                raise ResponseError(f"unexpected response {_preview(head)!r}")
            status, _, text = rest.partition(b" ")
            completions[index] = Completion(status.decode("ascii", "replace").upper(), _text(text))
        return untagged, [completion for completion in completions if completion is not None]

    def _send(self, command: bytes) -> bytes:
        self._counter += 1
        # imaplib's own tags are upper-case letters and digits, so these never collide.
        tag = b"ms%d" % self._counter
        self._transport.send(tag + b" " + command + b"\r\n")
        return tag

    def _bye(self, head: bytes) -> TransientScanError:
        return TransientScanError(
            "SERVER_UNAVAILABLE",
            f"IMAP server {self._endpoint} closed the session ({_text(head[6:])}); "
            "the scan will be retried later.",
        )


def sequence_set(uids: Iterable[int]) -> bytes:
    """Format UIDs as an IMAP sequence set, joining consecutive runs: ``1:3,7,9:10``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("a sequence set needs at least one UID")
    parts: list[bytes] = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        parts.append(_range(start, previous))
        start = previous = uid
    parts.append(_range(start, previous))
    return b",".join(parts)


def _range(start: int, end: int) -> bytes:
    if start == end:
        return b"%d" % start
    return b"%d:%d" % (start, end)


def quote_mailbox(name: str) -> str:
    """Encode a folder name in modified UTF-7 (RFC 3501 section 5.1.3) as a quoted string."""
    encoded = encode_modified_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_modified_utf7(name: str) -> str:
    parts: list[str] = []
    pending: list[str] = []
    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            _flush_utf7(pending, parts)
            parts.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    _flush_utf7(pending, parts)
    return "".join(parts)


def _flush_utf7(pending: list[str], parts: list[str]) -> None:
    if not pending:
        return
    utf16 = "".join(pending).encode("utf-16-be")
    encoded = base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",")
    parts.append(f"&{encoded}-")
    pending.clear()


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _preview(line: bytes) -> bytes:
    return line[:80]
