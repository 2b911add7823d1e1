"""Wall time of each stage of one scan, measured by running the scan in this process.

Timers wrap the functions the scan module calls (IMAP fetch, analysis, result saving,
checkpoint, progress) for the length of one call to ``run_scan``. Nothing is changed on
disk. The task must be QUEUED with no worker consuming the queue.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable
from typing import Any

import jobs.attempt
import jobs.scan
from jobs.imap import ImapSession
from jobs.progress import ProgressPublisher
from jobs.runtime import Runtime
from jobs.settings import get_settings


def _timed(totals: dict[str, float], name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if hasattr(func, "__code__") and func.__code__.co_flags & 0x80:  # a coroutine function

        @functools.wraps(func)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - started

        return wrapped_async

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - started

    return wrapped


async def scan_stages(task_id: str) -> dict[str, float]:
    """Run ``task_id`` here; seconds per stage and ``total``."""
    totals: dict[str, float] = collections.defaultdict(float)
    patches = [
        (jobs.scan, "analyse_batch", "analyse"),
        (jobs.scan, "save_batch", "save results"),
        (jobs.scan, "save_checkpoint", "checkpoint"),
        (jobs.attempt, "summarise", "summary"),
        (ImapSession, "fetch", "IMAP fetch"),
        (ImapSession, "connect_and_login", "IMAP login"),
        (ImapSession, "search_since", "IMAP search"),
        (ProgressPublisher, "publish", "progress"),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    for owner, attr, name in patches:
        setattr(owner, attr, _timed(totals, name, getattr(owner, attr)))
    rt = await Runtime.open(get_settings())
    try:
        started = time.perf_counter()
        await jobs.scan.run_scan(rt, task_id, "bench-stages")
        totals["total"] = time.perf_counter() - started
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)
        await rt.close()
    return dict(totals)
