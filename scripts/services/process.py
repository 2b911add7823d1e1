"""Process, port and pid-file helpers, and the :class:`Component` base of every server."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def others_can_traverse(path: Path) -> bool:
    """Tell whether a user without rights of its own (``nobody``) can reach ``path``."""
    return all(folder.stat().st_mode & 0o001 for folder in (path, *path.parents))


def choose_state_root(repo_root: Path) -> Path:
    """Return the folder of every server's files: ``.state`` in the checkout when possible.

    Dovecot delivers mail as ``nobody`` and PostgreSQL runs as ``postgres``, so neither can
    use a folder inside a checkout that other users cannot reach (a clone under ``/root`` is
    mode 0700). Such a checkout keeps its state in ``/tmp/mailscan-state-<hash>`` instead, and
    ``.state`` becomes a symbolic link to it for people reading logs.
    """
    local = repo_root / ".state"
    if others_can_traverse(repo_root):
        return local
    digest = hashlib.sha256(str(repo_root).encode()).hexdigest()[:12]
    shared = Path(tempfile.gettempdir()) / f"mailscan-state-{digest}"
    shared.mkdir(mode=0o755, exist_ok=True)
    if not local.exists() and not local.is_symlink():
        local.symlink_to(shared)
    return shared


STATE_ROOT = choose_state_root(REPO_ROOT)
BIN_DIR = STATE_ROOT / "bin"
HOST = "127.0.0.1"

#: How long a server may take to accept connections after its launch, in seconds.
START_TIMEOUT_S = 60.0
#: How long a server may take to exit after SIGTERM before it gets SIGKILL, in seconds.
STOP_TIMEOUT_S = 15.0


class ServiceError(Exception):
    """A local server failed to install, start or stop."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def process_matches(pid: int, executable: str) -> bool:
    """Tell whether ``pid`` is alive and its command line mentions ``executable``.

    The name check keeps ``stop`` from signalling an unrelated process that reused the pid of
    a server that crashed.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return executable.encode() in cmdline


def wait_for_exit(pid: int, executable: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_matches(pid, executable):
            return True
        time.sleep(0.05)
    return False


def terminate(pid: int, executable: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Send SIGTERM to ``pid``, then SIGKILL if it still runs after ``timeout_s``."""
    if not process_matches(pid, executable):
        return
    os.kill(pid, signal.SIGTERM)
    if wait_for_exit(pid, executable, timeout_s):
        return
    logger.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", executable, pid, timeout_s)
    os.kill(pid, signal.SIGKILL)
    wait_for_exit(pid, executable, timeout_s)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def run_command(command: Sequence[str], what: str, **kwargs: object) -> str:
    """Run ``command`` and return its output; raise :class:`ServiceError` naming ``what``."""
    logger.debug("running %s", " ".join(command))
    result = subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        raise ServiceError(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}"
        )
    output: str = result.stdout
    return output


def run_daemon(command: Sequence[str], log_file: Path) -> None:
    """Run a command that daemonizes, with its output appended to ``log_file``.

    A pipe would keep :func:`subprocess.run` waiting for as long as the daemon lives,
    because the daemon inherits it.
    """
    logger.debug("running %s", " ".join(command))
    with log_file.open("ab") as log:
        returncode = subprocess.call(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    if returncode != 0:
        raise ServiceError(f"{command[0]} exited with {returncode}")


def chown_tree(path: Path, user: str, group: str) -> None:
    for root, dirs, files in os.walk(path):
        shutil.chown(root, user, group)
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), user, group)


class Component:
    """One server process with its own folder, pid file and ``ports.json``.

    :meth:`start` returns once the server accepts TCP connections on its port and raises
    :class:`ServiceError` with the tail of its log when it exits or times out instead.
    :meth:`stop` is safe to call when the server is not running.
    """

    name: ClassVar[str]
    #: A word of the server's command line, checked before it is signalled.
    executable: ClassVar[str]

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def ports_file(self) -> Path:
        return self.directory / "ports.json"

    def ports(self) -> dict[str, int]:
        return {"port": self.port}

    def pid(self) -> int | None:
        """Return the pid of the running server, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_matches(pid, self.executable) else None

    def recorded_ports(self) -> dict[str, int]:
        try:
            ports: dict[str, int] = json.loads(self.ports_file.read_text())
        except (OSError, ValueError):
            return {}
        return ports

    def start(self) -> None:
        if self.pid() is not None:
            self._check_running_ports()
            logger.info("%s already running on %s:%d", self.name, HOST, self.port)
            return

        self.directory.mkdir(parents=True, exist_ok=True)
        self.ports_file.unlink(missing_ok=True)
        self.prepare()
        logger.info("starting %s on %s:%d (log %s)", self.name, HOST, self.port, self.log_file)
        self.launch()
        self.wait_until_ready()
        self.ports_file.write_text(json.dumps(self.ports()))
        logger.info("%s ready on %s:%d", self.name, HOST, self.port)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        self.shutdown(pid)
        self.pid_file.unlink(missing_ok=True)
        logger.info("%s stopped (port %d, pid %d)", self.name, self.port, pid)

    def prepare(self) -> None:
        """Write config files and data folders before the launch."""

    def launch(self) -> None:
        raise NotImplementedError

    def shutdown(self, pid: int) -> None:
        terminate(pid, self.executable)

    def is_ready(self) -> bool:
        return port_accepts(self.port)

    def process_exited(self) -> bool:
        """Tell whether the launched process is gone (checked while waiting for readiness)."""
        return False

    def wait_until_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            if self.process_exited():
                raise self.start_error("exited during start")
            time.sleep(0.1)
        raise self.start_error(f"did not accept connections within {timeout_s:.0f} s")

    def start_error(self, what: str) -> ServiceError:
        return ServiceError(
            f"{self.name} on {HOST}:{self.port} {what}; log {self.log_file}:\n"
            f"{log_tail(self.log_file)}"
        )

    def _check_running_ports(self) -> None:
        recorded = self.recorded_ports()
        if recorded and recorded != self.ports():
            raise ServiceError(
                f"{self.name} in {self.directory} is already running with ports {recorded}, "
                f"not {self.ports()}; stop it first (python -m scripts.services stop)"
            )
