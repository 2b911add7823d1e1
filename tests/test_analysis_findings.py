"""Findings on crafted messages: one positive and at least one negative case per kind."""

from __future__ import annotations

from jobs.analysis import analyse_headers, analyse_message
from jobs.documents import FindingData, FindingKind

HEADERS = {
    "From": "Alice Example <alice@example.com>",
    "To": "bob@example.org",
    "Subject": "Hello",
    "Date": "Tue, 10 Sep 2024 10:00:00 +0200",
    "Message-ID": "<1@example.com>",
}


def build(body: str = "Hello Bob.\r\n", **headers: str) -> bytes:
    """Return a raw message with HEADERS overridden by ``headers`` (``Reply_To`` for Reply-To)."""
    fields = {**HEADERS, **{name.replace("_", "-"): value for name, value in headers.items()}}
    lines = [f"{name}: {value}" for name, value in fields.items() if value]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def multipart(*parts: str, **headers: str) -> bytes:
    body = "".join(f"--sep\r\n{part}\r\n" for part in parts) + "--sep--\r\n"
    return build(body, Content_Type='multipart/mixed; boundary="sep"', **headers)


def attachment(disposition: str, content_type: str = "application/octet-stream") -> str:
    return (
        f"Content-Type: {content_type}\r\n"
        f"Content-Disposition: {disposition}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8="
    )


def html(document: str) -> str:
    return f"Content-Type: text/html; charset=utf-8\r\n\r\n{document}"


def of_kind(raw: bytes, kind: FindingKind) -> list[FindingData]:
    return [finding for finding in analyse_message(raw).findings if finding.kind is kind]


def details(raw: bytes, kind: FindingKind) -> list[str]:
    return [finding.detail for finding in of_kind(raw, kind)]


def test_plain_message_has_no_findings() -> None:
    assert analyse_message(build()).findings == []


# DANGEROUS_ATTACHMENT


def test_executable_attachment_flagged() -> None:
    raw = multipart(
        "Content-Type: text/plain\r\n\r\nSee attached.",
        attachment("attachment; filename=setup.exe"),
    )
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment 'setup.exe' has the dangerous extension .exe"
    ]


def test_double_extension_flagged() -> None:
    raw = multipart(attachment('attachment; filename="invoice.pdf.exe"'))
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment 'invoice.pdf.exe' has the double extension .pdf.exe"
    ]


def test_double_extension_inside_rfc2231_name_flagged() -> None:
    raw = multipart(attachment("attachment; filename*=utf-8''invoice.pdf%2E%65xe"))
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment 'invoice.pdf.exe' has the double extension .pdf.exe"
    ]


def test_rfc2231_continuation_name_flagged() -> None:
    raw = multipart(
        attachment("attachment;\r\n filename*0*=utf-8''report%20;\r\n filename*1*=2024.js")
    )
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment 'report 2024.js' has the dangerous extension .js"
    ]


def test_macro_document_flagged() -> None:
    raw = multipart(attachment("attachment; filename=Budget.XLSM"))
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment 'Budget.XLSM' has the dangerous extension .xlsm"
    ]


def test_trailing_dot_does_not_hide_extension() -> None:
    raw = multipart(attachment('attachment; filename="run.bat. "'))
    assert len(of_kind(raw, FindingKind.DANGEROUS_ATTACHMENT)) == 1


def test_right_to_left_override_flagged() -> None:
    raw = multipart(attachment("attachment; filename*=utf-8''invoice%E2%80%AEfdp.scr"))
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment 'invoice\\u202efdp.scr' contains a Unicode bidirectional control"
        " that disguises its extension"
    ]


def test_executable_content_type_without_name_flagged() -> None:
    raw = multipart(attachment("attachment", "application/x-msdownload"))
    assert details(raw, FindingKind.DANGEROUS_ATTACHMENT) == [
        "attachment without a name has content type application/x-msdownload"
    ]


def test_document_attachments_not_flagged() -> None:
    raw = multipart(
        attachment("attachment; filename=invoice.pdf", "application/pdf"),
        attachment("attachment; filename=report.exe.pdf", "application/pdf"),
        attachment("attachment; filename=budget.xlsx"),
    )
    assert of_kind(raw, FindingKind.DANGEROUS_ATTACHMENT) == []


# DISPLAY_NAME_SPOOF


def test_display_name_with_other_address_flagged() -> None:
    raw = build(From='"service@paypal.com" <billing@example.net>')
    assert details(raw, FindingKind.DISPLAY_NAME_SPOOF) == [
        "display name 'service@paypal.com' names paypal.com but the sender is billing@example.net"
    ]


def test_unquoted_display_name_with_address_flagged() -> None:
    raw = build(From="PayPal service@paypal.com <billing@example.net>")
    assert len(of_kind(raw, FindingKind.DISPLAY_NAME_SPOOF)) == 1


