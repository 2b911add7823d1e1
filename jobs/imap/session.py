"""One IMAP session: login, read-only folder selection, UID SEARCH and batched UID FETCH."""

from __future__ import annotations

import imaplib
import logging
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from types import TracebackType
from typing import BinaryIO, cast

from jobs.errors import ScanError, TransientScanError
from jobs.imap.connection import Security, open_connection
from jobs.imap.errors import (
    Endpoint,
    ResponseError,
    command_error,
    login_error,
    protocol_error,
    reply_text,
    response_code,
    select_error,
    transport_error,
)
from jobs.imap.fetch import (
    FetchedMessage,
    FetchRecords,
    build_messages,
    merge_fetch_responses,
    message_size,
)
from jobs.imap.protocol import (
    CommandPipe,
    Completion,
    ResponseReader,
    Segments,
    quote_mailbox,
    sequence_set,
)

logger = logging.getLogger(__name__)

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Maximum literal in SEARCH and metadata FETCH responses, in bytes. Neither normally has one.
_MAX_METADATA_LITERAL_BYTES = 1024 * 1024

_METADATA_ITEMS = b"(UID FLAGS INTERNALDATE RFC822.SIZE)"
_BODY_ITEMS = b"(UID BODY.PEEK[])"
# The header block is cut at the message limit too, so that no literal exceeds it.
_HEADER_ITEMS = b"(UID BODY.PEEK[HEADER]<0.%d>)"


