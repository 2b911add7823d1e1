"""ImapSession against a scripted loopback server, for replies Dovecot gives only by chance:
BYE in the middle of a FETCH, NO [EXPUNGEISSUED], busy replies and a server that stops."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import pytest

from jobs.errors import PermanentScanError, ScanError, TransientScanError
from jobs.imap import ImapSession

HOST = "127.0.0.1"

#: Builds the reply to one command line; ``None`` leaves the client waiting.
Handler = Callable[[bytes, bytes], bytes | None]


def standard_reply(tag: bytes, line: bytes) -> bytes | None:
    command = line.split(b" ", 2)[1].upper()
    if command == b"CAPABILITY":
        return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
    if command == b"LOGIN":
        return tag + b" OK logged in\r\n"
    if command == b"EXAMINE":
        return b"* 2 EXISTS\r\n* OK [UIDVALIDITY 77] ok\r\n" + tag + b" OK [READ-ONLY] done\r\n"
    if command == b"LOGOUT":
        return b"* BYE bye\r\n" + tag + b" OK done\r\n"
    raise AssertionError(f"the script has no reply to {line!r}")


class ScriptedServer:
    """Serves one client: greets, then replies to each command with the first handler that
    matches the command line, or with :func:`standard_reply`."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = {
            re.compile(pattern.encode()): handler for pattern, handler in handlers.items()
        }
        self.received: list[bytes] = []
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.connection: socket.socket | None = None

    def serve(self) -> None:
        self.connection, _ = self.listener.accept()
        self.connection.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted server\r\n")
        lines = self.connection.makefile("rb")
        for line in lines:
            line = line.rstrip(b"\r\n")
            self.received.append(line)
            reply = self.reply(line)
            if reply is None:
                continue
            self.connection.sendall(reply)
            if b"* BYE" in reply:
                self.connection.shutdown(socket.SHUT_RDWR)
                return

    def reply(self, line: bytes) -> bytes | None:
        tag = line.split(b" ", 1)[0]
        for pattern, handler in self.handlers.items():
            if pattern.search(line):
                return handler(tag, line)
        return standard_reply(tag, line)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.listener.close()
        self.thread.join(timeout=5)


@contextmanager
def scripted_session(
    handlers: dict[str, Handler], timeout_s: float = 10.0
) -> Iterator[tuple[ImapSession, ScriptedServer]]:
    """A session logged in to a scripted server, with INBOX selected."""
    server = ScriptedServer(handlers)
    server.thread.start()
    session = ImapSession(HOST, server.port, "NONE", timeout_s=timeout_s, allow_insecure=True)
    try:
        session.connect_and_login("user", "secret")
        assert session.select("INBOX") == 77
        yield session, server
    finally:
        session.close()
        server.close()


def metadata(tag: bytes, line: bytes) -> bytes:
    return (
        b'* 1 FETCH (UID 10 FLAGS () INTERNALDATE "01-Mar-2026 10:00:00 +0000" RFC822.SIZE 4)\r\n'
        b"* 2 EXPUNGE\r\n" + tag + b" NO [EXPUNGEISSUED] Some messages were expunged\r\n"
    )


def bodies(tag: bytes, line: bytes) -> bytes:
    return b"* 1 FETCH (UID 10 BODY[] {4}\r\nabcd)\r\n" + tag + b" OK done\r\n"


def silent(tag: bytes, line: bytes) -> None:
    return None


def raise_scan_error(action: Callable[[], object]) -> ScanError:
    with pytest.raises(ScanError) as caught:
        action()
    return caught.value


def test_search_merges_search_responses() -> None:
    def search(tag: bytes, line: bytes) -> bytes:
        return b"* SEARCH 5 3\r\n* 6 EXISTS\r\n* SEARCH 9\r\n" + tag + b" OK done\r\n"

    with scripted_session({"UID SEARCH": search}) as (session, server):
        uids = session.search_since(date(2026, 3, 7))

    assert uids == [3, 5, 9]
    assert any(line.endswith(b" UID SEARCH SINCE 7-Mar-2026") for line in server.received)


def test_fetch_keeps_messages_despite_expungeissued() -> None:
    handlers = {r"RFC822\.SIZE": metadata, r"BODY\.PEEK\[\]": bodies}

    with scripted_session(handlers) as (session, server):
        messages = session.fetch([10, 11], max_message_bytes=100)

    assert [(message.uid, message.raw) for message in messages] == [(10, b"abcd")]
    fetches = [line.split(b" ", 1)[1] for line in server.received if b"UID FETCH" in line]
    assert fetches == [
        b"UID FETCH 10:11 (UID FLAGS INTERNALDATE RFC822.SIZE)",
        b"UID FETCH 10 (UID BODY.PEEK[])",
    ]