def test_display_name_with_other_domain_flagged() -> None:
    raw = build(From="Amazon.com Support <help@example.net>")
    assert details(raw, FindingKind.DISPLAY_NAME_SPOOF) == [
        "display name 'Amazon.com Support' names Amazon.com but the sender is help@example.net"
    ]


def test_encoded_display_name_spoof_flagged() -> None:
    raw = build(From="=?utf-8?q?service=40paypal=2Ecom?= <billing@example.net>")
    assert len(of_kind(raw, FindingKind.DISPLAY_NAME_SPOOF)) == 1


def test_display_name_with_own_domain_not_flagged() -> None:
    for sender in (
        "Amazon.com <ship-confirm@amazon.com>",
        '"alice@example.com" <alice@example.com>',
        "Example Shop <orders@mail.example.com>",
        "shop.example.com <orders@example.com>",
        "John Smith <john@example.net>",
        "J.R.R. Tolkien <jrr@example.net>",
        "john.smith <john@example.net>",
    ):
        assert of_kind(build(From=sender), FindingKind.DISPLAY_NAME_SPOOF) == [], sender


# LINK_MISMATCH


def test_link_text_with_other_domain_flagged() -> None:
    document = '<p><a href="https://evil.example.net/login">https://www.paypal.com/signin</a></p>'
    raw = multipart(html(document))
    assert details(raw, FindingKind.LINK_MISMATCH) == [
        "link text 'https://www.paypal.com/signin' shows www.paypal.com"
        " but points to 'https://evil.example.net/login'"
    ]


def test_single_part_html_link_flagged() -> None:
    document = "<a href='http://198.51.100.7/x'>www.<b>mybank</b>.com</a>"
    raw = build(document, Content_Type="text/html; charset=utf-8")
    assert details(raw, FindingKind.LINK_MISMATCH) == [
        "link text 'www.mybank.com' shows www.mybank.com but points to 'http://198.51.100.7/x'"
    ]


def test_link_host_behind_userinfo_flagged() -> None:
    document = '<a href="https://paypal.com@evil.example.net/">paypal.com</a>'
    assert len(of_kind(multipart(html(document)), FindingKind.LINK_MISMATCH)) == 1


def test_base64_html_part_scanned() -> None:
    part = (
        "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "PGEgaHJlZj0iaHR0cDovL2V2aWwuZXhhbXBsZS5uZXQiPnBheXBhbC5jb208L2E+"
    )
    assert len(of_kind(multipart(part), FindingKind.LINK_MISMATCH)) == 1


def test_matching_links_not_flagged() -> None:
    document = (
        '<a href="https://www.paypal.com/signin">paypal.com</a>'
        '<a href="https://evil.example.net/">Click here</a>'
        '<a href="https://evil.example.net/">version 2.5</a>'
        '<a href="mailto:help@example.com">help@example.com</a>'
        '<a href="https://example.com/a?b=1&amp;c=2">https://example.com/a</a>'
        '<a href="https://docs.example.org/">example.org</a>'
    )
    assert of_kind(multipart(html(document)), FindingKind.LINK_MISMATCH) == []


def test_plain_text_links_not_scanned() -> None:
    raw = build('<a href="https://evil.example.net/">paypal.com</a>')
    assert of_kind(raw, FindingKind.LINK_MISMATCH) == []


def test_repeated_link_mismatch_reported_once() -> None:
    document = '<a href="https://evil.example.net/">paypal.com</a>' * 3
    assert len(of_kind(multipart(html(document)), FindingKind.LINK_MISMATCH)) == 1


# AUTH_FAILURE


def test_failing_authentication_results_flagged() -> None:
    raw = build(
        Authentication_Results=(
            "mx.example.org; spf=softfail (sender not permitted) smtp.mailfrom=example.com;"
            " dkim=pass header.d=example.com; dmarc=fail (p=reject) header.from=example.com"
        )
    )
    assert details(raw, FindingKind.AUTH_FAILURE) == [
        "Authentication-Results reports spf=softfail, dmarc=fail"
    ]


def test_dkim_permerror_flagged() -> None:
    raw = build(Authentication_Results="mx.example.org; dkim=permerror (bad signature)")
    assert details(raw, FindingKind.AUTH_FAILURE) == [
        "Authentication-Results reports dkim=permerror"
    ]


def test_passing_authentication_results_not_flagged() -> None:
    for value in (
        "mx.example.org; spf=pass smtp.mailfrom=example.com; dkim=pass; dmarc=pass",
        "mx.example.org; spf=neutral; dkim=none; dmarc=none",
        "mx.example.org; dkim=fail header.d=old.example; dkim=pass header.d=example.com",
        "mx.example.org; none",
    ):
        assert of_kind(build(Authentication_Results=value), FindingKind.AUTH_FAILURE) == [], value


