"""Session fixtures that start real servers on loopback for the tests that request them.

Servers start lazily: a run of unit tests starts none. Each session keeps its servers, logs
and mail in ``.state/test/session-<id>/`` on free ports, so several sessions can run at once.
That folder is removed at the end unless a test failed, when its logs are worth reading.

Fixtures:

* ``redis_server``, ``mongodb_server`` (PostgreSQL + FerretDB), ``dovecot``: one server each;
  ``services`` starts all of them and returns their addresses.
* ``mail_user``: factory of Dovecot users with a password and an empty INBOX.
* ``worker``: a Dramatiq worker process consuming the scan queue.
* ``api_server``: the API under uvicorn, with ``http_url`` and ``ws_url``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from jobs.settings import get_settings
from scripts.services import (
    HOST,
    STATE_ROOT,
    Dovecot,
    FerretDB,
    Ports,
    Redis,
    Stack,
    free_port,
    session_roots,
)

logger = logging.getLogger(__name__)

#: How long the worker and the API may take to become ready, in seconds.
PROCESS_START_TIMEOUT_S = 60.0
#: How long the worker and the API may take to exit after SIGTERM, in seconds.
PROCESS_STOP_TIMEOUT_S = 15.0
#: Line a Dramatiq 2.x worker process logs once it consumes messages.
WORKER_READY_LINE = "Worker process is ready for action."


def set_environment(**values: str) -> None:
    """Export ``MAILSCAN_<NAME>`` variables and drop the cached settings."""
    for name, value in values.items():
        os.environ[f"MAILSCAN_{name.upper()}"] = value
    get_settings.cache_clear()


def pytest_configure(config: pytest.Config) -> None:
    # Every test process, and every server process it starts, shares these settings.
    set_environment(
        secret_keys=Fernet.generate_key().decode(),
        dev_auth="1",
        allow_private_hosts="1",
        allow_insecure_imap="1",
        mongodb_database=f"test_{secrets.token_hex(4)}",
    )


# --- session folder and servers ----------------------------------------------------------------


def owner_alive(root: Path) -> bool:
    try:
        pid = int((root / "owner.pid").read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def remove_stale_sessions() -> None:
    """Stop the servers of sessions whose pytest process is gone, and delete their folders."""
    for root in session_roots("test"):
        if owner_alive(root):
            continue
        logger.info("removing stale test session %s", root)
        Stack("test", root=root).stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def service_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Servers of this session (not started): a private folder and free ports."""
    remove_stale_sessions()
    root = STATE_ROOT / "test" / f"session-{os.getpid()}-{secrets.token_hex(3)}"
    root.mkdir(parents=True)
    (root / "owner.pid").write_text(str(os.getpid()))
    stack = Stack("test", root=root, ports=Ports.free())
    yield stack

    stack.stop()
    if request.session.testsfailed:
        print(f"\nserver logs of this test session are kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(service_stack: Stack) -> Iterator[Redis]:
    service_stack.redis.start()
    set_environment(redis_url=service_stack.redis.url)
    yield service_stack.redis
    service_stack.redis.stop()


@pytest.fixture(scope="session")
def mongodb_server(service_stack: Stack) -> Iterator[FerretDB]:
    """FerretDB on PostgreSQL; ``MAILSCAN_MONGODB_DATABASE`` is unique to the session."""
    assert service_stack.postgresql is not None
    service_stack.postgresql.start()
    service_stack.ferretdb.start()
    set_environment(mongodb_url=service_stack.ferretdb.url)
    yield service_stack.ferretdb
    service_stack.ferretdb.stop()
    service_stack.postgresql.stop()


@pytest.fixture(scope="session")
def dovecot(service_stack: Stack) -> Iterator[Dovecot]:
    service_stack.dovecot.start()
    set_environment(imap_ca_file=str(service_stack.dovecot.cafile))
    yield service_stack.dovecot
    service_stack.dovecot.stop()


@dataclass(frozen=True)
class Services:
    """Addresses of the session's servers, all on 127.0.0.1."""

    redis_url: str
    mongodb_url: str
    mongodb_database: str
    imap_port: int
    imaps_port: int
    #: CA certificate for IMAPS clients (also ``MAILSCAN_IMAP_CA_FILE``).
    cafile: Path
    dovecot: Dovecot
    state_dir: Path


@pytest.fixture(scope="session")
def services(
    service_stack: Stack, redis_server: Redis, mongodb_server: FerretDB, dovecot: Dovecot
) -> Services:
    return Services(
        redis_url=redis_server.url,
        mongodb_url=mongodb_server.url,
        mongodb_database=get_settings().mongodb_database,
        imap_port=dovecot.port,
        imaps_port=dovecot.imaps_port,
        cafile=dovecot.cafile,
        dovecot=dovecot,
        state_dir=service_stack.root,
    )


# --- mail users --------------------------------------------------------------------------------


@dataclass
class MailUser:
    """A Dovecot user; log in as ``name``/``password`` on ``host`` at ``imap_port`` or
    ``imaps_port``."""

    name: str
    password: str
    maildir: Path
    dovecot: Dovecot = field(repr=False)
    host: str = HOST

    @property
    def imap_port(self) -> int:
        return self.dovecot.port

    @property
    def imaps_port(self) -> int:
        return self.dovecot.imaps_port

    def deliver(
        self, raw: bytes, internal_date: datetime, flags: str = "S", folder: str = "INBOX"
    ) -> Path:
        return self.dovecot.deliver(self.name, raw, internal_date, flags, folder)

    def deliver_many(
        self, messages: Iterable[tuple[bytes, datetime]], flags: str = "S", folder: str = "INBOX"
    ) -> int:
        return self.dovecot.deliver_many(self.name, messages, flags, folder)

    def add_folder(self, folder: str) -> Path:
        return self.dovecot.add_folder(self.name, folder)


_user_numbers = itertools.count(1)


@pytest.fixture
def mail_user(dovecot: Dovecot) -> Iterator[Callable[[], MailUser]]:
    """Factory of new users with a random password; their mail is deleted after the test."""
    made: list[MailUser] = []

    def make() -> MailUser:
        name = f"user{next(_user_numbers)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        user = MailUser(name, password, dovecot.add_user(name, password), dovecot)
        made.append(user)
        return user

    yield make
    for user in made:
        dovecot.remove_user(user.name)


# --- worker and API processes ------------------------------------------------------------------


class ManagedProcess:
    """A child process in its own process group, with its output in ``log_file``.

    :meth:`start` raises RuntimeError with the tail of the log when the process exits or is
    not ready within :data:`PROCESS_START_TIMEOUT_S`. :meth:`stop` sends SIGTERM to the
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
                start_new_session=True,
            )

        deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} during start; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            if self.is_ready():
                logger.info("%s ready (pid %d, log %s)", self.name, self.pid, self.log_file)
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
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
    """``dramatiq jobs.worker`` with one process; ready once it logs :data:`WORKER_READY_LINE`."""

    def __init__(self, log_file: Path, threads: int, queue: str) -> None:
        command = [
            sys.executable, "-m", "dramatiq", "jobs.worker", "--processes", "1",
            "--threads", str(threads), "--queues", queue,
        ]  # fmt: skip
        # The default prefetch of twice the thread count lets one worker hoard queued scans.
        super().__init__(
            "dramatiq worker", command, log_file, {"dramatiq_queue_prefetch": str(threads)}
        )
        self._log_offset = 0

    def start(self) -> None:
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        super().start()

    def is_ready(self) -> bool:
        with self.log_file.open("rb") as log:
            log.seek(self._log_offset)
            return WORKER_READY_LINE.encode() in log.read()


class ApiProcess(ManagedProcess):
    """``uvicorn api.app:create_app`` on a free port; ready once ``/healthz`` returns 200."""

    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
            "--host", HOST, "--port", str(self.port), "--log-level", "info",
        ]  # fmt: skip
        super().__init__("uvicorn API", command, log_file)

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


_worker_numbers = itertools.count(1)


def new_worker(services: Services) -> WorkerProcess:
    settings = get_settings()
    log_file = services.state_dir / f"worker-{next(_worker_numbers)}.log"
    return WorkerProcess(log_file, settings.worker_threads, settings.queue_name)


@pytest.fixture(scope="session")
def shared_worker(services: Services) -> Iterator[WorkerProcess]:
    worker = new_worker(services)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def worker(shared_worker: WorkerProcess) -> WorkerProcess:
    """The session's worker, started again when an earlier test stopped or killed it."""
    if not shared_worker.is_alive():
        shared_worker.start()
    return shared_worker


@pytest.fixture
def worker_factory(services: Services) -> Iterator[Callable[[], WorkerProcess]]:
    """Factory of extra workers, each stopped after the test."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        extra = new_worker(services)
        started.append(extra)
        extra.start()
        return extra

    yield start
    for extra in started:
        extra.stop()


@pytest.fixture(scope="session")
def shared_api_server(services: Services) -> Iterator[ApiProcess]:
    api = ApiProcess(services.state_dir / "api.log")
    api.start()
    yield api
    api.stop()


@pytest.fixture
def api_server(shared_api_server: ApiProcess) -> ApiProcess:
    """The session's API server, started again when an earlier test stopped it."""
    if not shared_api_server.is_alive():
        shared_api_server.start()
    return shared_api_server
