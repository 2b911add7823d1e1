"""Domain names found in addresses, display names and link text, and how to compare them."""

from __future__ import annotations

import re

#: Generic top-level domains recognised in free text. Every two-letter country code is
#: recognised too. A bare word such as "john.smith" must not read as a domain, so a
#: longer top-level domain outside this set is not taken as one. ``example`` and ``test``
#: are reserved for documentation and tests (RFC 2606), so demo and test mail can use them.
_GENERIC_TLDS = frozenset(
    {
        "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "name", "pro",
        "aero", "asia", "cat", "coop", "jobs", "mobi", "museum", "tel", "travel", "app",
        "dev", "page", "site", "online", "top", "xyz", "club", "shop", "store", "tech",
        "email", "link", "live", "cloud", "bank", "help", "support", "services", "secure",
        "example", "test",
    }
)  # fmt: skip

#: Second-level labels under which a country code registry sells names (``example.co.uk``).
_COUNTRY_SECOND_LEVELS = frozenset(
    {"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go", "gob", "mil", "ltd", "plc"}
)

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"

#: A domain name inside free text, ending in an alphabetic or punycode top-level domain.
DOMAIN_IN_TEXT = re.compile(
    rf"(?<![\w.@-])((?:{_LABEL}\.)+(?:[a-z]{{2,24}}|xn--[a-z0-9-]{{1,59}}))\.?(?![\w-])",
    re.IGNORECASE,
)

#: An email address inside free text.
ADDRESS_IN_TEXT = re.compile(
    rf"[\w.!#$%&'*+/=?^`{{|}}~-]+@((?:{_LABEL}\.)+[a-z0-9-]{{2,63}})",
    re.IGNORECASE,
)


def normalize_domain(domain: str) -> str:
    """Return ``domain`` lower-cased, without a trailing dot, in its ASCII (punycode) form.

    A name that IDNA cannot encode is returned lower-cased as it is.
    """
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def domain_of(address: str) -> str | None:
    """Return the normalized domain of an email address, or None when it has none."""
    _, at, domain = address.rpartition("@")
    if not at or not domain:
        return None
    return normalize_domain(domain)


def is_known_tld(domain: str) -> bool:
    """Tell whether the last label of ``domain`` is a top-level domain worth matching in text."""
    tld = domain.rstrip(".").rpartition(".")[2].lower()
    return len(tld) == 2 or tld in _GENERIC_TLDS or tld.startswith("xn--")


def organizational_domain(domain: str) -> str:
    """Return the registered part of ``domain``: ``mail.example.co.uk`` -> ``example.co.uk``.

    NOTE: an approximation of the Public Suffix List. It keeps two labels, or three under a
    country code with a common second-level label, so private suffixes such as
    ``github.io`` count as one organization.
    """
    labels = normalize_domain(domain).split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _COUNTRY_SECOND_LEVELS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def same_organization(first: str, second: str) -> bool:
    """Tell whether two domains belong to the same organization (equal or sharing a parent)."""
    first = normalize_domain(first)
    second = normalize_domain(second)
    if first == second:
        return True
    return organizational_domain(first) == organizational_domain(second)
