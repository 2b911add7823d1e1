"""Sender, recipients and Reply-To, and the findings about display names and Reply-To."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses

from jobs.analysis.domains import (
    ADDRESS_IN_TEXT,
    DOMAIN_IN_TEXT,
    domain_of,
    is_known_tld,
    normalize_domain,
    same_organization,
)
from jobs.analysis.findings import quoted
from jobs.analysis.headers import HeaderReader
from jobs.documents import FindingData, FindingKind

#: ``Display Name <local@domain>``, for values the stdlib splits wrongly (an unquoted name
#: holding an address or a comma).
_NAME_AND_ANGLE_ADDRESS = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>\s*$", re.DOTALL)

_RECIPIENT_HEADERS = ("To", "Cc", "Bcc")

#: Characters after which an address list needs the full RFC 5322 parser: quoted strings,
#: comments, groups, escapes and source routes.
_SPECIALS = frozenset('"()\\:;[]')

_PLAIN_MAILBOX = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<\s*(?P<address>[^<>\s]*)\s*>\s*$")


@dataclass(frozen=True)
class Sender:
    #: Lower-cased address, or None when From is absent or contains no valid address.
    address: str | None
    #: Decoded display name, or None when there is none.
    name: str | None


def read_sender(reader: HeaderReader) -> Sender:
    """Read the first address of From. A From without a valid address is reported malformed."""
    raw = reader.raw("From")
    if raw is None or not raw:
        return Sender(address=None, name=None)
    name, address = _split_mailbox(raw)
    if address is None:
        reader.report("From header", raw, "no valid address")
        return Sender(address=None, name=reader.decode("From header", raw) or None)
    decoded_name = reader.decode("From display name", name).strip()
    return Sender(address=address, name=decoded_name or None)


def count_recipients(reader: HeaderReader) -> int:
    """Count the unique addresses in To, Cc and Bcc, ignoring case."""
    values = [value for name in _RECIPIENT_HEADERS for value in reader.raw_all(name)]
    return len(_addresses(values))


def read_reply_to(reader: HeaderReader) -> list[str]:
    return sorted(_addresses(reader.raw_all("Reply-To")))


def read_list_domains(reader: HeaderReader) -> list[str]:
    """Return the domains of the mailing list that sent the message (List-Id, List-Post)."""
    domains: list[str] = []
    list_id = reader.raw("List-Id")
    if list_id is not None:
        # RFC 2919: "Name <list-label.example.org>"; the label before the domain is the list's.
        identifier = list_id.rpartition("<")[2].rstrip(">").strip()
        domains.append(identifier.partition(".")[2] or identifier)
    list_post = reader.raw("List-Post")
    if list_post is not None:
        domains.extend(
            domain
            for _, address in _parse_address_list([list_post.replace("mailto:", "")])
            if (domain := domain_of(address)) is not None
        )
    return [normalize_domain(domain) for domain in domains if domain]


def _addresses(values: list[str]) -> set[str]:
    return {address.lower() for _, address in _parse_address_list(values) if _is_address(address)}


def _parse_address_list(values: list[str]) -> list[tuple[str, str]]:
    """Split address list values into (display name, address) pairs like ``getaddresses``."""
    if not any(char in value for value in values for char in _SPECIALS):
        return [_split_plain(item) for value in values for item in value.split(",")]
    try:
        return getaddresses(values)
    except RecursionError:
        # The stdlib parser recurses once per nested group or route; a hostile header with
        # thousands of them exhausts the stack. Fall back to picking out the addresses.
        return [("", match[0]) for value in values for match in ADDRESS_IN_TEXT.finditer(value)]


def _split_plain(item: str) -> tuple[str, str]:
    """Split ``name <address>`` or a bare address. The item contains no RFC 5322 specials."""
    match = _PLAIN_MAILBOX.match(item)
    if match is not None:
        return match["name"], match["address"]
    if "<" in item or ">" in item:
        return getaddresses([item])[0]
    return "", item.strip()


def _split_mailbox(value: str) -> tuple[str, str | None]:
    """Split the first mailbox of an address list into its display name and address.

    The stdlib splits an unquoted name holding an address (``PayPal service@paypal.com
    <x@example.net>``) into two mailboxes. When any mailbox it returns is invalid, the value
    is read as ``name <address>`` instead.
    """
    pairs = [(name, address) for name, address in _parse_address_list([value]) if name or address]
    valid = [(name, address.lower()) for name, address in pairs if _is_address(address)]
    if valid and len(valid) == len(pairs):
        return valid[0]
    match = _NAME_AND_ANGLE_ADDRESS.match(value)
    if match and _is_address(match["address"].strip()):
        return match["name"].strip().strip('"').strip(), match["address"].strip().lower()
    if valid:
        return valid[0]
    return value, None


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not any(char.isspace() for char in address)


def display_name_spoof(sender: Sender) -> FindingData | None:
    """Flag a display name holding an address or a domain of another organization.

    ``"PayPal <service@paypal.com>" <x@example.net>`` shows the reader an address that did not
    send the message. A name naming the sender's own domain or a subdomain of it is fine.
    """
    if sender.address is None or not sender.name:
        return None
    sender_domain = domain_of(sender.address)
    if sender_domain is None:
        return None
    for named_domain in _domains_named(sender.name):
        if not same_organization(named_domain, sender_domain):
            return FindingData(
                kind=FindingKind.DISPLAY_NAME_SPOOF,
                detail=(
                    f"display name {quoted(sender.name)} names {named_domain}"
                    f" but the sender is {sender.address}"
                ),
            )
    return None


def _domains_named(name: str) -> list[str]:
    domains = [match[1] for match in ADDRESS_IN_TEXT.finditer(name)]
    without_addresses = ADDRESS_IN_TEXT.sub(" ", name)
    domains.extend(
        match[1] for match in DOMAIN_IN_TEXT.finditer(without_addresses) if is_known_tld(match[1])
    )
    return domains


def reply_to_mismatch(
    sender: Sender, reply_to: list[str], list_domains: list[str]
) -> FindingData | None:
    """Flag a Reply-To address in another organization than the From address.

    A mailing list that directs replies to itself (a Reply-To in the domain of its List-Id
    or List-Post) is not flagged.
    """
    if sender.address is None:
        return None
    sender_domain = domain_of(sender.address)
    if sender_domain is None:
        return None
    allowed = [sender_domain, *list_domains]
    for address in reply_to:
        reply_domain = domain_of(address)
        if reply_domain is None:
            continue
        if not any(same_organization(reply_domain, domain) for domain in allowed):
            return FindingData(
                kind=FindingKind.REPLY_TO_MISMATCH,
                detail=(
                    f"Reply-To {address} is in domain {reply_domain}"
                    f" but From {sender.address} is in {sender_domain}"
                ),
            )
    return None
