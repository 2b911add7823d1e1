"""LINK_MISMATCH: HTML anchors whose visible text is a URL or domain other than the target's.

Anchors are found with bounded regular expressions rather than an HTML parser: it is several
times faster, and every quantifier has a limit, so hostile markup costs linear time.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from jobs.analysis.domains import is_known_tld, normalize_domain, same_organization
from jobs.analysis.findings import quoted
from jobs.documents import FindingData, FindingKind

#: Characters of one HTML part scanned for links; links further on are not checked.
MAX_HTML_CHARS = 512 * 1024
#: LINK_MISMATCH findings reported per message at most; one per (text domain, target domain).
MAX_LINK_FINDINGS = 5

_ANCHOR = re.compile(
    r"<a\s[^>]{0,2000}?\bhref\s*=\s*(?:\"([^\"]{0,4000})\"|'([^']{0,4000})'|([^\s>]{1,4000}))"
    r"[^>]{0,2000}>(.{0,2000}?)</a\s*>",
    re.IGNORECASE | re.DOTALL,
)
_TAG = re.compile(r"<[^>]{0,2000}>")
_WHITESPACE = re.compile(r"\s+")

#: Link text that is a URL or a bare domain, with an optional path.
_URL_TEXT = re.compile(
    r"(?:(?P<scheme>https?)://)?(?:[^\s/@:]+(?::[^\s/@]*)?@)?"
    r"(?P<host>[\w-]+(?:\.[\w-]+)+)\.?(?::\d{1,5})?(?:[/?#]\S*)?",
    re.IGNORECASE,
)


def link_mismatches(document: str) -> list[FindingData]:
    """Return one finding per pair of (domain in the text, target domain) that disagree."""
    found: list[FindingData] = []
    seen: set[tuple[str, str]] = set()
    for match in _ANCHOR.finditer(document, 0, MAX_HTML_CHARS):
        href = html.unescape(match[1] or match[2] or match[3] or "").strip()
        text = _visible_text(match[4])
        text_domain = _text_domain(text)
        target = _target_domain(href)
        if text_domain is None or target is None or same_organization(text_domain, target):
            continue
        if (text_domain, target) in seen:
            continue
        seen.add((text_domain, target))
        found.append(
            FindingData(
                kind=FindingKind.LINK_MISMATCH,
                detail=f"link text {quoted(text)} shows {text_domain} but points to {quoted(href)}",
            )
        )
        if len(found) == MAX_LINK_FINDINGS:
            break
    return found


def _visible_text(inner_html: str) -> str:
    text = html.unescape(_TAG.sub("", inner_html))
    return _WHITESPACE.sub(" ", text).strip()


def _text_domain(text: str) -> str | None:
    """Return the domain that link text shows, when the whole text is a URL or a domain."""
    text = text.rstrip(".,;:!?)")
    match = _URL_TEXT.fullmatch(text)
    if match is None:
        return None
    host = match["host"]
    # Without a scheme, demand a real top-level domain, so "v2.5" or "readme.txt" stays text.
    if match["scheme"] is None and not is_known_tld(host):
        return None
    return normalize_domain(host)


def _target_domain(href: str) -> str | None:
    try:
        parts = urlsplit(href)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return normalize_domain(host)
