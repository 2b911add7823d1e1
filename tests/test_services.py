"""The real servers of the test session: Redis, FerretDB on PostgreSQL and Dovecot."""

from __future__ import annotations

import imaplib
import os
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pymongo
import pytest
import redis

from scripts.services import Dovecot, FerretDB, Redis

if TYPE_CHECKING:
    from tests.conftest import MailUser

pytestmark = pytest.mark.integration

MESSAGE = b"From: Ann <ann@example.com>\r\nSubject: hello\r\n\r\nbody\r\n"


def open_imaps(user: MailUser, cafile: str) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=cafile)
    return imaplib.IMAP4_SSL(user.host, user.imaps_port, ssl_context=context)


def test_redis_answers_ping(redis_server: Redis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_ferretdb_inserts_and_finds(mongodb_server: FerretDB) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        mongodb_server.url, serverSelectionTimeoutMS=10_000
    )
    collection = client[os.environ["MAILSCAN_MONGODB_DATABASE"]]["service_check"]
    try:
        collection.insert_one({"name": "probe", "value": 42})
        found = collection.find_one({"name": "probe"}, {"_id": False})
        assert found == {"name": "probe", "value": 42}
    finally:
        collection.drop()
        client.close()


def test_settings_point_at_session_servers(
    redis_server: Redis, mongodb_server: FerretDB, dovecot: Dovecot
) -> None:
    assert os.environ["MAILSCAN_REDIS_URL"] == redis_server.url
    assert os.environ["MAILSCAN_MONGODB_URL"] == mongodb_server.url
    assert os.environ["MAILSCAN_IMAP_CA_FILE"] == str(dovecot.cafile)


def test_imaps_login_verifies_certificate(
    dovecot: Dovecot, mail_user: Callable[[], MailUser]
) -> None:
    user = mail_user()
    imap = open_imaps(user, str(dovecot.cafile))
    try:
        assert imap.login(user.name, user.password)[0] == "OK"
        status, data = imap.select("INBOX")
        assert status == "OK"
        assert data == [b"0"]
    finally:
        imap.logout()


def test_imaps_rejects_unknown_certificate(mail_user: Callable[[], MailUser]) -> None:
    user = mail_user()
    context = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(user.host, user.imaps_port, ssl_context=context)


def test_plain_imap_rejects_wrong_password(mail_user: Callable[[], MailUser]) -> None:
    user = mail_user()
    imap = imaplib.IMAP4(user.host, user.imap_port)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(user.name, user.password + "x")
    finally:
        imap.logout()


def test_delivered_message_keeps_date_and_bytes(
    dovecot: Dovecot, mail_user: Callable[[], MailUser]
) -> None:
    user = mail_user()
    internal_date = datetime(2024, 3, 5, 10, 20, 30, tzinfo=UTC)
    path = user.deliver(MESSAGE, internal_date, flags="FS")
    assert path.stat().st_mtime == internal_date.timestamp()

    imap = open_imaps(user, str(dovecot.cafile))
    try:
        imap.login(user.name, user.password)
        imap.select("INBOX", readonly=True)
        status, data = imap.fetch("1", "(INTERNALDATE FLAGS BODY.PEEK[])")
    finally:
        imap.logout()

    assert status == "OK"
    assert isinstance(data[0], tuple)
    envelope, body = data[0]
    parsed = imaplib.Internaldate2tuple(envelope)
    assert parsed is not None
    # Internaldate2tuple returns local time, so compare as a POSIX timestamp.
    assert time.mktime(parsed) == internal_date.timestamp()
    assert b"\\Flagged" in envelope
    assert b"\\Seen" in envelope
    assert body == MESSAGE


def test_folder_and_many_messages(dovecot: Dovecot, mail_user: Callable[[], MailUser]) -> None:
    user = mail_user()
    user.add_folder("Old Mail")
    when = datetime(2025, 1, 2, tzinfo=UTC)
    assert user.deliver_many([(MESSAGE, when)] * 250, folder="Old Mail") == 250

    imap = open_imaps(user, str(dovecot.cafile))
    try:
        imap.login(user.name, user.password)
        status, data = imap.select('"Old Mail"', readonly=True)
    finally:
        imap.logout()
    assert status == "OK"
    assert data == [b"250"]


def test_password_change_applies_at_once(mail_user: Callable[[], MailUser]) -> None:
    user = mail_user()
    user.dovecot.add_user(user.name, "changed-password")

    imap = imaplib.IMAP4(user.host, user.imap_port)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(user.name, user.password)
    finally:
        imap.logout()
    imap = imaplib.IMAP4(user.host, user.imap_port)
    try:
        assert imap.login(user.name, "changed-password")[0] == "OK"
    finally:
        imap.logout()


def test_invalid_user_name_is_rejected(dovecot: Dovecot) -> None:
    with pytest.raises(ValueError, match=r"invalid IMAP user name '\.\./etc'"):
        dovecot.add_user("../etc", "secret")
