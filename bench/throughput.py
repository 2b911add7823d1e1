"""B2: messages per second of scans end to end, against raw IMAP and raw database writes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Api, Bench, Mailbox, parse_time
from bench.limits import database_writes, raw_fetch, raw_fetch_parallel
from bench.stats import Spread
from jobs.settings import get_settings


@dataclass
class Throughput:
    messages: int
    copies: int
    single: list[float] = field(default_factory=list)
    raw_single: list[float] = field(default_factory=list)
    concurrent: list[float] = field(default_factory=list)
    raw_concurrent: list[float] = field(default_factory=list)
    insert_many: list[float] = field(default_factory=list)
    upsert: list[float] = field(default_factory=list)
    #: The mailboxes scanned, reused by B1 for its background scans.
    boxes: list[Mailbox] = field(default_factory=list)

    def figures(self) -> dict[str, Spread]:
        return {name: Spread.of(getattr(self, name)) for name in (
            "single", "raw_single", "concurrent", "raw_concurrent", "insert_many", "upsert"
        )}  # fmt: skip


async def timed_scans(api: Api, bench: Bench, boxes: list[Mailbox]) -> tuple[float, list[str]]:
    """Start one scan per mailbox at once; messages per second from the first startScan to the
    last finishedAt, and the account ids."""
    accounts = [await api.connect(box, bench.imaps_port) for box in boxes]
    started = time.time()
    tasks = await asyncio.gather(
        *(api.start_scan(box.user, account) for box, account in zip(boxes, accounts, strict=True))
    )
    done = await api.wait_done([(box.user, task) for box, task in zip(boxes, tasks, strict=True)])
    finished = max(parse_time(task["finishedAt"]) or 0.0 for task in done)
    return sum(box.size for box in boxes) / (finished - started), accounts


def raw_rates(bench: Bench, boxes: list[Mailbox], batch: int) -> float:
    cafile = str(bench.stack.dovecot.cafile)
    if len(boxes) == 1:
        count, seconds = raw_fetch(
            bench.imaps_port, cafile, boxes[0].user, boxes[0].password, batch
        )
    else:
        logins = [(box.user, box.password) for box in boxes]
        count, seconds = raw_fetch_parallel(bench.imaps_port, cafile, logins, batch)
    expected = sum(box.size for box in boxes)
    if count != expected:
        raise RuntimeError(f"raw fetch returned {count} messages, expected {expected}")
    return count / seconds


async def run(bench: Bench, api: Api, messages: int, copies: int, runs: int) -> Throughput:
    settings = get_settings()
    batch = settings.fetch_batch_size
    boxes = [bench.mailbox(f"b2-{index}", messages) for index in range(copies)]
    result = Throughput(messages, copies, boxes=boxes)
    for _ in range(runs):
        result.raw_single.append(raw_rates(bench, boxes[:1], batch))
        rate, accounts = await timed_scans(api, bench, boxes[:1])
        result.single.append(rate)
        rates: dict[str, Any] = await asyncio.to_thread(
            database_writes, settings.mongodb_url, settings.mongodb_database, accounts[0], batch
        )
        result.insert_many.append(rates["insert_many"])
        result.upsert.append(rates["upsert"])
        result.raw_concurrent.append(raw_rates(bench, boxes, batch))
        rate, _ = await timed_scans(api, bench, boxes)
        result.concurrent.append(rate)
    return result
