"""Opening an IMAP connection over TLS (SSL), STARTTLS or, when allowed, plain text.

The host name is resolved once, every resolved address is checked against the host policy
of :mod:`jobs.hosts`, and the TCP connection goes to the first address. TLS still uses the
host name for SNI and certificate verification, so pinning the address does not weaken it.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Literal

from jobs.errors import PermanentScanError
from jobs.hosts import first_rejected, resolve
from jobs.imap.errors import (
    BUSY_RESPONSE_CODES,
    Endpoint,
    reply_text,
    response_code,
    server_busy,
    translating_transport_errors,
)
from jobs.settings import get_settings

logger = logging.getLogger(__name__)

Security = Literal["SSL", "STARTTLS", "NONE"]

SECURITY_MODES: tuple[Security, ...] = ("SSL", "STARTTLS", "NONE")

#: Called with each socket the connection starts using, so another thread can shut it down.
SocketObserver = Callable[[socket.socket], None]


def _connect_socket(address: str, port: int, timeout: float | None) -> socket.socket:
    return socket.create_connection((address, port), timeout)


class _ObservedIMAP4(imaplib.IMAP4):
    """IMAP4 connected to a resolved ``address``; ``host`` stays the name."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, observer: SocketObserver
    ) -> None:
        self._address = address
        self._observer = observer
        super().__init__(host, port, timeout)

    # _create_socket is a private hook of imaplib (checked in Python 3.11), not in typeshed.
    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = _connect_socket(self._address, self.port, timeout)
        self._observer(sock)
        return sock


class _ObservedIMAP4SSL(imaplib.IMAP4_SSL):
    """IMAP4 over TLS connected to a resolved ``address``; the TLS server name is ``host``."""

    def __init__(
        self,
        host: str,
        address: str,
        port: int,
        context: ssl.SSLContext,
        timeout: float,
        observer: SocketObserver,
    ) -> None:
        self._address = address
        self._observer = observer
        super().__init__(host, port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        # The TCP socket is reported before the TLS handshake, which can block too.
        sock = _connect_socket(self._address, self.port, timeout)
        self._observer(sock)
        context: ssl.SSLContext = self.ssl_context
        wrapped = context.wrap_socket(sock, server_hostname=self.host)
        self._observer(wrapped)
        return wrapped


def create_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Create a context that verifies the server certificate and host name.

    ``ca_file`` replaces the system CA store when given. Raises PermanentScanError
    TLS_ERROR when the file cannot be loaded.
    """
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise PermanentScanError(
            "TLS_ERROR",
            f"The IMAP CA file {ca_file!r} could not be loaded ({exc}); "
            "check the CA file setting (MAILSCAN_IMAP_CA_FILE).",
        ) from exc


def open_connection(
    endpoint: Endpoint,
    security: Security,
    *,
    ca_file: str | None,
    allow_insecure: bool,
    observer: SocketObserver,
    allow_private_hosts: bool | None = None,
) -> imaplib.IMAP4:
    """Connect, read the greeting and, for STARTTLS, upgrade to TLS.

    ``observer`` receives every socket as soon as it exists. ``allow_private_hosts`` defaults
    to the process setting ``MAILSCAN_ALLOW_PRIVATE_HOSTS``. Raises PermanentScanError
    (INSECURE_CONNECTION, HOST_NOT_ALLOWED, TLS_ERROR) or TransientScanError
    (CONNECTION_FAILED, TIMEOUT, SERVER_UNAVAILABLE). Every socket operation of the returned
    connection times out after ``endpoint.timeout_s``.
    """
    if security not in SECURITY_MODES:
        raise ValueError(f"security must be one of {SECURITY_MODES}, got {security!r}")
    if security == "NONE" and not allow_insecure:
        raise PermanentScanError(
            "INSECURE_CONNECTION",
            f"Plain-text IMAP to {endpoint} is not allowed because it would send the "
            "password unencrypted; use SSL or STARTTLS.",
        )

    if allow_private_hosts is None:
        # NOTE: ImapSession does not pass the flag yet, so the worker uses its own setting.
        allow_private_hosts = get_settings().allow_private_hosts

    context = None if security == "NONE" else create_tls_context(ca_file)
    with translating_transport_errors(endpoint):
        address = _allowed_address(endpoint, allow_private_hosts)
        logger.debug(
            "connecting to IMAP server %s at %s with security %s", endpoint, address, security
        )
        imap = _connect(endpoint, address, context if security == "SSL" else None, observer)
    if context is None or security == "SSL":
        return imap

    try:
        _start_tls(imap, endpoint, context)
        observer(imap.sock)
    except BaseException:
        _shutdown_quietly(imap)
        raise
    return imap


def _allowed_address(endpoint: Endpoint, allow_private_hosts: bool) -> str:
    """Resolve the endpoint's host once and return the address to connect to.

    Raises PermanentScanError HOST_NOT_ALLOWED when an address is not allowed (a cloud
    metadata address never is), and OSError when the name cannot be resolved.
    """
    addresses = resolve(endpoint.host, endpoint.port)
    if not addresses:
        raise OSError(f"host {endpoint.host!r} has no IP address")
    rejected = first_rejected(addresses, allow_private=allow_private_hosts)
    if rejected is not None:
        raise PermanentScanError(
            "HOST_NOT_ALLOWED",
            f"IMAP server {endpoint} resolves to {rejected}, which is a loopback, private, "
            "link-local, multicast or metadata address; connect the account with the "
            "public name of the server.",
        )
    return str(addresses[0])


def _connect(
    endpoint: Endpoint, address: str, context: ssl.SSLContext | None, observer: SocketObserver
) -> imaplib.IMAP4:
    host, port, timeout_s = endpoint.host, endpoint.port, endpoint.timeout_s
    try:
        if context is not None:
            return _ObservedIMAP4SSL(host, address, port, context, timeout_s, observer)
        return _ObservedIMAP4(host, address, port, timeout_s, observer)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        # imaplib raises a plain error when the greeting is not OK or PREAUTH, such as
        # "* BYE Too many connections".
        raise server_busy(endpoint, "greeting", reply_text(exc)) from exc


def _start_tls(imap: imaplib.IMAP4, endpoint: Endpoint, context: ssl.SSLContext) -> None:
    if "STARTTLS" not in imap.capabilities:
        raise PermanentScanError(
            "TLS_ERROR",
            f"IMAP server {endpoint} does not offer STARTTLS; use security SSL "
            "(usually port 993) or ask the provider to enable TLS.",
        )
    with translating_transport_errors(endpoint):
        try:
            imap.starttls(context)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            reply = reply_text(exc)
            if response_code(reply) in BUSY_RESPONSE_CODES:
                raise server_busy(endpoint, "STARTTLS", reply) from exc
            raise PermanentScanError(
                "TLS_ERROR", f"IMAP server {endpoint} rejected STARTTLS: {reply}"
            ) from exc
        # imaplib wraps the socket in place; set the timeout again rather than rely on
        # the wrapped socket copying it.
        imap.sock.settimeout(endpoint.timeout_s)
    logger.debug("TLS established with %s via STARTTLS", endpoint)


def _shutdown_quietly(imap: imaplib.IMAP4) -> None:
    try:
        imap.shutdown()
    except OSError as exc:
        logger.debug("closing the connection failed: %s", exc)
