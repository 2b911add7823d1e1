"""Physical limits measured next to the product: raw IMAP fetch, raw database writes and raw
Redis pub/sub, each a plain client of the same server the product uses."""

from __future__ import annotations

import imaplib
import ssl
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import redis.asyncio as aioredis
from pymongo import MongoClient, UpdateOne

from scripts.services import HOST

#: Documents written with upserts in :func:`database_writes`.
UPSERT_SAMPLE = 400


def raw_fetch(port: int, cafile: str, user: str, password: str, batch: int) -> tuple[int, float]:
    """Log in, then ``UID FETCH BODY.PEEK[]`` the whole INBOX in batches; ``(count, seconds)``.

    The clock covers connect and login, like a scan measured from startScan.
    """
    started = time.perf_counter()
    context = ssl.create_default_context(cafile=cafile)
    with imaplib.IMAP4_SSL(HOST, port, ssl_context=context) as client:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        _, data = client.uid("SEARCH", "ALL")
        uids = data[0].split()
        count = 0
        for start in range(0, len(uids), batch):
            chunk = b",".join(uids[start : start + batch]).decode()
            _, fetched = client.uid("FETCH", chunk, "(BODY.PEEK[])")
            count += sum(1 for item in fetched if isinstance(item, tuple))
        client.logout()
    return count, time.perf_counter() - started


def raw_fetch_parallel(
    port: int, cafile: str, logins: list[tuple[str, str]], batch: int
) -> tuple[int, float]:
    """:func:`raw_fetch` of several mailboxes at once, one process each; total count and wall."""
    started = time.perf_counter()
    with ProcessPoolExecutor(len(logins)) as pool:
        runs = [pool.submit(raw_fetch, port, cafile, user, pw, batch) for user, pw in logins]
        count = sum(run.result()[0] for run in runs)
    return count, time.perf_counter() - started


def database_writes(url: str, database: str, account_id: str, batch: int) -> dict[str, float]:
    """Write the saved messages of ``account_id`` again into scratch collections.

    Returns documents per second of ``insert_many`` of them all, and of unordered
    ``UpdateOne(upsert=True)`` bulk writes of the first :data:`UPSERT_SAMPLE`, in batches of
    ``batch``.
    """
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    try:
        db = client[database]
        documents = list(db["scanned_messages"].find({"account_id": account_id}))
        for document in documents:
            document.pop("_id")
        rates = {"documents": float(len(documents))}

        target = db["bench_insert"]
        target.drop()
        started = time.perf_counter()
        for start in range(0, len(documents), batch):
            target.insert_many([dict(doc) for doc in documents[start : start + batch]])
        rates["insert_many"] = len(documents) / (time.perf_counter() - started)

        # Upserts run at about a hundred per second on FerretDB 1.24, so a sample is enough.
        sample = documents[:UPSERT_SAMPLE]
        target = db["bench_upsert"]
        target.drop()
        started = time.perf_counter()
        for start in range(0, len(sample), batch):
            chunk = sample[start : start + batch]
            target.bulk_write(
                [
                    UpdateOne({"_id": f"k{start + i}"}, {"$set": doc}, upsert=True)
                    for i, doc in enumerate(chunk)
                ],
                ordered=False,
            )
        rates["upsert"] = len(sample) / (time.perf_counter() - started)
        db["bench_insert"].drop()
        db["bench_upsert"].drop()
        return rates
    finally:
        client.close()


async def pubsub_round_trips(url: str, count: int) -> list[float]:
    """Seconds from PUBLISH to delivery of ``count`` messages to one subscriber, one at a time."""
    publisher = aioredis.Redis.from_url(url)
    subscriber = aioredis.Redis.from_url(url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe("bench:pubsub")
    await pubsub.get_message(timeout=1)
    samples = []
    try:
        for _ in range(count):
            sent = time.perf_counter()
            await publisher.publish("bench:pubsub", b"x" * 300)
            while (await pubsub.get_message(timeout=5)) is None:
                pass
            samples.append(time.perf_counter() - sent)
    finally:
        await pubsub.aclose()
        await publisher.aclose()
        await subscriber.aclose()
    return samples
