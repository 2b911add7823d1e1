"""IMAP mail source: a synchronous session on imaplib, meant for a worker thread.

The scan actor calls one :class:`ImapSession` method at a time (through
``asyncio.to_thread``)::

    with ImapSession(host, port, "SSL", timeout_s=30) as session:
        session.connect_and_login(username, password)
        uid_validity = session.select("INBOX")
        uids = session.search_since(since)
        for start in range(0, len(uids), batch_size):
            messages = session.fetch(uids[start : start + batch_size], max_message_bytes=limit)

Failures are raised as :class:`jobs.errors.ScanError` with the codes listed in
:mod:`jobs.imap.errors`.
"""

from jobs.imap.connection import Security
from jobs.imap.fetch import FetchedMessage
from jobs.imap.session import ImapSession

__all__ = ["FetchedMessage", "ImapSession", "Security"]
