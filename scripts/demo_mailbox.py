"""Generate a realistic demo mailbox: newsletters, personal mail, receipts and suspicious mail.

Every domain is under the reserved ``.example`` top-level domain (RFC 2606). One message in
eight is crafted to raise a finding, taking turns: a dangerous attachment, a display-name
spoof, a link mismatch, an authentication failure, a Reply-To mismatch, a malformed message.

Command line (writes ``NNNNN.eml`` files whose modification time is the INTERNALDATE)::

    python -m scripts.demo_mailbox DIRECTORY [--count 300] [--months 6] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

#: Mailbox owner, the recipient of every message.
OWNER = ("Sam Rivera", "sam@mail.example")
#: Average month length used to spread the messages, in days.
_MONTH_DAYS = 30.44
#: Every this many messages, one is crafted to raise a finding.
_SUSPICIOUS_EVERY = 8

_FRIENDS = [
    ("Zoë Müller", "zoe@mueller.example"),
    ("Kenji Tanaka", "kenji@tanaka-family.example"),
    ("Amira Haddad", "amira.haddad@webmail.example"),
    ("Luca Bianchi", "luca@bianchi.example"),
    ("Olga Ivanova", "olga.ivanova@webmail.example"),
]
_NEWSLETTERS = [
    ("Daily Digest", "news@daily-digest.example", "Your morning briefing"),
    ("Garden Club", "hello@garden-club.example", "Spring planting tips"),
    ("Code Weekly", "issue@code-weekly.example", "This week in open source"),
]
_SHOPS = [
    ("Northwind Store", "orders@northwind-store.example"),
    ("Contoso Travel", "bookings@contoso-travel.example"),
]
_OFFSETS = [timezone(timedelta(hours=hours)) for hours in (-7, -5, 0, 1, 2, 9)]

Template = Callable[[random.Random, datetime], EmailMessage]


def generate_demo_messages(
    count: int = 300, months: int = 6, seed: int = 7, *, now: datetime | None = None
) -> Iterator[tuple[bytes, datetime]]:
    """Yield ``count`` messages as (raw RFC 5322 bytes, INTERNALDATE) in date order.

    INTERNALDATEs are aware UTC datetimes spread over the ``months`` months before ``now``
    (default: the start of the current UTC day). The output depends only on the arguments,
    so a seed and a ``now`` always give the same bytes. Each finding kind appears at least
    once when ``count`` is 48 or more.
    """
    if count < 0 or months < 1:
        raise ValueError(f"count must be >= 0 and months >= 1, got count={count}, months={months}")
    rng = random.Random(seed)
    end = now or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    span_s = months * _MONTH_DAYS * 86400
    received = sorted(end - timedelta(seconds=rng.uniform(0, span_s)) for _ in range(count))

    for index, internal_date in enumerate(received):
        template = _pick_template(rng, index)
        # The sender's Date is a few seconds to minutes before delivery.
        sent = internal_date - timedelta(seconds=rng.randint(2, 600))
        message = template(rng, sent.astimezone(rng.choice(_OFFSETS)).replace(microsecond=0))
        _set_boundaries(rng, message)
        raw = message.as_bytes(policy=SMTP)
        if template is _malformed:
            raw = _break_headers(raw)
        yield raw, internal_date.replace(microsecond=0)


def _set_boundaries(rng: random.Random, message: EmailMessage) -> None:
    # The email package draws MIME boundaries from its own random generator.
    for part in message.walk():
        if part.is_multipart():
            part.set_boundary(f"=_demo_{rng.getrandbits(64):016x}")


def _pick_template(rng: random.Random, index: int) -> Template:
    if index % _SUSPICIOUS_EVERY == _SUSPICIOUS_EVERY // 2:
        return _SUSPICIOUS[(index // _SUSPICIOUS_EVERY) % len(_SUSPICIOUS)]
    return rng.choices(_ORDINARY, weights=_ORDINARY_WEIGHTS)[0]


def _new_message(
    rng: random.Random, sent: datetime, sender: tuple[str, str], subject: str
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = f"{sender[0]} <{sender[1]}>"
    message["To"] = f"{OWNER[0]} <{OWNER[1]}>"
    message["Subject"] = subject
    message["Date"] = format_datetime(sent)
    domain = sender[1].rpartition("@")[2]
    message["Message-ID"] = f"<{rng.getrandbits(64):016x}@{domain}>"
    return message


def _authenticate(message: EmailMessage, domain: str, result: str = "pass") -> None:
    message["Authentication-Results"] = (
        f"mx.mail.example; spf={result} smtp.mailfrom={domain};"
        f" dkim={result} header.d={domain}; dmarc={result} header.from={domain}"
    )


def _newsletter(rng: random.Random, sent: datetime) -> EmailMessage:
    name, address, topic = rng.choice(_NEWSLETTERS)
    domain = address.rpartition("@")[2]
    message = _new_message(rng, sent, (name, address), f"{topic} \u2013 {sent:%d %B}")
    _authenticate(message, domain)
    token = rng.getrandbits(48)
    message["List-Unsubscribe"] = (
        f"<mailto:unsubscribe@{domain}?subject=unsubscribe-{token:x}>,"
        f" <https://{domain}/unsubscribe/{token:x}>"
    )
    if rng.random() < 0.7:
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(f"{topic}.\n\nRead online: https://{domain}/issues/{token:x}\n")
    message.add_alternative(
        f"<html><body><h1>{topic}</h1><p>Read the full issue on"
        f' <a href="https://{domain}/issues/{token:x}">{domain}</a>.</p>'
        f'<p><a href="https://{domain}/unsubscribe/{token:x}">Unsubscribe</a></p>'
        "</body></html>",
        subtype="html",
    )
    return message


def _personal(rng: random.Random, sent: datetime) -> EmailMessage:
    sender = rng.choice(_FRIENDS)
    subject = rng.choice(["Dinner on Friday?", "Photos from the trip", "Re: Café plans", "Hi!"])
    message = _new_message(rng, sent, sender, subject)
    if rng.random() < 0.5:
        message["Cc"] = ", ".join(
            f"{name} <{address}>" for name, address in rng.sample(_FRIENDS, 2)
        )
    message.set_content(f"Hi Sam,\n\n{rng.choice(_SENTENCES)}\n\nCheers,\n{sender[0]}\n")
    if rng.random() < 0.3:
        message.add_attachment(
            rng.randbytes(rng.randint(2_000, 20_000)),
            maintype="image",
            subtype="jpeg",
            filename=f"IMG_{rng.randint(1000, 9999)}.jpg",
        )
    return message


def _receipt(rng: random.Random, sent: datetime) -> EmailMessage:
    shop, address = rng.choice(_SHOPS)
    number = rng.randint(100000, 999999)
    message = _new_message(rng, sent, (shop, address), f"Your receipt #{number}")
    _authenticate(message, address.rpartition("@")[2])
    amount = rng.randint(500, 25000) / 100
    message.set_content(f"Thank you for your order #{number}.\nTotal: {amount:.2f} EUR\n")
    message.add_alternative(
        f"<p>Thank you for your order <b>#{number}</b>.</p><p>Total: {amount:.2f} EUR</p>",
        subtype="html",
    )
    if rng.random() < 0.6:
        message.add_attachment(
            b"%PDF-1.4\n" + rng.randbytes(rng.randint(5_000, 40_000)),
            maintype="application",
            subtype="pdf",
            filename=f"receipt-{number}.pdf",
        )
    return message


def _dangerous_attachment(rng: random.Random, sent: datetime) -> EmailMessage:
    message = _new_message(
        rng, sent, ("Accounts", "billing@invoices-online.example"), "Invoice due"
    )
    message.set_content("Please find the overdue invoice attached.\n")
    # The non-ASCII name makes the email package write it with RFC 2231 (filename*=utf-8'').
    message.add_attachment(
        b"MZ" + rng.randbytes(4_000),
        maintype="application",
        subtype="octet-stream",
        filename=f"facture_réglée_{rng.randint(100, 999)}.pdf.exe",
    )
    return message


def _display_name_spoof(rng: random.Random, sent: datetime) -> EmailMessage:
    sender = ("support@northwind-store.example", "alerts@account-check.example")
    message = _new_message(rng, sent, sender, "Unusual sign-in to your account")
    message.set_content("We noticed an unusual sign-in. Please confirm your details.\n")
    return message


def _link_mismatch(rng: random.Random, sent: datetime) -> EmailMessage:
    sender = ("Northwind Bank", "service@northwind-bank.example")
    message = _new_message(rng, sent, sender, "Action required: verify your account")
    _authenticate(message, "northwind-bank.example")
    message.set_content("Verify your account at https://www.northwind-bank.example/verify\n")
    message.add_alternative(
        '<p>Verify your account at <a href="http://login-verify.example/nb/'
        f'{rng.getrandbits(32):x}">https://www.northwind-bank.example/verify</a></p>',
        subtype="html",
    )
    return message


def _auth_failure(rng: random.Random, sent: datetime) -> EmailMessage:
    shop, address = _SHOPS[0]
    message = _new_message(rng, sent, (shop, address), "Your parcel is waiting")
    _authenticate(message, address.rpartition("@")[2], result=rng.choice(["fail", "softfail"]))
    message.set_content("Your parcel could not be delivered. Reply with your address.\n")
    return message


def _reply_to_mismatch(rng: random.Random, sent: datetime) -> EmailMessage:
    sender = rng.choice(_FRIENDS)
    message = _new_message(rng, sent, sender, "Quick favour")
    message["Reply-To"] = f"{sender[0]} <{sender[1].partition('@')[0]}@fastreply-mail.example>"
    message.set_content("Are you available? I need a quick favour, reply to this address.\n")
    return message


def _malformed(rng: random.Random, sent: datetime) -> EmailMessage:
    sender = rng.choice(_FRIENDS)
    message = _new_message(rng, sent, sender, "Fwd: old mail")
    message.set_content("This one went through a broken gateway.\n")
    return message


def _break_headers(raw: bytes) -> bytes:
    """Damage the header section as a broken gateway does: a line without a colon."""
    return raw.replace(b"\r\nSubject:", b"\r\nX-Gateway mangled this line\r\nSubject:", 1)


_SENTENCES = [
    "Are you free for dinner on Friday? The new place on the corner opened.",
    "I finally sorted the photos from our trip, a few are attached.",
    "Let me know when you are back in town, we should catch up.",
    "Thanks again for the help with the move last weekend!",
]
_ORDINARY: list[Template] = [_newsletter, _personal, _receipt]
_ORDINARY_WEIGHTS = [5, 4, 2]
_SUSPICIOUS: list[Template] = [
    _dangerous_attachment,
    _display_name_spoof,
    _link_mismatch,
    _auth_failure,
    _reply_to_mismatch,
    _malformed,
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a demo mailbox as .eml files.")
    parser.add_argument("directory", type=Path, help="directory to write NNNNN.eml files into")
    parser.add_argument("--count", type=int, default=300, help="number of messages")
    parser.add_argument("--months", type=int, default=6, help="months of mail before today")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    args = parser.parse_args()

    args.directory.mkdir(parents=True, exist_ok=True)
    for number, (raw, internal_date) in enumerate(
        generate_demo_messages(args.count, args.months, args.seed), start=1
    ):
        path = args.directory / f"{number:05d}.eml"
        path.write_bytes(raw)
        timestamp = internal_date.timestamp()
        os.utime(path, (timestamp, timestamp))
    print(f"wrote {args.count} messages to {args.directory}")


if __name__ == "__main__":
    main()
