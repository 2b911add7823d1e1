"""Response reading and FETCH parsing of the IMAP source, on canned server output."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from jobs.errors import TransientScanError
from jobs.imap.errors import Endpoint, ResponseError, response_code
from jobs.imap.fetch import (
    FetchRecords,
    build_messages,
    merge_fetch_responses,
    parse_fetch_response,
    parse_internal_date,
)
from jobs.imap.protocol import (
    CommandPipe,
    ResponseReader,
    encode_modified_utf7,
    quote_mailbox,
    sequence_set,
)

ENDPOINT = Endpoint("imap.example.test", 993, 5.0)

# The body contains lines that look like the end of a response and like a literal marker,
# so only the literal's byte count can tell where it ends.
BODY_10 = b"Subject: ten\r\n\r\nline one\r\n)\r\nms1 OK not the end\r\n{3}\r\nabc\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)


def reader_for(wire: bytes, max_literal_bytes: int = 1024) -> ResponseReader:
    return ResponseReader(io.BytesIO(wire), max_literal_bytes=max_literal_bytes)


def fetch_wire() -> bytes:
    return b"".join(
        [
            b"* 3 EXISTS\r\n",
            # An unsolicited flag update with a UID, before the solicited response.
            b"* 2 FETCH (FLAGS (\\Seen) UID 11)\r\n",
            # Items out of order, the body first.
            b"* 1 FETCH (BODY[] {%d}\r\n" % len(BODY_10),
            BODY_10,
            b' UID 10 INTERNALDATE "04-Dec-2026 20:10:37 +0100" FLAGS () RFC822.SIZE 66)\r\n',
            # An unsolicited flag update without a UID cannot be matched and is ignored.
            b"* 4 FETCH (FLAGS (\\Deleted))\r\n",
            b"* 1 RECENT\r\n",
            # A quoted body with an escaped quote takes the tokenizer path.
            b'* 2 FETCH (UID 11 RFC822.SIZE 5 BODY[] "x\\"y\\\\" '
            b'INTERNALDATE " 1-Jan-2026 00:30:00 -0230" FLAGS (\\Seen $Forwarded))\r\n',
            # A UID that was not requested.
            b'* 9 FETCH (UID 99 FLAGS () INTERNALDATE "01-Jan-2026 00:00:00 +0000" '
            b"RFC822.SIZE 1 BODY[] {1}\r\nz)\r\n",
            b"ms1 OK Fetch completed.\r\n",
        ]
    )


def test_fetch_matches_items_by_uid() -> None:
    transport = RecordingTransport()
    pipe = CommandPipe(transport, ENDPOINT)
    command = b"UID FETCH " + sequence_set([11, 10]) + b" (UID FLAGS BODY.PEEK[])"

    untagged, completions = pipe.run([command], reader_for(fetch_wire()))
    records: FetchRecords = {}
    merge_fetch_responses(untagged, records, {10, 11})
    messages = build_messages(records, max_message_bytes=1000)

    assert transport.sent == [b"ms1 UID FETCH 10:11 (UID FLAGS BODY.PEEK[])\r\n"]
    assert [(completion.status, completion.text) for completion in completions] == [
        ("OK", "Fetch completed.")
    ]
    assert [message.uid for message in messages] == [10, 11]
    ten, eleven = messages
    assert ten.raw == BODY_10
    assert ten.flags == ()
    assert ten.size == 66
    assert ten.internal_date == datetime(2026, 12, 4, 19, 10, 37, tzinfo=UTC)
    assert ten.header_only is False
    assert eleven.raw == b'x"y\\'
    assert eleven.flags == ("\\Seen", "$Forwarded")
    assert eleven.internal_date == datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def test_fetch_skips_uid_without_content() -> None:
    records: FetchRecords = {}
    metadata = [
        [b'* 1 FETCH (UID 5 FLAGS () INTERNALDATE "01-Jan-2026 00:00:00 +0000" RFC822.SIZE 10)'],
        [b'* 2 FETCH (UID 6 FLAGS () INTERNALDATE "01-Jan-2026 00:00:00 +0000" RFC822.SIZE 90)'],
    ]
    merge_fetch_responses(metadata, records, {5, 6})
    # UID 5 was expunged before the second round and never sent its body.
    merge_fetch_responses(
        [[b"* 1 FETCH (UID 6 BODY[HEADER]<0> ", b"H: v\r\n\r\n", b")"]], records, {5, 6}
    )

    messages = build_messages(records, max_message_bytes=50)

    assert [message.uid for message in messages] == [6]
    assert messages[0].header_only is True
    assert messages[0].raw == b"H: v\r\n\r\n"
    assert messages[0].size == 90


def test_pipelined_completions_keep_command_order() -> None:
    wire = b"ms2 NO [EXPUNGEISSUED] Some messages were expunged\r\nms1 OK done\r\n"
    pipe = CommandPipe(RecordingTransport(), ENDPOINT)

    _, completions = pipe.run([b"NOOP", b"NOOP"], reader_for(wire))

    assert [completion.status for completion in completions] == ["OK", "NO"]
    assert response_code(completions[1].text) == "EXPUNGEISSUED"


def test_bye_raises_server_unavailable() -> None:
    wire = b"* 1 EXISTS\r\n* BYE Server shutting down.\r\n"
    pipe = CommandPipe(RecordingTransport(), ENDPOINT)

    with pytest.raises(TransientScanError) as caught:
        pipe.run([b"NOOP"], reader_for(wire))

    assert caught.value.code == "SERVER_UNAVAILABLE"
    assert caught.value.message == (
        "IMAP server imap.example.test:993 closed the session (Server shutting down.); "
        "the scan will be retried later."
    )


def test_unknown_tag_is_a_response_error() -> None:
    pipe = CommandPipe(RecordingTransport(), ENDPOINT)

    with pytest.raises(ResponseError, match="unexpected response b'A001 OK done'"):
        pipe.run([b"NOOP"], reader_for(b"A001 OK done\r\n"))


def test_reader_reports_eof_inside_literal() -> None:
    reader = reader_for(b"* 1 FETCH (UID 1 BODY[] {10}\r\nabc")

    with pytest.raises(EOFError, match="in the middle of a literal"):
        reader.read()


def test_reader_rejects_oversized_literal() -> None:
    reader = reader_for(b"* 1 FETCH (UID 1 BODY[] {2000}\r\n", max_literal_bytes=1000)

    with pytest.raises(ResponseError, match="literal of 2000 bytes exceeds the limit of 1000"):
        reader.read()


def test_tokenizer_handles_nested_lists_and_nil() -> None:
    response = [
        b'* 7 FETCH (UID 3 X-LIST ((a "b c") NIL) BODY[HEADER.FIELDS (FROM TO)] NIL MODSEQ (12))'
    ]

    parsed = parse_fetch_response(response)

    assert parsed is not None
    assert parsed.sequence_number == 7
    assert parsed.items == {
        "UID": "3",
        "X-LIST": [["a", b"b c"], None],
        "BODY[HEADER.FIELDS (FROM TO)]": None,
        "MODSEQ": ["12"],
    }


@pytest.mark.parametrize(
    "line",
    [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen)",
        b"* 1 FETCH (UID 1 FLAGS)",
        b"* 1 FETCH UID 1",
        b"* 1 FETCH (UID 1 BODY[] {)",
    ],
)
def test_malformed_fetch_is_a_response_error(line: bytes) -> None:
    with pytest.raises(ResponseError):
        parse_fetch_response([line])


def test_other_untagged_responses_are_not_fetch() -> None:
    assert parse_fetch_response([b"* 3 EXISTS"]) is None
    assert parse_fetch_response([b"* SEARCH 1 2"]) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"17-Jul-1996 02:44:25 -0700", datetime(1996, 7, 17, 9, 44, 25, tzinfo=UTC)),
        (b" 1-Feb-2026 00:00:00 +0100", datetime(2026, 1, 31, 23, 0, tzinfo=UTC)),
        (b"29-feb-2024 23:59:59 +0000", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_internal_date_converts_to_utc(text: bytes, expected: datetime) -> None:
    assert parse_internal_date(text) == expected


@pytest.mark.parametrize("text", [b"17-Foo-1996 02:44:25 -0700", b"17-Jul-1996", b"x"])
def test_internal_date_rejects_garbage(text: bytes) -> None:
    with pytest.raises(ResponseError, match="invalid INTERNALDATE"):
        parse_internal_date(text)


def test_sequence_set_joins_runs() -> None:
    assert sequence_set([9, 1, 2, 3, 7, 10, 3]) == b"1:3,7,9:10"
    assert sequence_set([42]) == b"42"


def test_mailbox_names_use_modified_utf7() -> None:
    # The example from RFC 3501 section 5.1.3.
    assert encode_modified_utf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_modified_utf7("Entwürfe & Co") == "Entw&APw-rfe &- Co"
    assert quote_mailbox('My "Old" \\ Mail') == '"My \\"Old\\" \\\\ Mail"'
    assert quote_mailbox("a\r\nb") == '"a&AA0ACg-b"'
