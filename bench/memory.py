"""B5: peak RSS of one worker process scanning mailboxes of growing size."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.harness import WORKER_THREADS, Api, Bench, parse_time
from bench.procs import children, peak_rss_mb


@dataclass
class WorkerMemory:
    #: Mailbox size -> (peak RSS of the worker process in MiB, scan messages per second).
    sizes: dict[int, tuple[float, float]] = field(default_factory=dict)


async def run(bench: Bench, api: Api, sizes: list[int]) -> WorkerMemory:
    """Needs no worker running on entry; starts one worker process per size."""
    result = WorkerMemory()
    for size in sizes:
        box = bench.mailbox(f"b5-{size}", size)
        account = await api.connect(box, bench.imaps_port)
        worker = bench.start_worker(processes=1, threads=WORKER_THREADS)
        try:
            (child,) = children(worker.pid)
            started = time.time()
            task_id = await api.start_scan(box.user, account)
            (task,) = await api.wait_done([(box.user, task_id)])
            rate = size / ((parse_time(task["finishedAt"]) or 0.0) - started)
            result.sizes[size] = (peak_rss_mb(child), rate)
        finally:
            bench.stop_process(worker)
            bench.stack.dovecot.remove_user(box.user)
    return result