class ImapSession:
    """A synchronous IMAP client for one mailbox scan; not thread-safe.

    Every method raises :class:`~jobs.errors.ScanError` (see :mod:`jobs.imap.errors` for
    the codes). After a connection failure or timeout the session is unusable: further
    calls raise CONNECTION_FAILED, and the caller must open a new session.
    """

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        *,
        timeout_s: float,
        ca_file: str | None = None,
        allow_insecure: bool = False,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self._endpoint = Endpoint(host, port, timeout_s)
        self._security = security
        self._ca_file = ca_file
        self._allow_insecure = allow_insecure
        self._imap: imaplib.IMAP4 | None = None
        self._socket: socket.socket | None = None
        self._pipe: CommandPipe | None = None
        self._broken = False
        self._aborted = False
        self._folder: str | None = None

    def __enter__(self) -> ImapSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def connect_and_login(self, username: str, password: str) -> None:
        """Connect and log in; raise AUTH_FAILED when the server rejects the credentials."""
        if self._imap is not None:
            raise RuntimeError(f"session to {self._endpoint} is already connected")
        try:
            imap = open_connection(
                self._endpoint,
                self._security,
                ca_file=self._ca_file,
                allow_insecure=self._allow_insecure,
                observer=self._observe_socket,
            )
        except ScanError as exc:
            if self._aborted:
                raise self._aborted_error() from exc
            raise
        self._imap = imap
        self._pipe = CommandPipe(imap, self._endpoint)
        with self._transport():
            rejection = self._try_login(imap, username, password)
        if rejection is not None:
            # "from None" because the imaplib error contains the unredacted server reply.
            raise login_error(self._endpoint, username, rejection) from None
        logger.debug("logged in to %s as %r", self._endpoint, username)

    def select(self, folder: str) -> int:
        """Open ``folder`` read-only (EXAMINE) and return its UIDVALIDITY."""
        imap = self._connected()
        with self._transport():
            rejection = self._try_examine(imap, folder)
        if rejection is not None:
            raise select_error(self._endpoint, folder, rejection)

        values = imap.untagged_responses.get("UIDVALIDITY") or [b""]
        uid_validity = values[-1]
        if not isinstance(uid_validity, bytes) or not uid_validity.isdigit():
            raise protocol_error(self._endpoint, f"no UIDVALIDITY for folder {folder!r}")
        self._folder = folder
        exists = imap.untagged_responses.get("EXISTS", [b"?"])[-1]
        logger.debug(
            "selected %r on %s: UIDVALIDITY %s, %s messages",
            folder,
            self._endpoint,
            uid_validity.decode(),
            _printable(exists),
        )
        return int(uid_validity)

    def search_since(self, since: date) -> list[int]:
        """Return the ascending UIDs whose INTERNALDATE is on or after ``since``.

        The server compares dates only, ignoring the time of day (UID SEARCH SINCE).
        """
        command = b"UID SEARCH SINCE %d-%s-%d" % (
            since.day,
            _MONTH_NAMES[since.month - 1].encode(),
            since.year,
        )
        untagged, completions = self._run([command], _MAX_METADATA_LITERAL_BYTES)
        self._check_completion("UID SEARCH", completions[0])

        uids: set[int] = set()
        for response in untagged:
            head = response[0]
            if head[:9].upper() == b"* SEARCH " or head.upper() == b"* SEARCH":
                uids.update(self._parse_search(head[9:]))
        result = sorted(uids)
        logger.debug(
            "search since %s in %r on %s: %d messages",
            since,
            self._folder,
            self._endpoint,
            len(result),
        )
        return result

    def fetch(self, uids: Sequence[int], *, max_message_bytes: int) -> list[FetchedMessage]:
        """Fetch the messages with these UIDs, in ascending UID order.

        Messages larger than ``max_message_bytes`` (RFC822.SIZE) come with their header
        block only. UIDs that no longer exist (expunged) are skipped. Two round trips: one
        for flags, dates and sizes, then one for bodies and headers, pipelined.
        """
        if not uids:
            return []
        try:
            records = self._fetch_metadata(uids)
            sizes = {uid: message_size(record) for uid, record in records.items()}
            small = [uid for uid, size in sizes.items() if size <= max_message_bytes]
            large = [uid for uid, size in sizes.items() if size > max_message_bytes]
            self._fetch_contents(records, small, large, max_message_bytes)
            messages = build_messages(records, max_message_bytes)
        except ResponseError as exc:
            raise protocol_error(self._endpoint, str(exc)) from exc

        logger.debug(
            "fetched %d of %d messages (%d header only) from %r on %s",
            len(messages),
            len(set(uids)),
            len(large),
            self._folder,
            self._endpoint,
        )
        return messages

    def abort(self) -> None:
        """Interrupt the operation running in another thread; safe to call from any thread.

        The interrupted call raises TransientScanError CONNECTION_FAILED, and the session
        is unusable afterwards. :meth:`close` must still be called.
        """
        self._aborted = True
        self._broken = True
        sock = self._socket
        if sock is not None:
            _shut_down(sock, self._endpoint)
        logger.debug("aborted the session to %s", self._endpoint)

    def close(self) -> None:
        """Log out and close the connection; never raises."""
        imap, self._imap, self._pipe = self._imap, None, None
        if imap is None:
            return
        try:
            if self._broken:
                imap.shutdown()  # LOGOUT would wait for a server that stopped responding
            else:
                imap.logout()
        except Exception as exc:  # close() runs in cleanup paths and must not mask errors
            logger.debug("closing the session to %s failed: %r", self._endpoint, exc)
        logger.debug("closed the session to %s", self._endpoint)

    # Steps of fetch().

    def _fetch_metadata(self, uids: Sequence[int]) -> FetchRecords:
        command = b"UID FETCH " + sequence_set(uids) + b" " + _METADATA_ITEMS
        untagged, completions = self._run([command], _MAX_METADATA_LITERAL_BYTES)
        self._check_fetch_completion(completions[0])
        requested = set(uids)
        records: FetchRecords = {}
        merge_fetch_responses(untagged, records, requested)
        return {uid: record for uid, record in records.items() if "RFC822.SIZE" in record}

    def _fetch_contents(
        self,
        records: FetchRecords,
        small: list[int],
        large: list[int],
        max_message_bytes: int,
    ) -> None:
        commands = []
        if small:
            commands.append(b"UID FETCH " + sequence_set(small) + b" " + _BODY_ITEMS)
        if large:
            commands.append(
                b"UID FETCH " + sequence_set(large) + b" " + _HEADER_ITEMS % max_message_bytes
            )
        if not commands:
            return
        untagged, completions = self._run(commands, max_message_bytes)
        for completion in completions:
            self._check_fetch_completion(completion)
        merge_fetch_responses(untagged, records, set(records))

    # Plumbing.

    def _run(
        self, commands: list[bytes], max_literal_bytes: int
    ) -> tuple[list[Segments], list[Completion]]:
        imap = self._connected()
        assert self._pipe is not None  # set together with self._imap
        reader = ResponseReader(cast(BinaryIO, imap.file), max_literal_bytes=max_literal_bytes)
        with self._transport():
            return self._pipe.run(commands, reader)

    @contextmanager
    def _transport(self) -> Iterator[None]:
        """Translate connection failures and mark the session unusable after one."""
        try:
            yield
        except (OSError, imaplib.IMAP4.abort, EOFError, ValueError, ScanError) as exc:
            self._broken = True
            if self._aborted:
                raise self._aborted_error() from exc
            if isinstance(exc, ScanError):
                raise
            if isinstance(exc, ResponseError):
                raise protocol_error(self._endpoint, str(exc)) from exc
            if isinstance(exc, EOFError):
                raise TransientScanError(
                    "CONNECTION_FAILED", f"IMAP server {self._endpoint} closed the connection."
                ) from exc
            if isinstance(exc, ValueError):
                raise  # a programming error, not a connection failure
            raise transport_error(exc, self._endpoint) from exc

    def _aborted_error(self) -> TransientScanError:
        return TransientScanError(
            "CONNECTION_FAILED", f"The session to {self._endpoint} was aborted."
        )

    def _observe_socket(self, sock: socket.socket) -> None:
        self._socket = sock
        if self._aborted:  # abort() ran before this socket existed
            _shut_down(sock, self._endpoint)

    def _connected(self) -> imaplib.IMAP4:
        if self._aborted:
            raise self._aborted_error()
        if self._broken:
            raise TransientScanError(
                "CONNECTION_FAILED",
                f"The session to {self._endpoint} failed earlier; open a new session.",
            )
        if self._imap is None:
            raise RuntimeError(f"session to {self._endpoint} is not connected")
        return self._imap

    def _try_login(self, imap: imaplib.IMAP4, username: str, password: str) -> str | None:
        """Log in; return None on success, or the server reply with the password redacted."""
        try:
            if username.isascii() and password.isascii():
                imap.login(username, password)
            else:
                # LOGIN arguments must be ASCII for imaplib; AUTHENTICATE PLAIN carries UTF-8.
                credentials = f"\0{username}\0{password}".encode()
                imap.authenticate("PLAIN", lambda _challenge: credentials)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            reply = reply_text(exc)
            return reply.replace(password, "***") if password else reply
        return None

    def _try_examine(self, imap: imaplib.IMAP4, folder: str) -> str | None:
        """Open ``folder`` read-only; return None on success, or the server reply."""
        try:
            status, data = imap.select(quote_mailbox(folder), readonly=True)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:  # imaplib raises on BAD and returns NO
            return reply_text(exc)
        return None if status == "OK" else _join_reply(data)

    def _check_completion(self, command: str, completion: Completion) -> None:
        if completion.status != "OK":
            raise command_error(self._endpoint, command, completion.status, completion.text)

    def _check_fetch_completion(self, completion: Completion) -> None:
        # Servers reply NO [EXPUNGEISSUED] (RFC 5530) when some requested messages were
        # expunged, and still return the others. Those are kept and the vanished UIDs skipped.
        if completion.status == "NO" and response_code(completion.text) == "EXPUNGEISSUED":
            return
        self._check_completion("UID FETCH", completion)

    def _parse_search(self, numbers: bytes) -> list[int]:
        try:
            return [int(number) for number in numbers.split()]
        except ValueError as exc:
            raise protocol_error(self._endpoint, f"invalid SEARCH response: {exc}") from exc


def _shut_down(sock: socket.socket, endpoint: Endpoint) -> None:
    """Shut down a socket that another thread may be blocked on, without closing it."""
    try:
        # socket.socket.shutdown on purpose: SSLSocket.shutdown would also drop the TLS
        # object that a read in the other thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError as exc:
        logger.debug("shutting down the socket to %s failed: %s", endpoint, exc)


def _join_reply(data: Sequence[object]) -> str:
    return " ".join(item.decode("utf-8", "replace") for item in data if isinstance(item, bytes))


def _printable(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
