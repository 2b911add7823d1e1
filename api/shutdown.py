"""SIGTERM handling that closes every websocket with 1001 before the server stops.

uvicorn 0.55 closes the websockets that are still open at shutdown with 1012 (service restart).
The handler installed here runs first: it stops every operation, closes each websocket with
1001 (going away) so that clients reconnect to another replica, and only then passes the signal
on to the handler it replaced (uvicorn's, which starts uvicorn's own shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from api.websocket import OpenWebsockets

logger = logging.getLogger(__name__)

#: Time the websockets get to close before the signal is passed on anyway, in seconds.
CLOSE_TIMEOUT_S = 5.0

_SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def install_sigterm_handler(websockets: OpenWebsockets) -> Callable[[], None]:
    """Install the SIGTERM handler; return the function that puts the previous one back.

    Does nothing outside the main thread, where Python cannot set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: _SignalHandler = signal.getsignal(signal.SIGTERM)
    pending: set[asyncio.Task[None]] = set()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if websockets.closing:
            _pass_on(previous, signum, frame)
            return
        task = loop.create_task(_close_then_pass_on(websockets, previous, signum, frame))
        pending.add(task)
        task.add_done_callback(pending.discard)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


async def _close_then_pass_on(
    websockets: OpenWebsockets, previous: _SignalHandler, signum: int, frame: FrameType | None
) -> None:
    logger.info("SIGTERM received; closing %d websockets with 1001", len(websockets))
    try:
        closed = await asyncio.wait_for(
            websockets.close_all("server shutting down"), CLOSE_TIMEOUT_S
        )
        logger.info("closed %d websockets; shutting down", closed)
    except TimeoutError:
        logger.warning("websockets did not close within %.0f s; shutting down", CLOSE_TIMEOUT_S)
    finally:
        _pass_on(previous, signum, frame)


def _pass_on(previous: _SignalHandler, signum: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
