"""The measured part of ``docs/benchmarks.md``: written between two marker lines, so the
hand-written analysis around it survives a new run."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.api_latency import OPERATIONS, Latency
from bench.fanout import FanOut
from bench.limits import UPSERT_SAMPLE
from bench.many_users import ManyUsers
from bench.memory import WorkerMemory
from bench.stats import latency_row
from bench.throughput import Throughput
from scripts.services.servers import FERRETDB_BIN, POSTGRESQL_BIN

BEGIN = "<!-- bench:begin (written by make bench; edits inside are lost) -->"
END = "<!-- bench:end -->"
PACKAGES = (
    "strawberry-graphql", "starlette", "uvicorn", "dramatiq", "redis", "beanie", "pymongo",
    "websockets", "httpx",
)  # fmt: skip


@dataclass
class Results:
    command: str
    options: dict[str, Any]
    duration_s: float = 0.0
    #: One-minute load average of the machine just before the suite started.
    load_before: float = 0.0
    b1: Latency | None = None
    b2: Throughput | None = None
    b3: list[FanOut] = field(default_factory=list)
    b4: ManyUsers | None = None
    b5: WorkerMemory | None = None
    pubsub_s: list[float] = field(default_factory=list)


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0]
        if (done.stdout or done.stderr)
        else "?"
    )


def versions() -> list[str]:
    lines = [
        f"Python {platform.python_version()}, Linux {platform.release()}",
        _first_line(["redis-server", "--version"]),
        "Dovecot " + _first_line(["dovecot", "--version"]),
        "FerretDB " + _first_line([str(FERRETDB_BIN), "--version"]).removeprefix("version: "),
        _first_line([str(POSTGRESQL_BIN / "postgres"), "--version"]),
    ]
    packages = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in PACKAGES)
    return [*lines, packages]


def source_state() -> str:
    """Describe the commit measured and whether the working tree had uncommitted changes."""
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"])
    changed = subprocess.run(
        # The report file itself is left out: every run rewrites it.
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks.md"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout.strip()  # fmt: skip
    return f"commit {commit}" + (" with uncommitted changes in the working tree" if changed else "")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ms(value: float) -> str:
    return f"{value:,.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def summary_rows(r: Results) -> list[str]:
    rows = [
        "| | measured | limit in the same run | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    if r.b1:
        floor = r.b1.rows()["__typename"]["p99"]
        for name in ("startScan", "taskHistory"):
            p99 = r.b1.rows()[name]["p99"]
            ok = p99 <= 50 and p99 <= 2 * floor
            rows.append(
                f"| B1 {name} p99 | {_ms(p99)} ms | `__typename` p99 {_ms(floor)} ms | "
                f"{p99 / floor:.1f}x | ≤ 50 ms and ≤ 2x | {_verdict(ok)} |"
            )
    if r.b2:
        f = r.b2.figures()
        one, raw = f["single"].median, f["raw_single"].median
        rows.append(
            f"| B2 one scan | {one:,.0f} msg/s | raw IMAP {raw:,.0f} msg/s | {one / raw:.2f} | "
            f"≥ 3,000 msg/s | {_verdict(one >= 3000)} |"
        )
        four, raw4 = f["concurrent"].median, f["raw_concurrent"].median
        rows.append(
            f"| B2 {r.b2.copies} scans at once | {four:,.0f} msg/s | raw IMAP {raw4:,.0f} msg/s | "
            f"{four / raw4:.2f} | reported | |"
        )
        rows.append(
            f"| B2 one scan vs database | {one:,.0f} msg/s | insert_many "
            f"{f['insert_many'].median:,.0f} docs/s | {one / f['insert_many'].median:.2f} | "
            "reported | |"
        )
    for fan in r.b3:
        raw = latency_row(r.pubsub_s)["p99"]
        row = fan.row()
        ok = row["p99"] <= 100 and fan.terminal == fan.subscribers
        rows.append(
            f"| B3 {fan.subscribers} subscribers, {fan.api_processes} API process(es), p99 | "
            f"{_ms(row['p99'])} ms | Redis pub/sub p99 {_ms(raw)} ms | {row['p99'] / raw:,.0f}x | "
            f"≤ 100 ms, all get the end | {_verdict(ok)} |"
        )
    if r.b4 and r.b2:
        ideal = r.b4.ideal_s(r.b2.figures()["single"].median)
        rows.append(
            f"| B4 {r.b4.users} users makespan | {r.b4.makespan_s:.1f} s | ideal {ideal:.2f} s | "
            f"{r.b4.makespan_s / ideal:.1f}x | all complete ({r.b4.completed}/{r.b4.users}) | "
            f"{_verdict(r.b4.completed == r.b4.users)} |"
        )
    if r.b5:
        for size, (rss, _) in sorted(r.b5.sizes.items()):
            rows.append(
                f"| B5 worker peak RSS, {size:,} messages | {rss:,.0f} MiB | | | < 300 MB | "
                f"{_verdict(rss * 1.048576 < 300)} |"
            )
    for fan in r.b3:
        peaks = ", ".join(f"{mib:,.0f}" for mib in fan.api_peak_rss_mb)
        rows.append(
            f"| B5 API peak RSS, {fan.subscribers} subscribers on {fan.api_processes} "
            f"process(es) | {peaks} MiB | | | reported | |"
        )
    return rows


def details(r: Results) -> list[str]:
    out: list[str] = []
    if r.b1:
        b1 = r.b1
        out += [
            "", f"### B1 API latency ({b1.clients} clients, {b1.duration_s:.0f} s, one run)", "",
            f"{b1.background_scans} corpus scans were started before the load; "
            f"{b1.still_running} were still queued or running when it stopped. startScan "
            f"outcomes: {dict(b1.outcomes)}.", "",
            "| operation | requests | requests/s | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name in OPERATIONS:
            row = b1.rows()[name]
            out.append(
                f"| {name} | {row['count']:,.0f} | {row['count'] / b1.duration_s:,.0f} | "
                f"{_ms(row['p50'])} | {_ms(row['p95'])} | "
                f"{_ms(row['p99'])} |"
            )
    if r.b2:
        f = r.b2.figures()
        out += [
            "", f"### B2 scan throughput ({r.b2.messages:,} messages per mailbox)", "",
            "Median (min-max) of the runs; messages or documents per second.", "",
            "| figure | value |", "|---|---|",
            f"| one scan, startScan to finishedAt | {f['single'].text()} |",
            "| raw imaplib UID FETCH BODY.PEEK[] of the same mailbox (IMAPS) | "
            f"{f['raw_single'].text()} |",
            f"| {r.b2.copies} scans at once, total | {f['concurrent'].text()} |",
            f"| raw fetch of the {r.b2.copies} mailboxes at once, one process each | "
            f"{f['raw_concurrent'].text()} |",
            "| insert_many of the scan's saved documents, same batch size | "
            f"{f['insert_many'].text()} |",
            f"| unordered UpdateOne upserts of the first {UPSERT_SAMPLE} documents | "
            f"{f['upsert'].text()} |",
        ]  # fmt: skip
    if r.b3:
        raw = latency_row(r.pubsub_s)
        out += [
            "", "### B3 progress latency and fan-out (one run each)", "",
            f"Raw Redis pub/sub, publish to delivery, one subscriber, {len(r.pubsub_s)} messages: "
            f"p50 {_ms(raw['p50'])} ms, p99 {_ms(raw['p99'])} ms. CPU columns: CPU seconds per "
            "second of the scan (100 % is one core), API processes summed.", "",
            "| API processes | subscribers | connect s | events received | p50 ms | p99 ms | "
            "got the terminal event | Redis pub/sub connections | channel NUMSUB | "
            "API CPU | client CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for fan in r.b3:
            row = fan.row()
            out.append(
                f"| {fan.api_processes} | {fan.subscribers} | {fan.connect_s:.1f} | "
                f"{row['count']:,.0f} | {_ms(row['p50'])} | {_ms(row['p99'])} | "
                f"{fan.terminal} | {fan.pubsub_connections} | {fan.channel_subscribers} | "
                f"{fan.api_cpu:.0%} | {fan.client_cpu:.0%} |"
            )
    if r.b4 and r.b2:
        b4 = r.b4
        single = r.b2.figures()["single"].median
        out += [
            "", f"### B4 many users ({b4.users} x {b4.messages} messages, one run)", "",
            f"Completed {b4.completed}/{b4.users}. Makespan {b4.makespan_s:.1f} s from the first "
            f"startScan to the last finishedAt. Ideal {b4.ideal_s(single):.2f} s: "
            f"{b4.users * b4.messages:,} messages at the B2 single-scan median of {single:,.0f} "
            f"msg/s over {b4.slots} worker slots. Wait from createdAt to startedAt: median "
            f"{b4.median_wait_s:.1f} s, largest {b4.max_wait_s:.1f} s.",
        ]  # fmt: skip
    if r.b5:
        out += ["", "### B5 worker memory (one worker process, one run per size)", "",
                "| mailbox | peak RSS (VmHWM) MiB | scan msg/s |", "|---|---|---|"]  # fmt: skip
        for size, (rss, rate) in sorted(r.b5.sizes.items()):
            out.append(f"| {size:,} | {rss:,.0f} | {rate:,.0f} |")
    return out


def measured_section(r: Results) -> list[str]:
    options = " ".join(
        f"{k}={','.join(sorted(v)) if isinstance(v, set) else v}"
        for k, v in r.options.items()
        if k not in {"output", "keep"}
    )
    head = [
        BEGIN, "",
        f"Command: `{r.command}` (`python -m bench`), options: {options}.", "",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Machine: `nproc` = {os.cpu_count()}, "
        f"{_cpu_model()}. Run time of the suite: {r.duration_s / 60:.1f} min.", "",
        f"Code: {source_state()}.", "",
        "Software: " + "; ".join(versions()) + ".", "",
        f"Load average over the minute before the suite started: {r.load_before:.2f}. The load "
        "generators, the servers, the API and the workers all ran on this machine.", "",
        "## Summary", "", *summary_rows(r), "", "## Raw figures",
    ]  # fmt: skip
    return [*head, *details(r), "", END]


def write_report(path: Path, r: Results) -> None:
    section = "\n".join(measured_section(r))
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        before = text[: text.index(BEGIN)]
        after = text[text.index(END) + len(END) :]
        text = before + section + after
    else:
        text = "# Benchmarks\n\n" + section + "\n"
    path.write_text(text)
