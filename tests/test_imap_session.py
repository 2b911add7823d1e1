"""ImapSession against the real Dovecot started for the test run, and against silent sockets."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentScanError, ScanError, TransientScanError
from jobs.imap import ImapSession

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "mailbox"
HOST = "127.0.0.1"
TIMEOUT_S = 10.0


def make_message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: Sender <sender@example.test>\r\n"
        b"To: user@example.test\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: <" + subject.replace(" ", ".").encode() + b"@example.test>\r\n"
        b"\r\n" + body
    )


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)


@pytest.fixture
def user(mail_user: Callable[[], Any]) -> Any:
    return mail_user()


@pytest.fixture
def plain_session(dovecot: Any) -> Iterator[ImapSession]:
    with ImapSession(
        HOST, dovecot.port, "NONE", timeout_s=TIMEOUT_S, allow_insecure=True
    ) as session:
        yield session


@pytest.fixture
def ssl_session(dovecot: Any) -> Iterator[ImapSession]:
    with ImapSession(
        HOST, dovecot.imaps_port, "SSL", timeout_s=TIMEOUT_S, ca_file=str(dovecot.cafile)
    ) as session:
        yield session


def raise_scan_error(action: Callable[[], object]) -> ScanError:
    with pytest.raises(ScanError) as caught:
        action()
    return caught.value


@contextmanager
def socket_server(greeting: bytes | None) -> Iterator[int]:
    """Listen on loopback; send ``greeting`` to each client (if given), then stay silent."""
    listener = socket.create_server((HOST, 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            if greeting is not None:
                connection.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    if greeting is not None:
        thread.start()  # without a greeting the kernel backlog completes the handshake
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


# --- login and folders ---


def test_login_and_select_inbox(plain_session: ImapSession, user: Any) -> None:
    plain_session.connect_and_login(user.name, user.password)

    first = plain_session.select("INBOX")
    second = plain_session.select("INBOX")

    assert first > 0
    assert second == first


def test_wrong_password_is_auth_failed(
    dovecot: Any, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobs.imap")
    wrong = "Wrong-Pass-" + user.password
    session = ImapSession(HOST, dovecot.port, "NONE", timeout_s=TIMEOUT_S, allow_insecure=True)

    with session:
        error = raise_scan_error(lambda: session.connect_and_login(user.name, wrong))

    assert isinstance(error, PermanentScanError)
    assert error.code == "AUTH_FAILED"
    assert f"rejected the login for {user.name!r}" in error.message
    assert "Check the username and password" in error.message
    assert "app password" in error.message
    assert wrong not in error.message
    assert error.__cause__ is None
    assert wrong not in caplog.text
    assert user.password not in caplog.text


def test_login_logs_steps_without_password(
    dovecot: Any, plain_session: ImapSession, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobs.imap")

    plain_session.connect_and_login(user.name, user.password)
    plain_session.select("INBOX")
    plain_session.close()

    messages = [record.getMessage() for record in caplog.records]
    assert f"logged in to {HOST}:{dovecot.port} as {user.name!r}" in messages
    assert f"closed the session to {HOST}:{dovecot.port}" in messages
    assert user.password not in caplog.text


def test_missing_folder_is_folder_not_found(plain_session: ImapSession, user: Any) -> None:
    plain_session.connect_and_login(user.name, user.password)

    error = raise_scan_error(lambda: plain_session.select("No Such Folder"))

    assert isinstance(error, PermanentScanError)
    assert error.code == "FOLDER_NOT_FOUND"
    assert error.message.startswith("Folder 'No Such Folder' cannot be opened on IMAP server ")
    assert error.message.endswith("; check the folder name.")


def test_folder_name_with_space(plain_session: ImapSession, user: Any) -> None:
    user.add_folder("Old Mail")
    user.deliver(make_message("archived"), noon(date(2025, 3, 1)), folder="Old Mail")
    plain_session.connect_and_login(user.name, user.password)

    plain_session.select("Old Mail")
    uids = plain_session.search_since(date(2025, 1, 1))

    assert len(uids) == 1


# --- security modes ---


def test_imaps_verifies_with_ca_file(ssl_session: ImapSession, user: Any) -> None:
    ssl_session.connect_and_login(user.name, user.password)

    assert ssl_session.select("INBOX") > 0


def test_imaps_without_ca_file_is_tls_error(dovecot: Any, user: Any) -> None:
    session = ImapSession(HOST, dovecot.imaps_port, "SSL", timeout_s=TIMEOUT_S)

    with session:
        error = raise_scan_error(lambda: session.connect_and_login(user.name, user.password))

    assert isinstance(error, PermanentScanError)
    assert error.code == "TLS_ERROR"
    assert error.message.startswith(f"The TLS certificate of {HOST} could not be verified")
    assert "set the IMAP CA file (MAILSCAN_IMAP_CA_FILE)" in error.message


def test_starttls_on_plain_port(dovecot: Any, user: Any) -> None:
    session = ImapSession(
        HOST, dovecot.port, "STARTTLS", timeout_s=TIMEOUT_S, ca_file=str(dovecot.cafile)
    )

    with session:
        session.connect_and_login(user.name, user.password)
        sock = session._imap.sock if session._imap is not None else None
        uid_validity = session.select("INBOX")

    assert isinstance(sock, ssl.SSLSocket)
    assert sock.gettimeout() == TIMEOUT_S
    assert uid_validity > 0


def test_plain_imap_rejected_unless_allowed(dovecot: Any, user: Any) -> None:
    session = ImapSession(HOST, dovecot.port, "NONE", timeout_s=TIMEOUT_S)

    error = raise_scan_error(lambda: session.connect_and_login(user.name, user.password))

    assert isinstance(error, PermanentScanError)
    assert error.code == "INSECURE_CONNECTION"
    assert error.message == (
        f"Plain-text IMAP to {HOST}:{dovecot.port} is not allowed because it would send "
        "the password unencrypted; use SSL or STARTTLS."
    )


# --- search and fetch ---


def test_search_since_uses_internal_date(plain_session: ImapSession, user: Any) -> None:
    today = date(2026, 6, 15)
    for days_ago in (30, 10, 4, 3, 1, 0):
        day = today - timedelta(days=days_ago)
        user.deliver(make_message(f"day {days_ago}"), noon(day))
    plain_session.connect_and_login(user.name, user.password)
    plain_session.select("INBOX")

    everything = plain_session.search_since(date(2000, 1, 1))
    recent = plain_session.search_since(today - timedelta(days=3))
    messages = plain_session.fetch(recent, max_message_bytes=1_000_000)

    assert len(everything) == 6
    assert recent == sorted(recent)
    assert len(recent) == 3
    assert sorted(message.internal_date for message in messages) == [
        noon(today - timedelta(days=3)),
        noon(today - timedelta(days=1)),
        noon(today),
    ]
    assert plain_session.search_since(today + timedelta(days=1)) == []


def test_fetch_returns_exact_messages(ssl_session: ImapSession, user: Any) -> None:
    delivered = {
        "seen": (make_message("seen", b"one\r\ntwo\r\n"), "S"),
        "flagged": (make_message("flagged", b"8-bit \xe9\xff\r\n"), "FS"),
        "unread": (make_message("unread", b""), ""),
    }
    when = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    for offset, (raw, flags) in enumerate(delivered.values()):
        user.deliver(raw, when + timedelta(minutes=offset), flags=flags)
    ssl_session.connect_and_login(user.name, user.password)
    ssl_session.select("INBOX")
    uids = ssl_session.search_since(date(2026, 1, 1))

    messages = ssl_session.fetch(uids, max_message_bytes=1_000_000)

    assert [message.uid for message in messages] == uids
    by_raw = {message.raw: message for message in messages}
    for offset, (raw, flags) in enumerate(delivered.values()):
        message = by_raw[raw]
        assert message.size == len(raw)
        assert message.header_only is False
        assert message.internal_date == when + timedelta(minutes=offset)
        # \Recent only means that no other session has seen the message yet.
        assert set(message.flags) - {"\\Recent"} == {
            {"S": "\\Seen", "F": "\\Flagged"}[letter] for letter in flags
        }


def test_fetch_large_message_loads_header_only(plain_session: ImapSession, user: Any) -> None:
    header = make_message("big", b"")
    big = header + b"x" * 5000 + b"\r\n"
    small = make_message("small")
    long_header = b"X-Filler: " + b"y" * 1500 + b"\r\n" + make_message("long header")
    user.deliver(big, noon(date(2026, 1, 2)))
    user.deliver(small, noon(date(2026, 1, 3)))
    user.deliver(long_header, noon(date(2026, 1, 4)))
    plain_session.connect_and_login(user.name, user.password)
    plain_session.select("INBOX")
    uids = plain_session.search_since(date(2026, 1, 1))

    messages = plain_session.fetch(uids, max_message_bytes=1000)

    by_size = {message.size: message for message in messages}
    assert sorted(by_size) == sorted([len(big), len(small), len(long_header)])
    assert by_size[len(big)].header_only is True
    assert by_size[len(big)].raw == header
    assert by_size[len(small)].header_only is False
    assert by_size[len(small)].raw == small
    # A header block longer than the limit is cut at the limit.
    assert by_size[len(long_header)].header_only is True
    assert by_size[len(long_header)].raw == long_header[:1000]


def test_fetch_skips_vanished_uids(plain_session: ImapSession, user: Any) -> None:
    files = {}
    for index in range(3):
        raw = make_message(f"m{index}")
        files[raw] = user.deliver(raw, noon(date(2026, 1, 5)))
    plain_session.connect_and_login(user.name, user.password)
    plain_session.select("INBOX")
    uids = plain_session.search_since(date(2026, 1, 1))
    middle = plain_session.fetch([uids[1]], max_message_bytes=1_000_000)[0]
    # Removed behind the server's back, like an expunge by another client.
    files[middle.raw].unlink()

    messages = plain_session.fetch([*uids, uids[-1] + 100], max_message_bytes=1_000_000)

    assert [message.uid for message in messages] == [uids[0], uids[2]]
    assert plain_session.fetch([], max_message_bytes=1_000_000) == []


def test_fetch_corpus_in_batches(ssl_session: ImapSession, user: Any) -> None:
    paths = sorted(CORPUS.glob("*.eml"))[:250]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for index, path in enumerate(paths):
        user.deliver(path.read_bytes(), start + timedelta(hours=index))
    ssl_session.connect_and_login(user.name, user.password)
    ssl_session.select("INBOX")
    uids = ssl_session.search_since(date(2024, 12, 31))

    fetched = []
    for offset in range(0, len(uids), 100):
        fetched.extend(ssl_session.fetch(uids[offset : offset + 100], max_message_bytes=10**7))

    assert len(fetched) == len(paths)
    for message, path in zip(fetched, paths, strict=True):
        # Dovecot sends bare LF line ends as CRLF, as IMAP requires.
        expected = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert message.raw == expected, path.name
        assert message.size == len(expected), path.name


# --- transport failures ---


def test_silent_server_times_out() -> None:
    with socket_server(greeting=None) as port:
        session = ImapSession(HOST, port, "NONE", timeout_s=0.5, allow_insecure=True)
        started = time.monotonic()
        error = raise_scan_error(lambda: session.connect_and_login("user", "secret"))
        elapsed_s = time.monotonic() - started

    assert isinstance(error, TransientScanError)
    assert error.code == "TIMEOUT"
    assert error.message == (
        f"IMAP server {HOST}:{port} did not answer within 0.5 s; "
        "check the host and port and that the server is up."
    )
    assert elapsed_s < 5


def test_connection_refused_is_connection_failed() -> None:
    with socket.create_server((HOST, 0)) as probe:
        port = probe.getsockname()[1]
    session = ImapSession(HOST, port, "NONE", timeout_s=TIMEOUT_S, allow_insecure=True)

    error = raise_scan_error(lambda: session.connect_and_login("user", "secret"))

    assert isinstance(error, TransientScanError)
    assert error.code == "CONNECTION_FAILED"
    assert error.message == (
        f"Connection to IMAP server {HOST}:{port} was refused; check the host and the port "
        "(usually 993 for SSL, 143 for STARTTLS)."
    )


def test_bye_greeting_is_server_unavailable() -> None:
    with socket_server(greeting=b"* BYE Too many connections\r\n") as port:
        session = ImapSession(HOST, port, "NONE", timeout_s=TIMEOUT_S, allow_insecure=True)
        error = raise_scan_error(lambda: session.connect_and_login("user", "secret"))

    assert isinstance(error, TransientScanError)
    assert error.code == "SERVER_UNAVAILABLE"
    assert "Too many connections" in error.message


def test_abort_interrupts_blocked_call() -> None:
    with socket_server(greeting=b"* OK IMAP4rev1 ready\r\n") as port:
        session = ImapSession(HOST, port, "NONE", timeout_s=TIMEOUT_S, allow_insecure=True)
        timer = threading.Timer(0.3, session.abort)
        timer.start()
        started = time.monotonic()
        error = raise_scan_error(lambda: session.connect_and_login("user", "secret"))
        elapsed_s = time.monotonic() - started
        session.close()

    assert isinstance(error, TransientScanError)
    assert error.code == "CONNECTION_FAILED"
    assert error.message == f"The session to {HOST}:{port} was aborted."
    assert elapsed_s < 3
