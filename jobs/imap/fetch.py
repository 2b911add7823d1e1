"""Parsing of untagged FETCH responses (RFC 3501 section 7.4.2) into message records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TypeAlias

from jobs.imap.errors import ResponseError
from jobs.imap.protocol import Segments

#: A parsed data item value: atom or number (str), quoted string or literal (bytes),
#: NIL (None) or a parenthesized list.
FetchValue: TypeAlias = "str | bytes | list[FetchValue] | None"

#: Data items of each message by UID, merged from all FETCH responses that carry a UID.
FetchRecords: TypeAlias = dict[int, dict[str, FetchValue]]

_FETCH_HEAD = re.compile(rb"\* (\d+) FETCH ", re.IGNORECASE)

# The alternatives are tried in order at each position. An atom may carry a section in
# brackets, which can contain spaces and parentheses (BODY[HEADER.FIELDS (FROM)]), and a
# partial range (BODY[]<0>).
_TOKEN = re.compile(
    rb"""[ ]*(?:
        (?P<open>\()
      | (?P<close>\))
      | "(?P<quoted>(?:[^"\\]|\\.)*)"
      | (?P<atom>[^ ()"\[\]{]+(?:\[[^\]]*\])?(?:<[0-9.]+>)?)
      | (?P<invalid>[^ ])
    )""",
    re.VERBOSE | re.DOTALL,
)
# Fast path: one match per data item whose value is flat (number, atom, quoted string
# without escapes, list of atoms, or a literal that follows the segment). Servers normally
# send such values for the items this client requests, and anything else falls back to the
# tokenizer.
_FLAT_ITEM = re.compile(
    rb"""[ ]?(?P<name>[A-Za-z0-9.]+(?:\[[^\]]*\])?(?:<[0-9]+>)?)[ ](?:
        "(?P<quoted>[^"\\]*)"
      | \((?P<list>[^()"{]*)\)
      | (?P<atom>[^ ()"{\[\]]+)
      | (?P<literal>\Z)
    )""",
    re.VERBOSE,
)
_QUOTED_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


class _Paren(Enum):
    OPEN = "("
    CLOSE = ")"


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message as returned by :meth:`jobs.imap.ImapSession.fetch`."""

    uid: int
    flags: tuple[str, ...]
    #: INTERNALDATE, timezone-aware in UTC.
    internal_date: datetime
    #: RFC822.SIZE in bytes, as reported by the server.
    size: int
    #: The full message, or only its header block (blank line included) when header_only.
    #: A header block longer than the fetch limit is cut at the limit.
    raw: bytes
    #: True when the message was larger than the fetch limit and only its header was loaded.
    header_only: bool


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """One untagged ``* n FETCH (...)`` response."""

    sequence_number: int
    #: Data items by upper-cased name (``UID``, ``FLAGS``, ``BODY[]``, ...).
    items: dict[str, FetchValue]


def merge_fetch_responses(
    untagged: list[Segments], records: FetchRecords, requested: set[int]
) -> None:
    """Merge FETCH data items into ``records`` by UID, whatever order they arrive in.

    FETCH responses without a UID (unsolicited flag updates) and for UIDs outside
    ``requested`` are ignored, as are other untagged responses (EXISTS, EXPUNGE, ...).
    Raises ResponseError for a malformed FETCH response.
    """
    for response in untagged:
        parsed = parse_fetch_response(response)
        if parsed is None or "UID" not in parsed.items:
            continue
        uid = parse_number(parsed.items["UID"], "UID")
        if uid in requested:
            records.setdefault(uid, {}).update(parsed.items)


def build_messages(records: FetchRecords, max_message_bytes: int) -> list[FetchedMessage]:
    """Assemble messages in ascending UID order, skipping those whose content is missing.

    A message larger than ``max_message_bytes`` needs ``BODY[HEADER]<0>``, any other
    ``BODY[]``. A missing one means the message was expunged between the two FETCH rounds.
    """
    messages = []
    for uid in sorted(records):
        message = _build_message(uid, records[uid], max_message_bytes)
        if message is not None:
            messages.append(message)
    return messages


def message_size(record: dict[str, FetchValue]) -> int:
    return parse_number(record.get("RFC822.SIZE"), "RFC822.SIZE")


def _build_message(
    uid: int, record: dict[str, FetchValue], max_message_bytes: int
) -> FetchedMessage | None:
    size = message_size(record)
    header_only = size > max_message_bytes
    raw = record.get("BODY[HEADER]<0>" if header_only else "BODY[]")
    if not isinstance(raw, bytes):
        return None
    return FetchedMessage(
        uid=uid,
        flags=parse_flags(record.get("FLAGS", [])),
        internal_date=parse_internal_date(record.get("INTERNALDATE")),
        size=size,
        raw=raw,
        header_only=header_only,
    )


def parse_fetch_response(response: Segments) -> FetchResponse | None:
    """Parse an untagged FETCH response; return None for any other untagged response.

    Raises ResponseError when the response is a FETCH but does not follow the grammar.
    """
    head = _FETCH_HEAD.match(response[0])
    if head is None:
        return None
    sequence_number = int(head.group(1))
    items = _parse_flat_items(response, head.end())
    if items is not None:
        return FetchResponse(sequence_number, items)

    tokens = _tokenize(response, first_offset=head.end())
    if not tokens or tokens[0] is not _Paren.OPEN:
        raise ResponseError(f"FETCH response without a data item list: {response[0][:80]!r}")
    values, end = _parse_list(tokens, 1)
    if end != len(tokens):
        raise ResponseError(f"trailing data after a FETCH response: {response[0][:80]!r}")
    return FetchResponse(sequence_number, _pair_items(values))


def parse_internal_date(value: FetchValue) -> datetime:
    """Parse an INTERNALDATE such as ``" 4-Dec-2026 20:10:37 +0100"`` into an aware UTC time."""
    if not isinstance(value, bytes):
        raise ResponseError(f"INTERNALDATE is not a string: {value!r}")
    try:
        date_part, time_part, zone = value.decode("ascii").split()
        day, month, year = date_part.split("-")
        hour, minute, second = time_part.split(":")
        offset_min = int(zone[1:3]) * 60 + int(zone[3:5])
        if zone[0] == "-":
            offset_min = -offset_min
        elif zone[0] != "+":
            raise ValueError(zone)
        local = datetime(
            int(year),
            _MONTHS[month.title()],
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise ResponseError(f"invalid INTERNALDATE {value!r}") from exc
    return local - timedelta(minutes=offset_min)


def parse_flags(value: FetchValue) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(flag, str) for flag in value):
        raise ResponseError(f"FLAGS is not a list of atoms: {value!r}")
    return tuple(flag for flag in value if isinstance(flag, str))


def parse_number(value: FetchValue, name: str) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ResponseError(f"{name} is not a number: {value!r}")
    return int(value)


def _parse_flat_items(response: Segments, start: int) -> dict[str, FetchValue] | None:
    """Parse the data items with :data:`_FLAT_ITEM`; return None to fall back to the tokenizer."""
    last = len(response) - 1
    if response[0][start : start + 1] != b"(" or not response[last].endswith(b")"):
        return None
    items: dict[str, FetchValue] = {}
    position = start + 1
    for index in range(0, last + 1, 2):
        segment = response[index]
        end = len(segment) - 1 if index == last else len(segment)
        kind = None
        while position < end:
            match = _FLAT_ITEM.match(segment, position, end)
            if match is None:
                return None
            kind = match.lastgroup
            items[match.group("name").decode("ascii").upper()] = _flat_value(match, response, index)
            position = match.end()
        if index != last and kind != "literal":
            return None  # a literal must follow an item name
        position = 0
    return items


def _flat_value(match: re.Match[bytes], response: Segments, index: int) -> FetchValue:
    kind = match.lastgroup
    if kind == "atom":
        atom = match.group("atom").decode("ascii", "replace")
        return None if atom.upper() == "NIL" else atom
    if kind == "quoted":
        return match.group("quoted")
    if kind == "list":
        atoms = match.group("list").decode("ascii", "replace").split()
        return [None if atom.upper() == "NIL" else atom for atom in atoms]
    if index + 1 >= len(response):
        raise ResponseError("FETCH data item without a value at the end of the response")
    return response[index + 1]


def _tokenize(response: Segments, *, first_offset: int) -> list[FetchValue | _Paren]:
    tokens: list[FetchValue | _Paren] = []
    for index, segment in enumerate(response):
        if index % 2:
            tokens.append(segment)  # a literal is a string token, not parsed further
            continue
        start = first_offset if index == 0 else 0
        for match in _TOKEN.finditer(segment, start):
            kind = match.lastgroup
            if kind == "atom":
                atom = match.group("atom").decode("ascii", "replace")
                tokens.append(None if atom.upper() == "NIL" else atom)
            elif kind == "quoted":
                tokens.append(_QUOTED_ESCAPE.sub(rb"\1", match.group("quoted")))
            elif kind == "open":
                tokens.append(_Paren.OPEN)
            elif kind == "close":
                tokens.append(_Paren.CLOSE)
            else:
                raise ResponseError(f"unexpected character in FETCH response: {segment[:80]!r}")
    return tokens


def _parse_list(tokens: list[FetchValue | _Paren], position: int) -> tuple[list[FetchValue], int]:
    """Parse list elements from ``position`` up to its closing parenthesis.

    Returns the values and the position after the closing parenthesis.
    """
    values: list[FetchValue] = []
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token is _Paren.CLOSE:
            return values, position
        if token is _Paren.OPEN:
            nested, position = _parse_list(tokens, position)
            values.append(nested)
        else:
            values.append(token)
    raise ResponseError("unbalanced parentheses in FETCH response")


def _pair_items(values: list[FetchValue]) -> dict[str, FetchValue]:
    if len(values) % 2:
        raise ResponseError(f"FETCH data items are not name-value pairs ({len(values)} values)")
    items: dict[str, FetchValue] = {}
    for position in range(0, len(values), 2):
        name = values[position]
        if not isinstance(name, str):
            raise ResponseError(f"FETCH data item name is not an atom: {name!r}")
        items[name.upper()] = values[position + 1]
    return items
