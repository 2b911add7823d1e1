"""The project's own processes, the API under uvicorn and a Dramatiq worker, as children.

Both ``scripts.run`` and the test fixtures start them with the caller's environment plus
``env``. Each one writes its output to a log file and runs in its own process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.services.process import HOST, REPO_ROOT, ServiceError, free_port

logger = logging.getLogger(__name__)

#: How long the worker and the API may take to become ready, in seconds.
PROCESS_START_TIMEOUT_S = 60.0
#: How long the worker and the API may take to exit after SIGTERM, in seconds.
PROCESS_STOP_TIMEOUT_S = 15.0
#: Line a Dramatiq 2.x worker process logs once it consumes messages.
WORKER_READY_LINE = "Worker process is ready for action."


class ManagedProcess:
    """A child process in its own process group, with its output in ``log_file``.

    :meth:`start` raises :class:`ServiceError` with the tail of the log when the process exits
    or is not ready within :data:`PROCESS_START_TIMEOUT_S`. :meth:`stop` sends SIGTERM to the
    process, then SIGKILL to its group after :data:`PROCESS_STOP_TIMEOUT_S`.
    """

    def __init__(
        self, name: str, command: list[str], log_file: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.command = command
        self.log_file = log_file
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_ready(self) -> bool:
        raise NotImplementedError

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {self.log_file})"

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=REPO_ROOT,
                start_new_session=True,
            )

        deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode} during start; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            if self.is_ready():
                logger.info("%s ready (pid %d, log %s)", self.name, self.pid, self.log_file)
                return
            time.sleep(0.1)
        self.stop()
        raise ServiceError(
            f"{self.name} was not ready within {PROCESS_START_TIMEOUT_S:.0f} s; "
            f"log {self.log_file}:\n{self.log_tail()}"
        )

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Only the parent gets SIGTERM: dramatiq forwards it to its worker processes, and a
        # second SIGTERM makes them stop at once instead of gracefully.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(PROCESS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing its process group", self.name)
            self.signal_group(signal.SIGKILL)
            self.process.wait()
        # Children (forked worker processes) may outlive the parent after a crash.
        self.signal_group(signal.SIGKILL)

    def kill(self) -> None:
        """Kill the whole process group at once, like a crash."""
        if self.process is not None:
            self.signal_group(signal.SIGKILL)
            self.process.wait()


class WorkerProcess(ManagedProcess):
    """``dramatiq jobs.worker``; ready once a worker process logs :data:`WORKER_READY_LINE`."""

    def __init__(
        self,
        log_file: Path,
        threads: int,
        queue: str,
        processes: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        command = [
            sys.executable, "-m", "dramatiq", "jobs.worker", "--processes", str(processes),
            "--threads", str(threads), "--queues", queue,
        ]  # fmt: skip
        # The default prefetch of twice the thread count lets one worker hoard queued scans.
        prefetch = {"dramatiq_queue_prefetch": str(threads)}
        super().__init__("dramatiq worker", command, log_file, {**(env or {}), **prefetch})
        self._log_offset = 0

    def start(self) -> None:
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        super().start()

    def is_ready(self) -> bool:
        with self.log_file.open("rb") as log:
            log.seek(self._log_offset)
            return WORKER_READY_LINE.encode() in log.read()


class ApiProcess(ManagedProcess):
    """``uvicorn api.app:create_app`` on ``port`` (default: a free one); ready once ``/healthz``
    returns 200."""

    def __init__(
        self, log_file: Path, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        command = [
            sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
            "--host", HOST, "--port", str(self.port), "--log-level", "info",
            # Progress frames are a few hundred bytes, so compressing each one costs CPU per
            # subscriber and saves almost nothing.
            "--ws-per-message-deflate", "false",
        ]  # fmt: skip
        super().__init__("uvicorn API", command, log_file, env)

    @property
    def http_url(self) -> str:
        """Base URL; GraphQL is at ``/graphql``."""
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/graphql"

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1) as response:
                status: int = response.status
                return status == 200
        except (urllib.error.URLError, OSError):
            return False