def test_examine_bad_is_folder_not_found() -> None:
    def bad(tag: bytes, line: bytes) -> bytes:
        return tag + b" BAD Invalid mailbox name\r\n"

    with scripted_session({'EXAMINE "Bad': bad}) as (session, server):
        error = raise_scan_error(lambda: session.select("Bad/Name"))
        uid_validity = session.select("INBOX")

    assert isinstance(error, PermanentScanError)
    assert error.code == "FOLDER_NOT_FOUND"
    assert error.message.startswith(
        f"Folder 'Bad/Name' cannot be opened on IMAP server {HOST}:{server.port} ("
    )
    assert "Invalid mailbox name" in error.message
    assert uid_validity == 77


def test_fetch_no_unavailable_is_retryable() -> None:
    def unavailable(tag: bytes, line: bytes) -> bytes:
        return tag + b" NO [UNAVAILABLE] Backend down\r\n"

    with scripted_session({"UID FETCH": unavailable}) as (session, server):
        error = raise_scan_error(lambda: session.fetch([1], max_message_bytes=100))

    assert isinstance(error, TransientScanError)
    assert error.code == "SERVER_UNAVAILABLE"
    assert error.message == (
        f"IMAP server {HOST}:{server.port} is unavailable or busy "
        "(UID FETCH: [UNAVAILABLE] Backend down); the scan will be retried later."
    )


def test_fetch_bad_is_protocol_error() -> None:
    def bad(tag: bytes, line: bytes) -> bytes:
        return tag + b" BAD Error in IMAP command\r\n"

    with scripted_session({"UID FETCH": bad}) as (session, _):
        error = raise_scan_error(lambda: session.fetch([1], max_message_bytes=100))

    assert isinstance(error, PermanentScanError)
    assert error.code == "PROTOCOL_ERROR"
    assert error.message.endswith("UID FETCH failed: BAD Error in IMAP command")


def test_bye_during_fetch_breaks_session() -> None:
    def bye(tag: bytes, line: bytes) -> bytes:
        return b"* 1 FETCH (UID 10 FLAGS ())\r\n* BYE Server shutting down\r\n"

    with scripted_session({"UID FETCH": bye}) as (session, _):
        error = raise_scan_error(lambda: session.fetch([10], max_message_bytes=100))
        later = raise_scan_error(lambda: session.search_since(date(2026, 1, 1)))

    assert isinstance(error, TransientScanError)
    assert error.code == "SERVER_UNAVAILABLE"
    assert "closed the session (Server shutting down)" in error.message
    assert isinstance(later, TransientScanError)
    assert later.code == "CONNECTION_FAILED"
    assert later.message.endswith("failed earlier; open a new session.")


def test_stalled_fetch_times_out() -> None:
    with scripted_session({"UID FETCH": silent}, timeout_s=0.5) as (session, _):
        started = time.monotonic()
        error = raise_scan_error(lambda: session.fetch([10], max_message_bytes=100))
        elapsed_s = time.monotonic() - started

    assert isinstance(error, TransientScanError)
    assert error.code == "TIMEOUT"
    assert "did not answer within 0.5 s; check the host and port" in error.message
    assert elapsed_s < 5


def test_abort_interrupts_stalled_fetch() -> None:
    with scripted_session({"UID FETCH": silent}) as (session, _):
        timer = threading.Timer(0.3, session.abort)
        timer.start()
        started = time.monotonic()
        error = raise_scan_error(lambda: session.fetch([10], max_message_bytes=100))
        elapsed_s = time.monotonic() - started

    assert isinstance(error, TransientScanError)
    assert error.code == "CONNECTION_FAILED"
    assert error.message.endswith("was aborted.")
    assert elapsed_s < 3


def test_starttls_missing_is_tls_error() -> None:
    server = ScriptedServer({})
    server.thread.start()
    session = ImapSession(HOST, server.port, "STARTTLS", timeout_s=10.0)
    try:
        error = raise_scan_error(lambda: session.connect_and_login("user", "secret"))
    finally:
        session.close()
        server.close()

    assert isinstance(error, PermanentScanError)
    assert error.code == "TLS_ERROR"
    assert error.message == (
        f"IMAP server {HOST}:{server.port} does not offer STARTTLS; use security SSL "
        "(usually port 993) or ask the provider to enable TLS."
    )
