"""Translation of socket, TLS and IMAP failures into :class:`~jobs.errors.ScanError`.

Codes raised by the IMAP source:

    PermanentScanError
     +-- AUTH_FAILED            the server rejected the username or password
     +-- FOLDER_NOT_FOUND       SELECT/EXAMINE of the folder failed
     +-- TLS_ERROR              certificate verification or the TLS handshake failed
     +-- INSECURE_CONNECTION    plain-text IMAP was requested or required but is not allowed
     +-- PROTOCOL_ERROR         the server sent a response this client cannot parse
    TransientScanError
     +-- CONNECTION_FAILED      DNS failure, connection refused, reset or closed
     +-- TIMEOUT                a socket operation took longer than the timeout
     +-- SERVER_UNAVAILABLE     BYE, [UNAVAILABLE], [INUSE] or another busy-server reply
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from jobs.errors import PermanentScanError, ScanError, TransientScanError

#: Response codes (RFC 5530 and RFC 3501) that mean "try again later".
BUSY_RESPONSE_CODES = frozenset({"UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG", "OVERQUOTA"})

_RESPONSE_CODE = re.compile(r"\[([A-Za-z0-9.-]+)")


@dataclass(frozen=True)
class Endpoint:
    """Address of one IMAP server, as shown in messages and logs."""

    host: str
    port: int
    #: Timeout of every socket operation, in seconds.
    timeout_s: float

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


class ResponseError(ValueError):
    """The server sent a response that does not follow the IMAP grammar."""


def response_code(text: str) -> str | None:
    """Return the upper-cased response code of a status text, ``[INUSE] ...`` -> ``INUSE``."""
    match = _RESPONSE_CODE.search(text)
    if match is None:
        return None
    return match.group(1).upper()


def reply_text(exc: imaplib.IMAP4.error) -> str:
    """Return the server reply carried by an imaplib error, decoded if it came as bytes."""
    if not exc.args:
        return type(exc).__name__
    reply = exc.args[0]
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


def server_busy(endpoint: Endpoint, command: str, reply: str) -> TransientScanError:
    return TransientScanError(
        "SERVER_UNAVAILABLE",
        f"IMAP server {endpoint} is unavailable or busy ({command}: {reply}); "
        "the scan will be retried later.",
    )


def protocol_error(endpoint: Endpoint, detail: str) -> PermanentScanError:
    return PermanentScanError(
        "PROTOCOL_ERROR", f"IMAP server {endpoint} sent an invalid response: {detail}"
    )


def login_error(endpoint: Endpoint, username: str, reply: str) -> ScanError:
    """Map a rejected LOGIN or AUTHENTICATE; ``reply`` must not contain the password."""
    code = response_code(reply)
    if code in BUSY_RESPONSE_CODES:
        return server_busy(endpoint, "LOGIN", reply)
    if code == "PRIVACYREQUIRED":
        return PermanentScanError(
            "INSECURE_CONNECTION",
            f"IMAP server {endpoint} rejects logins without TLS ({reply}); "
            "use security SSL or STARTTLS.",
        )
    return PermanentScanError(
        "AUTH_FAILED",
        f"IMAP server {endpoint} rejected the login for {username!r} ({reply}). "
        "Check the username and password; accounts with two-step verification "
        "need an app password.",
    )


def select_error(endpoint: Endpoint, folder: str, reply: str) -> ScanError:
    """Map a failed EXAMINE of ``folder``."""
    if response_code(reply) in BUSY_RESPONSE_CODES:
        return server_busy(endpoint, f"EXAMINE {folder!r}", reply)
    return PermanentScanError(
        "FOLDER_NOT_FOUND",
        f"Folder {folder!r} cannot be opened on IMAP server {endpoint} ({reply}); "
        "check the folder name.",
    )


def command_error(endpoint: Endpoint, command: str, status: str, text: str) -> ScanError:
    """Map a NO or BAD completion of SEARCH or FETCH.

    NO means the server could not do it now, so the scan is retried. BAD means it did not
    understand the command, which retrying cannot fix.
    """
    if status == "NO":
        return server_busy(endpoint, command, text)
    return protocol_error(endpoint, f"{command} failed: {status} {text}")


def transport_error(exc: BaseException, endpoint: Endpoint) -> ScanError:
    """Map a socket, TLS or imaplib connection failure to a ScanError naming the server."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentScanError(
            "TLS_ERROR",
            f"The TLS certificate of {endpoint.host} could not be verified "
            f"({exc.verify_message}). If the server uses a private or self-signed "
            "certificate, set the IMAP CA file (MAILSCAN_IMAP_CA_FILE) to its CA bundle.",
        )
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TransientScanError(
            "CONNECTION_FAILED", f"IMAP server {endpoint} closed the TLS connection."
        )
    if isinstance(exc, ssl.SSLError):
        return PermanentScanError(
            "TLS_ERROR",
            f"TLS handshake with IMAP server {endpoint} failed ({exc.reason or exc}); "
            "check that the port matches the security setting (SSL or STARTTLS).",
        )
    if isinstance(exc, socket.gaierror):
        return TransientScanError(
            "CONNECTION_FAILED",
            f"Could not resolve the IMAP host {endpoint.host!r} ({exc.strerror}); "
            "check the server name.",
        )
    if isinstance(exc, TimeoutError):
        return TransientScanError(
            "TIMEOUT",
            f"IMAP server {endpoint} did not answer within {endpoint.timeout_s:g} s; "
            "check the host and port and that the server is up.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransientScanError(
            "CONNECTION_FAILED",
            f"Connection to IMAP server {endpoint} was refused; check the host and the port "
            "(usually 993 for SSL, 143 for STARTTLS).",
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return TransientScanError(
            "CONNECTION_FAILED", f"Connection to IMAP server {endpoint} failed: {reason}."
        )
    if isinstance(exc, imaplib.IMAP4.abort) and not str(exc).startswith("socket error"):
        # imaplib raises abort with the server's text when the server sends BYE.
        return server_busy(endpoint, "BYE", reply_text(exc))
    return TransientScanError(
        "CONNECTION_FAILED", f"Connection to IMAP server {endpoint} was lost: {exc}."
    )


@contextmanager
def translating_transport_errors(endpoint: Endpoint) -> Iterator[None]:
    """Re-raise OSError, TLS errors and ``imaplib.IMAP4.abort`` as ScanError."""
    try:
        yield
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise transport_error(exc, endpoint) from exc
