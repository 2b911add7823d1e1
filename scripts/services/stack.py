"""Profiles, their ports and the :class:`Stack` of servers each one runs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from scripts.services.dovecot import Dovecot
from scripts.services.process import STATE_ROOT, Component, ServiceError, free_port
from scripts.services.servers import FerretDB, PostgreSQL, Redis

logger = logging.getLogger(__name__)

Profile = Literal["test", "run"]
PROFILES: tuple[Profile, ...] = ("test", "run")


@dataclass(frozen=True)
class Ports:
    """TCP ports of one stack, all on 127.0.0.1."""

    redis: int
    postgresql: int
    ferretdb: int
    imap: int
    imaps: int

    @classmethod
    def free(cls) -> Ports:
        """Pick currently unused ports (for test sessions that run side by side)."""
        return cls(**{item.name: free_port() for item in fields(cls)})


#: Fixed ports of the command-line profiles; test sessions pick free ports instead.
DEFAULT_PORTS: dict[Profile, Ports] = {
    "run": Ports(redis=6479, postgresql=5542, ferretdb=27117, imap=10143, imaps=10993),
    "test": Ports(redis=6579, postgresql=5642, ferretdb=27217, imap=10243, imaps=11093),
}


class Stack:
    """The servers of one profile, started in dependency order and stopped in reverse.

    ``root`` is ``.state/<profile>`` by default; test sessions pass a private folder and
    free ports so that several sessions can run at once.
    """

    def __init__(
        self, profile: Profile, root: Path | None = None, ports: Ports | None = None
    ) -> None:
        self.profile = profile
        self.root = root or STATE_ROOT / profile
        self.ports = ports or DEFAULT_PORTS[profile]
        instance = f"{profile}-{self.root.name}"

        self.redis = Redis(self.root / "redis", self.ports.redis)
        self.postgresql: PostgreSQL | None = None
        if profile == "test":
            self.postgresql = PostgreSQL(self.root / "postgresql", self.ports.postgresql)
        self.ferretdb = FerretDB(
            self.root / "ferretdb",
            self.ports.ferretdb,
            postgresql_url=self.postgresql.url if self.postgresql else None,
        )
        self.dovecot = Dovecot(self.root / "dovecot", self.ports.imap, self.ports.imaps, instance)

    @property
    def components(self) -> list[Component]:
        database: list[Component] = [self.postgresql] if self.postgresql else []
        return [self.redis, *database, self.ferretdb, self.dovecot]

    def start(self) -> None:
        """Start every server; on a failure stop those already started and re-raise."""
        started: list[Component] = []
        try:
            for component in self.components:
                component.start()
                started.append(component)
        except BaseException:
            for component in reversed(started):
                component.stop()
            raise

    def stop(self) -> None:
        """Stop every server, even when one of them fails to stop; raise the first error."""
        errors: list[Exception] = []
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception as exc:
                logger.exception("stopping %s in %s failed", component.name, self.root)
                errors.append(exc)
        if errors:
            raise ServiceError(
                f"{len(errors)} server(s) in {self.root} failed to stop"
            ) from errors[0]

    def status(self) -> list[str]:
        lines = []
        for component in self.components:
            pid = component.pid()
            state = f"running, pid {pid}" if pid else "stopped"
            ports = component.recorded_ports() or component.ports()
            lines.append(
                f"{self.profile:5} {component.name:10} {state:20} {ports}  {component.directory}"
            )
        return lines


def session_roots(profile: Profile) -> list[Path]:
    """Private folders of test sessions (``session-*``) under the profile's folder."""
    return sorted((STATE_ROOT / profile).glob("session-*"))


def session_owner_alive(root: Path) -> bool:
    """Tell whether the pytest process recorded in ``root/owner.pid`` still runs."""
    try:
        pid = int((root / "owner.pid").read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
