"""Redis, PostgreSQL and FerretDB servers."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from scripts.services.process import (
    BIN_DIR,
    HOST,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Component,
    ServiceError,
    chown_tree,
    run_command,
    run_daemon,
    terminate,
)

logger = logging.getLogger(__name__)

FERRETDB_BIN = BIN_DIR / "ferretdb"
POSTGRESQL_BIN = Path("/usr/lib/postgresql/15/bin")


class Redis(Component):
    """Debian ``redis-server`` without persistence, daemonized with a pid file."""

    name = "redis"
    executable = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def launch(self) -> None:
        command = [
            "redis-server", "--bind", HOST, "--port", str(self.port),
            "--save", "", "--appendonly", "no", "--daemonize", "yes",
            "--pidfile", str(self.pid_file), "--dir", str(self.directory),
            "--logfile", str(self.log_file),
        ]  # fmt: skip
        try:
            run_daemon(command, self.log_file)
        except ServiceError as exc:
            raise self.start_error(str(exc)) from exc

    def process_exited(self) -> bool:
        return self.pid_file.exists() and self.pid() is None


class PostgreSQL(Component):
    """PostgreSQL 15 cluster in ``data/``, trust auth on loopback, database ``ferretdb``.

    ``initdb`` and ``pg_ctl`` refuse to run as root, so under root they run as ``postgres``
    (``runuser``) and the folder belongs to that user.
    """

    name = "postgresql"
    executable = "postgres"
    database = "ferretdb"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    @property
    def url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{self.database}"

    def as_postgres(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", "postgres", "--", *command]

    def prepare(self) -> None:
        if os.geteuid() == 0:
            chown_tree(self.directory, "postgres", "postgres")
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = [
            str(POSTGRESQL_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "--auth=trust", "--no-sync", "--no-locale", "--encoding=UTF8",
        ]  # fmt: skip
        try:
            run_command(self.as_postgres(initdb), "initdb", cwd=self.directory)
        except ServiceError as exc:
            raise ServiceError(f"postgresql in {self.directory}: {exc}") from exc

    def launch(self) -> None:
        # TCP only: a Unix socket path under a deep state folder could pass the 107-byte
        # limit. Durability is pointless for throwaway data, and fsync slows tests down.
        options = (
            f"-c listen_addresses={HOST} -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        pg_ctl = [
            str(POSTGRESQL_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
            "-o", options, "-w", "-t", str(int(START_TIMEOUT_S)), "start",
        ]  # fmt: skip
        try:
            run_command(self.as_postgres(pg_ctl), "pg_ctl start", cwd=self.directory)
        except ServiceError as exc:
            raise self.start_error(str(exc)) from exc
        self.create_database()

    def create_database(self) -> None:
        psql = [
            str(POSTGRESQL_BIN / "psql"), "-h", HOST, "-p", str(self.port), "-U", "postgres",
            "-d", "postgres", "-tA", "-c",
        ]  # fmt: skip
        exists = run_command(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"], "psql"
        )
        if exists.strip() != "1":
            run_command([*psql, f"CREATE DATABASE {self.database}"], "psql")

    def shutdown(self, pid: int) -> None:
        pg_ctl = [
            str(POSTGRESQL_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
            "-t", str(int(STOP_TIMEOUT_S)), "stop",
        ]  # fmt: skip
        try:
            run_command(self.as_postgres(pg_ctl), "pg_ctl stop", cwd=self.directory)
        except ServiceError as exc:
            logger.warning("postgresql on port %d: %s; sending SIGTERM", self.port, exc)
            terminate(pid, self.executable)

    def stop(self) -> None:
        # pg_ctl removes postmaster.pid itself; the base class would delete a stale one.
        pid = self.pid()
        if pid is not None:
            self.shutdown(pid)
            logger.info("postgresql stopped (port %d, pid %d)", self.port, pid)


class FerretDB(Component):
    """FerretDB 1.24 serving the MongoDB wire protocol on SQLite or on :class:`PostgreSQL`."""

    name = "ferretdb"
    executable = "ferretdb"

    def __init__(self, directory: Path, port: int, postgresql_url: str | None = None) -> None:
        super().__init__(directory, port)
        #: PostgreSQL backend URL, or None for the SQLite backend in ``sqlite/``.
        self.postgresql_url = postgresql_url
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://{HOST}:{self.port}/"

    def backend_flags(self) -> list[str]:
        if self.postgresql_url is not None:
            return ["--handler=postgresql", f"--postgresql-url={self.postgresql_url}"]
        sqlite_dir = self.directory / "sqlite"
        sqlite_dir.mkdir(exist_ok=True)
        return ["--handler=sqlite", f"--sqlite-url=file:{sqlite_dir}/"]

    def launch(self) -> None:
        if not FERRETDB_BIN.exists():
            raise ServiceError(
                f"ferretdb: {FERRETDB_BIN} is missing; run `python -m scripts.services install`"
            )
        command = [
            str(FERRETDB_BIN), f"--listen-addr={HOST}:{self.port}",
            f"--state-dir={self.directory}", "--telemetry=disable", "--debug-addr=-",
            *self.backend_flags(),
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.directory, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{self._process.pid}\n")

    def process_exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None

    def shutdown(self, pid: int) -> None:
        terminate(pid, self.executable)
        if self._process is not None:
            self._process.wait()
