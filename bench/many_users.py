"""B4: many users scanning small mailboxes at once on the default worker pool."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.harness import WORKER_PROCESSES, WORKER_THREADS, Api, Bench, parse_time


@dataclass
class ManyUsers:
    users: int
    messages: int
    completed: int = 0
    makespan_s: float = 0.0
    #: Largest time from the task's creation (startScan) to RUNNING (its startedAt).
    max_wait_s: float = 0.0
    median_wait_s: float = 0.0

    @property
    def slots(self) -> int:
        return WORKER_PROCESSES * WORKER_THREADS

    def ideal_s(self, single_rate: float) -> float:
        """Every message at the single-scan rate, spread evenly over the worker slots."""
        return self.users * self.messages / (single_rate * self.slots)


async def run(bench: Bench, api: Api, users: int, messages: int) -> ManyUsers:
    result = ManyUsers(users, messages)
    boxes = [bench.mailbox(f"b4-{index}", messages) for index in range(users)]
    accounts = [await api.connect(box, bench.imaps_port) for box in boxes]
    started = time.time()
    tasks = await asyncio.gather(
        *(api.start_scan(box.user, account) for box, account in zip(boxes, accounts, strict=True))
    )
    done = await api.wait_done([(box.user, task) for box, task in zip(boxes, tasks, strict=True)])
    result.completed = sum(1 for task in done if task["status"] == "COMPLETED")
    result.makespan_s = max(parse_time(task["finishedAt"]) or 0.0 for task in done) - started
    waits = sorted(
        (parse_time(task["startedAt"]) or 0.0) - (parse_time(task["createdAt"]) or 0.0)
        for task in done
    )
    result.max_wait_s = waits[-1]
    result.median_wait_s = waits[len(waits) // 2]
    return result
