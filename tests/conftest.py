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

import itertools
import logging
import os
import secrets
import shutil
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
    session_owner_alive,
    session_roots,
)
from scripts.services.apps import ApiProcess, WorkerProcess

logger = logging.getLogger(__name__)


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


#: Folders of failed sessions kept for their logs; older ones are deleted.
KEPT_FAILED_SESSIONS = 5


def remove_stale_sessions() -> None:
    """Stop the servers of sessions whose pytest process is gone, and delete their folders.

    The newest :data:`KEPT_FAILED_SESSIONS` folders of failed sessions stay for their logs.
    """
    stale = [root for root in session_roots("test") if not session_owner_alive(root)]
    failed = [root for root in stale if (root / "failed").exists()]
    failed.sort(key=lambda root: (root / "failed").stat().st_mtime, reverse=True)
    kept = set(failed[:KEPT_FAILED_SESSIONS])
    for root in stale:
        Stack("test", root=root).stop()
        if root not in kept:
            logger.info("removing stale test session %s", root)
            shutil.rmtree(root, ignore_errors=True)


def keep_logs_only(root: Path) -> None:
    """Delete the bulky data of a failed session (database files, mail) and mark it failed."""
    shutil.rmtree(root / "postgresql" / "data", ignore_errors=True)
    shutil.rmtree(root / "dovecot" / "home", ignore_errors=True)
    (root / "failed").touch()


#: Session folder kept because a test failed, named in the terminal summary.
kept_session_logs: list[Path] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for root in kept_session_logs:
        terminalreporter.write_line(f"server and process logs of this test session: {root}")


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
        keep_logs_only(root)
        kept_session_logs.append(root)
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
