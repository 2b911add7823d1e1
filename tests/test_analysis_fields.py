"""Fields read from crafted messages: decoding, addresses, dates, attachments, unsubscribe."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.analysis import analyse_message
from jobs.analysis.authresults import parse_authentication_results
from jobs.analysis.dates import parse_date
from jobs.analysis.headers import HeaderDecodeError, decode_encoded_words
from jobs.documents import Attachment, FindingKind, Unsubscribe


def build(*headers: str, body: str = "Hello.\r\n") -> bytes:
    lines = ["From: Alice <alice@example.com>", "To: bob@example.org", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def with_attachment(disposition: str, content_type: str = "application/pdf") -> bytes:
    body = (
        "--sep\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        f"--sep\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--sep--\r\n"
    )
    return build('Content-Type: multipart/mixed; boundary="sep"', body=body)


# RFC 2047 encoded words


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("=?utf-8?q?Caf=C3=A9_cr=C3=A8me?=", "Café crème"),
        ("=?UTF-8?B?0J/RgNC40LLQtdGC?=", "Привет"),
        ("=?iso-8859-1?q?r=E9sum=E9?= attached", "résumé attached"),
        ("Re: =?utf-8?q?Caf=C3=A9?= =?utf-8?q?_au_lait?=", "Re: Café au lait"),
        # One UTF-8 character split across two encoded words.
        ("=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "€"),
        ("=?utf-8*en?q?hello?=", "hello"),
        ("=?gb2312?b?1tDOxA==?=", "中文"),
        ("plain subject", "plain subject"),
        ("=?utf-8?q?unpadded?= =?utf-8?b?YWI?=", "unpaddedab"),
    ],
)
def test_encoded_words_decoded(encoded: str, decoded: str) -> None:
    assert decode_encoded_words(encoded) == decoded


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("=?x-unknown?q?abc?=", "unknown charset 'x-unknown'"),
        ("=?utf-8?q?=FF=FE?=", "bytes invalid in charset 'utf-8'"),
        ("=?utf-8?b?a?=", "invalid base64"),
        ("=?base64?q?abc?=", "unknown charset 'base64'"),
    ],
)
def test_undecodable_encoded_words_raise(encoded: str, reason: str) -> None:
    with pytest.raises(HeaderDecodeError, match=reason):
        decode_encoded_words(encoded)


def test_subject_decoded() -> None:
    raw = build("Subject: =?utf-8?q?Caf=C3=A9?=\r\n =?utf-8?q?_cr=C3=A8me?= ok")
    assert analyse_message(raw).subject == "Café crème ok"


def test_utf8_subject_bytes_decoded() -> None:
    raw = build("Subject: Grüße")
    fields = analyse_message(raw)
    assert fields.subject == "Grüße"
    assert fields.findings == []


def test_latin1_subject_bytes_kept_and_reported() -> None:
    raw = build("Subject: caf").replace(b"Subject: caf", b"Subject: caf\xe9")
    fields = analyse_message(raw)
    assert fields.subject == "caf\ufffd"
    assert fields.defects == ["cannot decode Subject header: raw 8-bit bytes that are not UTF-8"]
    assert [finding.detail for finding in fields.findings] == [
        "cannot decode Subject header: raw 8-bit bytes that are not UTF-8 in 'caf\ufffd'"
    ]


def test_invalid_base64_subject_kept_raw() -> None:
    fields = analyse_message(build("Subject: =?utf-8?b?a?="))
    assert fields.subject == "=?utf-8?b?a?="
    assert [finding.kind for finding in fields.findings] == [FindingKind.MALFORMED]


# Addresses


def test_sender_name_decoded() -> None:
    raw = build("Subject: x").replace(
        b"From: Alice <alice@example.com>", b"From: =?utf-8?q?Zo=C3=AB_Example?= <Zoe@Example.COM>"
    )
    fields = analyse_message(raw)
    assert fields.sender_name == "Zoë Example"
    assert fields.sender_address == "zoe@example.com"


def test_sender_without_address_reported() -> None:
    raw = build().replace(b"From: Alice <alice@example.com>", b"From: MAILER-DAEMON")
    fields = analyse_message(raw)
    assert fields.sender_address is None
    assert fields.sender_name == "MAILER-DAEMON"
    assert [finding.detail for finding in fields.findings] == [
        "cannot decode From header: no valid address in 'MAILER-DAEMON'"
    ]


def test_recipients_counted_once_each() -> None:
    raw = build(
        'Cc: "Smith, John" <john@example.org>, BOB@example.org',
        "Bcc: carol@example.net, undisclosed-recipients:;",
    )
    assert analyse_message(raw).recipients_count == 3


def test_message_id_kept() -> None:
    raw = build("Message-ID:\r\n <abc.123@example.com>")
    assert analyse_message(raw).message_id == "<abc.123@example.com>"


# Dates


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 10 Sep 2024 10:00:00 +0200", datetime(2024, 9, 10, 8, 0, tzinfo=UTC)),
        ("Tue, 10 Sep 2024 10:00:00 -0700 (PDT)", datetime(2024, 9, 10, 17, 0, tzinfo=UTC)),
        ("10 Sep 24 10:00 EST", datetime(2024, 9, 10, 15, 0, tzinfo=UTC)),
        ("Tue, 10 Sep 2024 10:00:00 -0000", datetime(2024, 9, 10, 10, 0, tzinfo=UTC)),
        ("Tue Sep 10 10:00:00 2024", datetime(2024, 9, 10, 10, 0, tzinfo=UTC)),
        ("Thu, 18 Jul 0102 19:51:35 -0100", datetime(2002, 7, 18, 20, 51, 35, tzinfo=UTC)),
        ("2024-09-10T10:00:00+02:00", datetime(2024, 9, 10, 8, 0, tzinfo=UTC)),
    ],
)
def test_dates_parsed_to_utc(value: str, expected: datetime) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize(
    "value",
    ["garbage", "", "Tue, 31 Feb 2024 10:00:00 +0000", "Tue, 10 Sep 2024 10:00:00 +9900"],
)
def test_invalid_dates_raise(value: str) -> None:
    with pytest.raises(ValueError):
        parse_date(value)


def test_invalid_date_gives_none_and_defect() -> None:
    fields = analyse_message(build("Date: someday soon"))
    assert fields.date is None
    assert fields.defects == ["invalid Date header 'someday soon'"]
    assert [finding.detail for finding in fields.findings] == [
        "1 parse defect: invalid Date header 'someday soon'"
    ]


# Attachments


def test_attachment_described() -> None:
    fields = analyse_message(with_attachment('attachment; filename="report.pdf"'))
    assert fields.attachments == [
        Attachment(name="report.pdf", content_type="application/pdf", size=11)
    ]


def test_rfc2231_filename_decoded() -> None:
    raw = with_attachment("attachment; filename*=iso-8859-1'fr'r%E9sum%E9.pdf")
    assert [attachment.name for attachment in analyse_message(raw).attachments] == ["résumé.pdf"]


def test_rfc2231_continued_filename_decoded() -> None:
    raw = with_attachment(
        "attachment;\r\n filename*0*=utf-8''%E6%97%A5%E6%9C%AC;\r\n filename*1=\"-report.pdf\""
    )
    assert [attachment.name for attachment in analyse_message(raw).attachments] == [
        "日本-report.pdf"
    ]


def test_rfc2047_filename_decoded() -> None:
    raw = with_attachment('attachment; filename="=?utf-8?q?Caf=C3=A9.pdf?="')
    assert [attachment.name for attachment in analyse_message(raw).attachments] == ["Café.pdf"]


def test_inline_image_counts_as_attachment() -> None:
    raw = with_attachment("inline", "image/png")
    assert analyse_message(raw).attachments == [
        Attachment(name=None, content_type="image/png", size=11)
    ]


def test_body_parts_are_not_attachments() -> None:
    body = (
        "--sep\r\nContent-Type: text/plain\r\n\r\nHi\r\n"
        "--sep\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--sep--\r\n"
    )
    raw = build('Content-Type: multipart/alternative; boundary="sep"', body=body)
    assert analyse_message(raw).attachments == []


# List-Unsubscribe


def test_one_click_unsubscribe_read() -> None:
    raw = build(
        "List-Unsubscribe: <mailto:leave@news.example.com?subject=unsubscribe>,\r\n"
        " <https://news.example.com/unsubscribe?id=42>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    )
    assert analyse_message(raw).unsubscribe == Unsubscribe(
        mailto="mailto:leave@news.example.com?subject=unsubscribe",
        https="https://news.example.com/unsubscribe?id=42",
        one_click=True,
    )


def test_unsubscribe_without_post_is_not_one_click() -> None:
    raw = build("List-Unsubscribe: <https://news.example.com/u/42>")
    assert analyse_message(raw).unsubscribe == Unsubscribe(
        https="https://news.example.com/u/42", one_click=False
    )


def test_one_click_needs_https() -> None:
    raw = build(
        "List-Unsubscribe: <mailto:leave@news.example.com>, <http://news.example.com/u/42>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    )
    assert analyse_message(raw).unsubscribe == Unsubscribe(mailto="mailto:leave@news.example.com")


def test_no_unsubscribe_header_gives_none() -> None:
    assert analyse_message(build()).unsubscribe is None


# Authentication-Results


def test_authentication_results_read() -> None:
    value = (
        "mx.example.org 1; spf=pass (ip 192.0.2.1 is permitted) smtp.mailfrom=example.com;\r\n"
        ' dkim=PASS header.d=example.com header.b="ab;cd"; dmarc=bestguesspass'
    )
    auth = analyse_message(build(f"Authentication-Results: {value}")).auth
    assert (auth.spf, auth.dkim, auth.dmarc) == ("pass", "pass", "bestguesspass")


def test_authentication_results_without_results() -> None:
    auth = parse_authentication_results("mx.example.org; none")
    assert (auth.spf, auth.dkim, auth.dmarc) == (None, None, None)


def test_authentication_results_comment_ignored() -> None:
    auth = parse_authentication_results("mx.example.org (spf=fail); spf=pass (not (dkim=fail))")
    assert (auth.spf, auth.dkim) == ("pass", None)
