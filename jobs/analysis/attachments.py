"""Attachments of a message and the findings about dangerous attachment names and types."""

from __future__ import annotations

import unicodedata
from email.message import Message

from jobs.analysis.findings import quoted
from jobs.analysis.headers import HeaderReader, clean_text
from jobs.documents import Attachment, FindingData, FindingKind

#: Extensions that Windows, macOS or Office run as code when the file is opened with a double
#: click: executables and installers, scripts, shortcuts, and macro-enabled Office documents.
DANGEROUS_EXTENSIONS = frozenset(
    {
        # executables and installers
        "exe", "scr", "com", "pif", "cpl", "dll", "msi", "msp", "mst", "msc", "gadget",
        "application", "appx", "msix", "appref-ms", "jar", "apk", "app", "pkg", "dmg",
        # scripts
        "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "wsc", "hta", "ps1", "ps1xml",
        "ps2", "psc1", "psm1", "command", "scf", "sct", "reg", "inf", "ins", "isp", "chm",
        # shortcuts and links to programs
        "lnk", "url", "website", "settingcontent-ms",
        # macro-enabled Office documents and add-ins
        "docm", "dotm", "xlsm", "xltm", "xlsb", "xlam", "xla", "xll", "pptm", "potm", "ppam",
        "ppsm", "sldm", "ppa", "accde", "mde", "mdb", "iqy", "slk",
    }
)  # fmt: skip

#: Extensions a victim trusts, which attackers put before the real one (``invoice.pdf.exe``).
DOCUMENT_EXTENSIONS = frozenset(
    {
        "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "rtf", "txt", "csv",
        "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "mp3", "mp4", "avi", "mov", "zip",
        "rar", "htm", "html", "eml",
    }
)  # fmt: skip

#: Content types of programs, flagged even when the name looks harmless or is missing.
DANGEROUS_CONTENT_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-ms-installer",
        "application/x-msi",
        "application/x-dosexec",
        "application/x-executable",
        "application/vnd.microsoft.portable-executable",
        "application/hta",
        "application/x-ms-shortcut",
        "application/vnd.ms-excel.sheet.macroenabled.12",
        "application/vnd.ms-word.document.macroenabled.12",
        "application/vnd.ms-powerpoint.presentation.macroenabled.12",
    }
)

#: Unicode bidirectional controls that can show ``invoice\u202egpj.exe`` as ``invoiceexe.jpg``.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def is_attachment(part: Message) -> bool:
    """Tell whether a leaf part is an attachment rather than a body text.

    A part is one when its disposition is ``attachment``, when it carries a file name, or
    when it is not text (an image, a PDF, an octet stream).
    """
    # The raw header checks skip parsing parameters of the common plain body part.
    if part.get("Content-Disposition") is not None:
        if part.get_content_disposition() == "attachment":
            return True
        if part.get_param("filename", None, "content-disposition") is not None:
            return True
    if part.get_content_maintype() != "text":
        return True
    content_type = str(part.get("Content-Type", ""))
    return "name" in content_type.lower() and part.get_param("name", None) is not None


def read_attachment(part: Message, reader: HeaderReader) -> Attachment:
    """Describe a leaf part: decoded file name, content type and size of the decoded payload."""
    payload = part.get_payload(decode=True)
    size = len(payload) if isinstance(payload, bytes) else 0
    return Attachment(
        name=_file_name(part, reader), content_type=part.get_content_type(), size=size
    )


def _file_name(part: Message, reader: HeaderReader) -> str | None:
    # get_filename decodes RFC 2231 (filename*=utf-8''...); many mailers instead put RFC 2047
    # encoded words inside the quoted name, which it leaves alone.
    name = part.get_filename()
    if name is None:
        return None
    label = "attachment file name"
    name = reader.from_raw(label, name.replace("\r", "").replace("\n", "").strip())
    return reader.decode(label, clean_text(name)) or None


def dangerous_attachment(attachment: Attachment) -> FindingData | None:
    """Flag an attachment whose name or content type marks a program, script or macro."""
    name = attachment.name
    if name is not None:
        reason = _dangerous_name_reason(name)
        if reason is not None:
            return FindingData(
                kind=FindingKind.DANGEROUS_ATTACHMENT,
                detail=f"attachment {quoted(name)} {reason}",
            )
    if attachment.content_type in DANGEROUS_CONTENT_TYPES:
        described = "without a name" if name is None else quoted(name)
        return FindingData(
            kind=FindingKind.DANGEROUS_ATTACHMENT,
            detail=f"attachment {described} has content type {attachment.content_type}",
        )
    return None


def _dangerous_name_reason(name: str) -> str | None:
    if any(char in _BIDI_CONTROLS for char in name):
        return "contains a Unicode bidirectional control that disguises its extension"
    extensions = _extensions(name)
    if not extensions or extensions[-1] not in DANGEROUS_EXTENSIONS:
        return None
    if len(extensions) >= 2 and extensions[-2] in DOCUMENT_EXTENSIONS:
        return f"has the double extension .{extensions[-2]}.{extensions[-1]}"
    return f"has the dangerous extension .{extensions[-1]}"


def _extensions(name: str) -> list[str]:
    """Return the lower-cased extensions of a file name as Windows reads it.

    Windows drops trailing dots and spaces (``setup.exe.`` runs as ``setup.exe``), and spaces
    before an extension (``invoice.pdf   .exe``) only push it out of sight.
    """
    name = unicodedata.normalize("NFKC", name)
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = base.rstrip(". \t\x00").lower()
    parts = [part.strip() for part in base.split(".")]
    return parts[1:]
