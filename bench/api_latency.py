"""B1: latency of startScan, taskHistory and ``{ __typename }`` under load while scans run.

``clients`` closed-loop clients each keep one HTTP connection (:mod:`bench.http_client`) and
send their next request as soon as the previous response arrives. Client ``i`` sends the three
operations in turn starting at ``i % 3``, so all three see the same load in the same seconds.
Each client is its own user with its own empty mailbox: its startScan succeeds when its
previous scan has ended and is refused with ScanAlreadyRunning otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

from bench.harness import Api, Bench, Mailbox
from bench.http_client import KeepAliveClient
from bench.stats import latency_row
from scripts.services import HOST
from scripts.services.apps import ApiProcess

HISTORY = "query { taskHistory(first: 20) { edges { node { id status percent } } } }"
TYPENAME = "{ __typename }"
START = """
mutation Start($accountId: ID!) {
  startScan(accountId: $accountId, months: 1) { __typename }
}
"""
OPERATIONS = ("startScan", "taskHistory", "__typename")


@dataclass
class Latency:
    clients: int
    duration_s: float
    samples: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    background_scans: int = 0
    #: Background scans still running when the load stopped.
    still_running: int = 0

    def rows(self) -> dict[str, dict[str, float]]:
        return {name: latency_row(self.samples[name]) for name in OPERATIONS}


async def client_loop(
    api: ApiProcess, index: int, user: str, account: str, deadline: float, result: Latency
) -> None:
    client = KeepAliveClient(HOST, api.port)
    headers = {"Authorization": f"Bearer dev:{user}"}
    requests = {
        "startScan": {"query": START, "variables": {"accountId": account}},
        "taskHistory": {"query": HISTORY},
        "__typename": {"query": TYPENAME},
    }
    turn = index % len(OPERATIONS)
    try:
        while time.monotonic() < deadline:
            name = OPERATIONS[turn]
            turn = (turn + 1) % len(OPERATIONS)
            started = time.perf_counter()
            body = await client.post_json("/graphql", requests[name], headers)
            result.samples[name].append(time.perf_counter() - started)
            if body.get("errors"):
                result.outcomes[f"{name} error"] += 1
            elif name == "startScan":
                result.outcomes[body["data"]["startScan"]["__typename"]] += 1
    finally:
        await client.close()


async def run(
    bench: Bench, api: Api, busy: list[Mailbox], clients: int, duration_s: float
) -> Latency:
    """Start one scan of each ``busy`` mailbox, then load the API for ``duration_s``."""
    result = Latency(clients, duration_s)
    users = [bench.mailbox(f"b1-{index}", 0) for index in range(clients)]
    accounts = [await api.connect(box, bench.imaps_port) for box in users]
    scans = []
    for box in busy:
        scans.append(
            (box.user, await api.start_scan(box.user, await api.connect(box, bench.imaps_port)))
        )
    result.background_scans = len(scans)

    deadline = time.monotonic() + duration_s
    await asyncio.gather(
        *(
            client_loop(api.process, index, box.user, account, deadline, result)
            for index, (box, account) in enumerate(zip(users, accounts, strict=True))
        )
    )
    statuses = [(await api.task(user, task))["status"] for user, task in scans]
    result.still_running = sum(status in {"QUEUED", "RUNNING"} for status in statuses)
    await api.wait_done(scans)
    return result
