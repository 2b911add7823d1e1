"""Profile of one scan: time per stage, py-spy samples of the worker, CPU time per process.

``python -m bench.profile [--messages N]`` scans the corpus twice on fresh servers. The first
scan runs in this process with a timer around each stage (:mod:`bench.stages`). The second
runs in one worker process under ``py-spy record``; the output lists the heaviest functions
of the worker and the CPU seconds each process name used during that scan.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import signal
import subprocess
import time
import tracemalloc
from pathlib import Path

from bench.harness import Api, Bench
from bench.mail import corpus
from bench.procs import children, cpu_seconds, cpu_seconds_by_name
from bench.stages import scan_stages
from jobs.analysis import analyse_message
from jobs.settings import get_settings

#: Leaf frames of threads that wait (py-spy samples them as active anyway).
IDLE_LEAVES = (
    "Condition.wait",
    "_RedisConsumer.__next__",
    "_worker thread.py",
    "_CtypesTimeoutManager",
    "worker_process",
    "EpollSelector.select",
    "SSLSocket.read",
    "socket.recv",
)


def summarise(raw: Path, top: int) -> list[str]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [
            frame.split(" (")[0] + " " + frame.split("/")[-1].rstrip(")")
            for frame in stack.split(";")
        ]
        if any(frames[-1].startswith(idle) for idle in IDLE_LEAVES):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    lines += [f"self {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += [f"incl {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top * 2)]
    return lines


async def scan_once(bench: Bench, messages: int) -> float:
    api_process = bench.start_api()
    box = bench.mailbox("profile", messages)
    async with Api(api_process) as api:
        account = await api.connect(box, bench.imaps_port)
        started = time.time()
        task = await api.start_scan(box.user, account)
        await api.wait_done([(box.user, task)])
        return time.time() - started


async def stage_times(bench: Bench, messages: int) -> dict[str, float]:
    """Seconds per stage of one scan run in this process (no worker running)."""
    api_process = bench.start_api()
    box = bench.mailbox("stages", messages)
    async with Api(api_process) as api:
        account = await api.connect(box, bench.imaps_port)
        task = await api.start_scan(box.user, account)
    return await scan_stages(task)


def batch_memory(batch: int) -> list[str]:
    """Python heap used to analyse one batch of corpus messages (tracemalloc), and its size."""
    raw = corpus()[:batch]
    tracemalloc.start()
    analysed = [analyse_message(message) for message in raw]
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return [
        f"batch of {len(analysed)} messages: {sum(map(len, raw)) / 2**20:.1f} MiB raw, "
        f"analysis heap peak {peak / 2**20:.1f} MiB, kept {current / 2**20:.1f} MiB"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--messages", type=int, default=3249)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mailscan-profile.txt"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bench = Bench()
    bench.start()
    try:
        stages = asyncio.run(stage_times(bench, args.messages))
        worker = bench.start_worker(processes=1)
        (child,) = children(worker.pid)
        spy = subprocess.Popen(
            ["py-spy", "record", "--format", "raw", "--rate", "200",
             "--pid", str(child), "--output", str(args.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(1)
        before = cpu_seconds_by_name()
        worker_before = cpu_seconds(child)
        seconds = asyncio.run(scan_once(bench, args.messages))
        after = cpu_seconds_by_name()
        worker_cpu = cpu_seconds(child) - worker_before
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    finally:
        bench.stop()

    print("\n".join(batch_memory(get_settings().fetch_batch_size)))
    for name, seconds_used in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"stage {seconds_used:7.2f} s  {name}")
    print(f"scan of {args.messages} messages: {seconds:.2f} s, {args.messages / seconds:.0f}/s")
    print(f"cpu {worker_cpu:7.2f} s  worker process (pid {child})")
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    for name, cpu in sorted(used.items(), key=lambda item: -item[1])[:8]:
        print(f"cpu {cpu:7.2f} s  {name}")
    print("\n".join(summarise(args.out, 25)))


if __name__ == "__main__":
    main()
