"""Connections of a worker process, opened once on its event loop thread."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from functools import lru_cache

from jobs.runtime import Runtime
from jobs.settings import get_settings

_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None
#: Set when the worker process begins a graceful shutdown (SIGTERM or SIGINT).
_stopping = threading.Event()


def request_stop() -> None:
    """Ask the running scans of this process to hand their tasks back after their batch."""
    _stopping.set()


def stop_requested() -> bool:
    return _stopping.is_set()


@lru_cache(maxsize=1)
def worker_id() -> str:
    """Identity of this worker process in task leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def get_worker_runtime() -> Runtime:
    """Return this process's runtime, opening it on first use.

    Dramatiq's AsyncIO middleware runs every async actor of a process on one event loop, so
    one runtime per process serves every worker thread.
    """
    global _runtime, _lock
    if _runtime is not None:
        return _runtime
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _runtime is None:
            _runtime = await Runtime.open(get_settings())
    return _runtime
