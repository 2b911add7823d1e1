"""``python -m bench``: run B1 to B5 against fresh local servers and rewrite the report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path

from bench import api_latency, fanout, many_users, memory, throughput
from bench.harness import Api, Bench
from bench.limits import pubsub_round_trips
from bench.report import Results, write_report

logger = logging.getLogger("bench")

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--runs", type=int, default=3, help="repetitions of B2 (default 3)")
    add("--scan-messages", type=int, default=3249, help="B2 mailbox size (default: the corpus)")
    add("--copies", type=int, default=4, help="concurrent scans in B2 and B1 (default 4)")
    add("--clients", type=int, default=50, help="B1 concurrent clients (default 50)")
    add("--duration", type=float, default=30.0, help="B1 load time in seconds (default 30)")
    add("--subscribers", type=int, default=1000, help="B3 websocket subscribers (default 1000)")
    add("--users", type=int, default=50, help="B4 users (default 50)")
    add("--user-messages", type=int, default=100, help="B4 mailbox size (default 100)")
    add("--memory-sizes", default="5000,50000", help="B5 mailbox sizes (default 5000,50000)")
    add("--pubsub-samples", type=int, default=1000, help="raw pub/sub round trips (default 1000)")
    add("--output", type=Path, default=REPORT, help=f"report file (default {REPORT})")
    add("--keep", action="store_true", help="keep .state/bench/run-<pid>/ and its logs")
    add(
        "--only",
        default="B1,B2,B3,B4,B5",
        help="benchmarks to run, comma-separated (default all); B1 and B4 also run B2, "
        "whose mailboxes and single-scan rate they use. Write a partial run to a scratch "
        "file with --output, since the report lists only what ran",
    )
    args = parser.parse_args()
    args.only = _selected(args.only)
    return args


def _selected(text: str) -> set[str]:
    names = {name.strip().upper() for name in text.split(",") if name.strip()}
    unknown = names - {"B1", "B2", "B3", "B4", "B5"}
    if unknown:
        raise SystemExit(f"--only: unknown benchmark {', '.join(sorted(unknown))}; use B1 to B5")
    if names & {"B1", "B4"}:
        names.add("B2")
    return names


async def run_all(bench: Bench, args: argparse.Namespace, results: Results) -> None:
    only = args.only
    api_process = bench.start_api()
    pool = bench.start_worker()
    async with Api(api_process) as api:
        if "B2" in only:
            logger.info("B2 scan throughput, %d runs", args.runs)
            results.b2 = await throughput.run(
                bench, api, args.scan_messages, args.copies, args.runs
            )
        if "B1" in only and results.b2:
            logger.info("B1 API latency, %d clients for %.0f s", args.clients, args.duration)
            results.b1 = await api_latency.run(
                bench, api, results.b2.boxes, args.clients, args.duration
            )
        if "B4" in only:
            logger.info("B4 %d users of %d messages", args.users, args.user_messages)
            results.b4 = await many_users.run(bench, api, args.users, args.user_messages)
        bench.stop_process(pool)

        if "B3" in only:
            logger.info("B3 fan-out to %d subscribers", args.subscribers)
            results.b3 = [
                await fanout.run(bench, args.subscribers, processes, args.scan_messages)
                for processes in (1, 2)
            ]
            results.pubsub_s = await pubsub_round_trips(bench.stack.redis.url, args.pubsub_samples)

        if "B5" in only:
            sizes = [int(size) for size in args.memory_sizes.split(",") if size]
            logger.info("B5 worker memory at %s messages", sizes)
            results.b5 = await memory.run(bench, api, sizes)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results = Results(command="make bench", options=vars(args), load_before=os.getloadavg()[0])
    bench = Bench(keep=args.keep)
    started = time.monotonic()
    bench.start()
    try:
        asyncio.run(run_all(bench, args, results))
    finally:
        bench.stop()
    results.duration_s = time.monotonic() - started
    write_report(args.output, results)
    logger.info("wrote %s after %.0f s", args.output, results.duration_s)


if __name__ == "__main__":
    main()
