"""Header values as text: unfolded, 8-bit bytes decoded and RFC 2047 encoded words decoded.

The parser keeps every header value raw (see ``jobs.analysis.parsing``), with bytes outside
ASCII carried as surrogate escapes. :class:`HeaderReader` turns the few values the analysis
needs into text, and records each value it cannot decode as a defect and a MALFORMED finding
while keeping that value raw.
"""

from __future__ import annotations

import binascii
import re
from email.message import Message

from jobs.analysis import findings
from jobs.documents import FindingData

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")

#: An RFC 2047 encoded word. The encoded text may hold spaces, which some mailers leave in.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")

#: Charset labels whose Python codec of the same name rejects text that mail clients accept.
_CHARSET_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "ks_c_5601-1987": "cp949",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
}


class HeaderDecodeError(ValueError):
    """A header value cannot be decoded; the message names the reason."""


def unfold(value: str) -> str:
    return _LINE_BREAK.sub("", value)


def clean_text(text: str) -> str:
    """Return ``text`` with lone surrogates replaced by U+FFFD, so it can be stored as UTF-8."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def decode_8bit(value: str) -> str:
    """Decode the raw bytes of a header value as UTF-8 (RFC 6532).

    Raises HeaderDecodeError when the bytes are not UTF-8.
    """
    if value.isascii():
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Surrogates that stand for no byte come from a codec, not from the raw message.
        return clean_text(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderDecodeError("raw 8-bit bytes that are not UTF-8") from None


def decode_encoded_words(text: str) -> str:
    """Decode the RFC 2047 encoded words in ``text``.

    Whitespace between two encoded words is dropped, and adjacent words in one charset are
    decoded together, so a character split across two words survives. Raises
    HeaderDecodeError for an unknown charset, invalid base64 or bytes invalid in the charset.
    """
    if "=?" not in text:
        return text
    pieces: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if between and not (pending_charset is not None and between.isspace()):
            _flush(pieces, pending, pending_charset)
            pending_charset = None
            pieces.append(between)

        charset = _codec_name(match[1])
        if charset != pending_charset:
            _flush(pieces, pending, pending_charset)
            pending_charset = charset
        pending += _decode_word_bytes(match[2], match[3])
        position = match.end()

    _flush(pieces, pending, pending_charset)
    pieces.append(text[position:])
    return clean_text("".join(pieces))


def _codec_name(charset: str) -> str:
    # RFC 2231 lets an encoded word carry a language after the charset: "utf-8*en".
    name = charset.partition("*")[0].strip().lower()
    return _CHARSET_SUPERSETS.get(name, name)


def _decode_word_bytes(encoding: str, encoded: str) -> bytes:
    data = encoded.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = b"".join(data.split())
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error as exc:
        raise HeaderDecodeError(f"invalid base64 ({exc})") from None


def _flush(pieces: list[str], pending: bytearray, charset: str | None) -> None:
    if charset is None:
        return
    try:
        pieces.append(bytes(pending).decode(charset))
    except LookupError:
        raise HeaderDecodeError(f"unknown charset {charset!r}") from None
    except (UnicodeError, ValueError):
        raise HeaderDecodeError(f"bytes invalid in charset {charset!r}") from None
    finally:
        pending.clear()


class HeaderReader:
    """Read decoded header values of one message and collect the ones that fail to decode.

    A value that cannot be decoded is returned raw (unfolded, any 8-bit bytes read as UTF-8
    with replacement characters), and adds a line to :attr:`defects` and a MALFORMED finding
    to :attr:`findings`, once per label.
    """

    def __init__(self, message: Message) -> None:
        self.message = message
        self.defects: list[str] = []
        self.findings: list[FindingData] = []
        self._reported: set[str] = set()
        # Lower-cased name -> values in message order; Message.get scans every header.
        self._values: dict[str, list[str]] = {}
        for name, value in message.items():
            self._values.setdefault(name.lower(), []).append(str(value))

    def raw(self, name: str) -> str | None:
        """Return the first ``name`` header unfolded with its bytes decoded, or None if absent."""
        values = self._values.get(name.lower())
        if not values:
            return None
        return self.from_raw(f"{name} header", unfold(values[0]).strip())

    def raw_all(self, name: str) -> list[str]:
        values = self._values.get(name.lower(), [])
        return [self.from_raw(f"{name} header", unfold(value).strip()) for value in values]

    def text(self, name: str) -> str | None:
        """Return the first ``name`` header fully decoded, or None if absent."""
        value = self.raw(name)
        if value is None:
            return None
        return self.decode(f"{name} header", value)

    def decode(self, label: str, value: str) -> str:
        """Decode the encoded words of ``value``; on failure report ``label`` and keep it raw."""
        try:
            return decode_encoded_words(value)
        except HeaderDecodeError as exc:
            self.report(label, value, str(exc))
            return value

    def report(self, label: str, value: str, reason: str) -> None:
        if label in self._reported:
            return
        self._reported.add(label)
        self.defects.append(f"cannot decode {label}: {reason}")
        self.findings.append(findings.malformed_header(label, value, reason))

    def from_raw(self, label: str, value: str) -> str:
        """Decode the raw bytes of ``value`` as UTF-8; on failure report ``label``."""
        try:
            return decode_8bit(value)
        except HeaderDecodeError as exc:
            text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            self.report(label, text, str(exc))
            return text
