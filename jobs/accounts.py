"""Connecting and removing a user's IMAP accounts.

Connecting only validates and stores the account: the API process never talks to the mail
server, so bad credentials show up as a failed scan with a clear code.
"""

from __future__ import annotations

import asyncio
import logging
import re

from beanie import SortDirection

from jobs.documents import EmailAccount, ImapSecurity, ScannedMessage
from jobs.errors import InvalidInputError
from jobs.hosts import IPAddress, first_rejected, is_metadata, parse_ip, resolve
from jobs.lifecycle import cancel_account_scans, find_user_account
from jobs.runtime import Runtime
from jobs.secrets import encrypt_secret
from jobs.settings import Settings

logger = logging.getLogger(__name__)

#: Maximum length of an account label, in characters.
MAX_LABEL_LENGTH = 100
#: Maximum length of a host name (RFC 1035), in characters.
MAX_HOST_LENGTH = 253
#: Seconds allowed for resolving the host before the request is rejected.
RESOLVE_TIMEOUT_S = 5.0

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


async def connect_imap_account(
    rt: Runtime,
    user_id: str,
    *,
    host: str,
    port: int,
    security: ImapSecurity,
    username: str,
    password: str,
    folders: list[str],
    label: str | None,
) -> EmailAccount:
    """Validate and store an IMAP account with its password encrypted.

    ``label`` defaults to ``username@host``. Raises InvalidInputError naming the field when a
    value is invalid, or when ``host`` resolves to an address that the settings do not allow.
    """
    host = host.strip()
    _check_host_syntax(host)
    _check_port(port)
    _check_security(rt.settings, security)
    _check_required("username", username)
    _check_required("password", password)
    _check_folders(folders)
    label = _account_label(label, username, host)
    if rt.settings.allow_private_hosts:
        _check_not_metadata(host)
    else:
        await _check_public_host(host, port)

    account = EmailAccount(
        user_id=user_id,
        label=label,
        host=host,
        port=port,
        security=security,
        username=username,
        password_encrypted=encrypt_secret(rt.settings, password),
        folders=folders,
    )
    await account.insert()
    logger.info("account %s user %s connected (%s:%d)", account.id, user_id, host, port)
    return account


async def remove_account(rt: Runtime, user_id: str, account_id: str) -> None:
    """Cancel the account's active scans, then delete the account and its scanned messages.

    Task history stays: each task keeps the account label it was created with.
    Raises NotFoundError when the user has no such account.
    """
    account = await find_user_account(user_id, account_id)
    await cancel_account_scans(rt, user_id, account_id)

    # NOTE: a running scan stops within about a second of the cancel request, so it can save
    # one more batch after this delete. Those messages stay behind without their account.
    deleted = await ScannedMessage.find({"user_id": user_id, "account_id": account_id}).delete()
    await account.delete()
    count = deleted.deleted_count if deleted is not None else 0
    logger.info("account %s user %s removed with %d messages", account_id, user_id, count)


async def list_accounts(user_id: str) -> list[EmailAccount]:
    """Return the user's accounts, oldest first."""
    order = [("created_at", SortDirection.ASCENDING), ("_id", SortDirection.ASCENDING)]
    return await EmailAccount.find({"user_id": user_id}).sort(order).to_list()


def _check_host_syntax(host: str) -> None:
    if not host:
        raise InvalidInputError(
            "host", "host is empty; enter the IMAP server name, e.g. imap.example.com"
        )
    if parse_ip(host) is not None:
        return
    name = host.removesuffix(".")
    labels = name.split(".")
    if len(name) > MAX_HOST_LENGTH or not all(_HOST_LABEL.match(label) for label in labels):
        raise InvalidInputError(
            "host",
            f"host {host!r} is not a valid host name or IP address; "
            "enter the IMAP server name, e.g. imap.example.com",
        )


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InvalidInputError(
            "port", f"port must be from 1 to 65535, got {port}; IMAPS is usually 993, IMAP 143"
        )


def _check_security(settings: Settings, security: ImapSecurity) -> None:
    if security is ImapSecurity.NONE and not settings.allow_insecure_imap:
        raise InvalidInputError(
            "security",
            "security NONE (IMAP without TLS) is not allowed on this server; use SSL or STARTTLS",
        )


def _check_required(field: str, value: str) -> None:
    if not value:
        raise InvalidInputError(field, f"{field} is empty; enter the {field} of the mailbox")


def _check_folders(folders: list[str]) -> None:
    if not folders:
        raise InvalidInputError("folders", "folders is empty; list at least one folder, e.g. INBOX")
    for index, folder in enumerate(folders):
        if not folder.strip():
            raise InvalidInputError(
                "folders",
                f"folders[{index}] is empty; give each folder's name, e.g. INBOX",
            )


def _account_label(label: str | None, username: str, host: str) -> str:
    if label is None or not label.strip():
        return f"{username}@{host}"[:MAX_LABEL_LENGTH]
    label = label.strip()
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidInputError(
            "label",
            f"label has {len(label)} characters; use at most {MAX_LABEL_LENGTH}",
        )
    return label


async def _check_public_host(host: str, port: int) -> None:
    """Reject a host that resolves to an address reserved for local or internal use.

    The worker checks the address again when it connects (see ``jobs.imap.connection``).
    """
    rejected = first_rejected(await _resolve(host, port))
    if rejected is not None:
        raise InvalidInputError(
            "host",
            f"host {host!r} resolves to {rejected}, which is a loopback, private, link-local, "
            "multicast or metadata address; enter the public name of the IMAP server",
        )


def _check_not_metadata(host: str) -> None:
    """Reject a cloud metadata address written as the host, even where private hosts are
    allowed. The worker checks the resolved address of a name when it connects."""
    address = parse_ip(host)
    if address is not None and is_metadata(address):
        raise InvalidInputError(
            "host",
            f"host {host!r} is a cloud metadata address, not an IMAP server; "
            "enter the name of the IMAP server",
        )


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return await asyncio.wait_for(asyncio.to_thread(resolve, host, port), RESOLVE_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise InvalidInputError(
            "host", f"host {host!r} cannot be resolved ({exc}); check the server name"
        ) from exc