def test_only_topmost_authentication_results_read() -> None:
    headers = {
        "Authentication-Results": "mx.example.org; spf=pass; dkim=pass; dmarc=pass",
    }
    raw = build(**{name.replace("-", "_"): value for name, value in headers.items()})
    forged = raw.replace(
        b"\r\n\r\n", b"\r\nAuthentication-Results: forged.example; spf=fail\r\n\r\n", 1
    )
    assert analyse_message(forged).auth.spf == "pass"
    assert of_kind(forged, FindingKind.AUTH_FAILURE) == []


# REPLY_TO_MISMATCH


def test_reply_to_other_domain_flagged() -> None:
    raw = build(Reply_To="Alice <alice@example-payments.net>")
    assert details(raw, FindingKind.REPLY_TO_MISMATCH) == [
        "Reply-To alice@example-payments.net is in domain example-payments.net"
        " but From alice@example.com is in example.com"
    ]


def test_reply_to_same_organization_not_flagged() -> None:
    for reply_to in (
        "alice@example.com",
        "Support <support@help.example.com>",
        "ALICE@EXAMPLE.COM",
    ):
        assert of_kind(build(Reply_To=reply_to), FindingKind.REPLY_TO_MISMATCH) == [], reply_to


def test_reply_to_mailing_list_not_flagged() -> None:
    raw = build(
        Reply_To="talk@lists.example.org",
        List_Id="Talk about things <talk.lists.example.org>",
        List_Post="<mailto:talk@lists.example.org>",
    )
    assert of_kind(raw, FindingKind.REPLY_TO_MISMATCH) == []


def test_reply_to_country_code_domain_compared_by_organization() -> None:
    raw = build(From="shop@example.co.uk", Reply_To="orders@mail.example.co.uk")
    assert of_kind(raw, FindingKind.REPLY_TO_MISMATCH) == []
    raw = build(From="shop@example.co.uk", Reply_To="orders@other.co.uk")
    assert len(of_kind(raw, FindingKind.REPLY_TO_MISMATCH)) == 1


# MALFORMED


def test_parser_defects_give_one_malformed_finding() -> None:
    raw = build(
        "--sep\r\nContent-Type: text/plain\r\n\r\nno closing boundary\r\n",
        Content_Type='multipart/mixed; boundary="sep"',
    ).replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nthis line is no header\r\n")
    fields = analyse_message(raw)
    assert fields.defects == ["MissingHeaderBodySeparatorDefect"]
    assert details(raw, FindingKind.MALFORMED) == [
        "1 parse defect: MissingHeaderBodySeparatorDefect"
    ]


def test_multipart_defects_listed_with_part() -> None:
    raw = build(
        "--sep\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8\r\n",
        Content_Type='multipart/mixed; boundary="sep"',
    )
    raw = raw.replace(b"text/plain", b"application/octet-stream")
    fields = analyse_message(raw)
    assert fields.defects == ["CloseBoundaryNotFoundDefect", "part 1: InvalidBase64PaddingDefect"]
    assert details(raw, FindingKind.MALFORMED) == [
        "2 parse defects: CloseBoundaryNotFoundDefect, part 1: InvalidBase64PaddingDefect"
    ]


def test_undecodable_subject_gives_malformed_finding() -> None:
    raw = build(Subject="=?x-unknown?q?Caf=E9?=")
    fields = analyse_message(raw)
    assert fields.subject == "=?x-unknown?q?Caf=E9?="
    assert details(raw, FindingKind.MALFORMED) == [
        "cannot decode Subject header: unknown charset 'x-unknown' in '=?x-unknown?q?Caf=E9?='"
    ]


def test_well_formed_message_has_no_defects() -> None:
    raw = multipart("Content-Type: text/plain\r\n\r\nHi", attachment("attachment; filename=a.pdf"))
    fields = analyse_message(raw)
    assert fields.defects == []
    assert of_kind(raw, FindingKind.MALFORMED) == []


def test_garbage_bytes_give_malformed_finding() -> None:
    for raw in (b"", b"\x00\xff\xfe garbage", b"--b\r\n\r\n", bytes(range(256)) * 10):
        fields = analyse_message(raw)
        assert fields.size == len(raw)
        assert [finding.kind for finding in fields.findings] == [FindingKind.MALFORMED], raw[:20]


def test_deeply_nested_multipart_analyses() -> None:
    depth = 3000
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'
        for level in range(depth)
    )
    raw = ("From: alice@example.com\r\n" + opening + "Content-Type: text/plain\r\n\r\nx").encode()
    fields = analyse_message(raw)
    assert fields.sender_address == "alice@example.com"
    assert any(finding.kind is FindingKind.MALFORMED for finding in fields.findings)


# OVERSIZED


def test_oversized_message_names_its_size() -> None:
    header_section = build().split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    fields = analyse_headers(header_section, 31_457_280)
    assert fields.size == 31_457_280
    assert fields.subject == "Hello"
    assert fields.sender_address == "alice@example.com"
    assert [finding.detail for finding in fields.findings] == [
        "message of 31457280 bytes is over the size limit; analysed from its headers only"
    ]
