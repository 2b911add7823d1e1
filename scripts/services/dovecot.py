"""Dovecot IMAP server with passwd-file users and Maildir mailboxes."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pwd
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from scripts.services.process import (
    HOST,
    Component,
    ServiceError,
    port_accepts,
    run_command,
    run_daemon,
)
from scripts.services.tls import write_self_signed_tls

DOVECOT_CONFIG = """\
# Written by scripts/services/dovecot.py for a local test server; changes are overwritten.
instance_name = mailscan-{instance}
protocols = imap
listen = {host}
base_dir = {base_dir}
state_dir = {dir}/lib
log_path = {dir}/dovecot.log
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_fsync = never
mail_max_userip_connections = 200

ssl = yes
ssl_cert = <{dir}/tls/server.pem
ssl_key = <{dir}/tls/server.key
ssl_min_protocol = TLSv1.2

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users/%u
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/home/%u mail=maildir:~/Maildir
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
"""

#: Longest base_dir kept in the state folder; Dovecot 2.3.19 adds up to 26 bytes to it
#: (``/token-login/imap-urlauth``).
MAX_BASE_DIR_LENGTH = 70

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
FOLDER_NAME = re.compile(r"[A-Za-z0-9 _-]{1,64}")
MAILDIR_FLAGS = re.compile(r"[DFPRST]*")


_NOBODY = pwd.getpwnam("nobody")


class Dovecot(Component):
    """Dovecot 2.3 IMAP server with plain IMAP on ``port`` and IMAPS on ``imaps_port``.

    Each user has a passwd-file with a ``{PLAIN}`` password, and :meth:`add_user` works while
    the server runs. Every user's mail is a Maildir
    owned by ``nobody`` under ``home/<user>/Maildir``; a message's INTERNALDATE is its file's
    modification time. Clients verify IMAPS with :attr:`cafile`.
    """

    name = "dovecot"
    executable = "dovecot"

    def __init__(self, directory: Path, port: int, imaps_port: int, instance: str) -> None:
        super().__init__(directory, port)
        self.imaps_port = imaps_port
        self.instance = instance

    @property
    def config_file(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "master.pid"

    @property
    def base_dir(self) -> Path:
        """Folder of Dovecot's pid file and Unix sockets.

        It is ``run/`` in the state folder unless that path is too long for the sockets
        (108 bytes including the socket name), then a folder in /tmp named after a hash of it.
        """
        path = self.directory / "run"
        if len(str(path)) <= MAX_BASE_DIR_LENGTH:
            return path
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"mailscan-dovecot-{digest}"

    @property
    def users_dir(self) -> Path:
        """Folder of one passwd-file per user, named after the user."""
        return self.directory / "users"

    @property
    def cafile(self) -> Path:
        """CA certificate that signed the server certificate, for an SSL context's cafile."""
        return self.directory / "tls" / "ca.pem"

    def ports(self) -> dict[str, int]:
        return {"port": self.port, "imaps_port": self.imaps_port}

    def prepare(self) -> None:
        if not self.cafile.exists():
            write_self_signed_tls(self.directory / "tls")
        (self.directory / "home").mkdir(exist_ok=True)
        # The auth process runs as the dovecot user and must read the passwd-files.
        self.users_dir.mkdir(exist_ok=True)
        shutil.chown(self.users_dir, "root", "dovecot")
        self.users_dir.chmod(0o750)
        self.config_file.write_text(
            DOVECOT_CONFIG.format(
                instance=self.instance, host=HOST, dir=self.directory, base_dir=self.base_dir,
                imap_port=self.port, imaps_port=self.imaps_port,
            )
        )  # fmt: skip
        try:
            run_command(["doveconf", "-c", str(self.config_file), "-n"], "doveconf")
        except ServiceError as exc:
            raise ServiceError(f"dovecot config {self.config_file} is invalid: {exc}") from exc

    def launch(self) -> None:
        try:
            run_daemon(["dovecot", "-c", str(self.config_file)], self.log_file)
        except ServiceError as exc:
            raise self.start_error(str(exc)) from exc

    def is_ready(self) -> bool:
        return port_accepts(self.port) and port_accepts(self.imaps_port)

    def stop(self) -> None:
        super().stop()
        if not self.base_dir.is_relative_to(self.directory):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def process_exited(self) -> bool:
        return self.pid_file.exists() and self.pid() is None

    # --- users and mail ---

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """Maildir of ``folder``: the INBOX is ``Maildir/``, another folder ``Maildir/.Name``."""
        root = self.directory / "home" / user / "Maildir"
        return root if folder == "INBOX" else root / f".{folder}"

    def add_user(self, name: str, password: str) -> Path:
        """Create user ``name`` or change its password; return the INBOX Maildir.

        Raises ValueError for a name outside ``[A-Za-z0-9._-]`` or a password with ``:`` or
        a line break, because the passwd-file format cannot hold them. Changing the password
        of an existing user blocks for about a second (see below).
        """
        if not USER_NAME.fullmatch(name):
            raise ValueError(f"invalid IMAP user name {name!r}; use letters, digits, . _ -")
        if not password or re.search(r"[:\r\n]", password):
            raise ValueError("invalid IMAP password: it must be non-empty, without ':' or newline")

        # One passwd-file per user, because Dovecot 2.3.19 checks a passwd-file for changes by
        # mtime and size at most once per second: a user appended to a shared file right
        # after a lookup was rejected. A new user's file is read on its first lookup.
        user_file = self.users_dir / name
        existed = user_file.exists()
        staging = self.users_dir / f".{name}.new"
        staging.write_text(f"{name}:{{PLAIN}}{password}\n")
        shutil.chown(staging, "root", "dovecot")
        staging.chmod(0o640)
        if existed:
            # A new mtime in a later second makes the next lookup read the new password.
            bumped = max(time.time(), user_file.stat().st_mtime + 1)
            os.utime(staging, (bumped, bumped))
        staging.replace(user_file)
        if existed:
            time.sleep(1.1)

        return self.add_folder(name, "INBOX")

    def remove_user(self, name: str) -> None:
        """Delete user ``name``, its passwd-file and all its mail; a missing user is ignored."""
        if not USER_NAME.fullmatch(name):
            raise ValueError(f"invalid IMAP user name {name!r}; use letters, digits, . _ -")
        (self.users_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.directory / "home" / name, ignore_errors=True)

    def add_folder(self, user: str, folder: str) -> Path:
        """Create ``folder`` (Maildir++ ``.Name``, or the INBOX) for ``user``; return it."""
        if folder != "INBOX" and not FOLDER_NAME.fullmatch(folder):
            raise ValueError(
                f"invalid folder name {folder!r}; use ASCII letters, digits, space _ -"
            )
        path = self.maildir(user, folder)
        home = self.directory / "home" / user
        for directory in (home, home / "Maildir", path, path / "cur", path / "new", path / "tmp"):
            directory.mkdir(exist_ok=True)
            os.chown(directory, _NOBODY.pw_uid, _NOBODY.pw_gid)
        return path

    def deliver(
        self,
        user: str,
        raw: bytes,
        internal_date: dt.datetime,
        flags: str = "S",
        folder: str = "INBOX",
    ) -> Path:
        """Store ``raw`` byte for byte as one message and return its file.

        ``internal_date`` becomes the IMAP INTERNALDATE (the file's mtime); a naive datetime
        counts as UTC. ``flags`` are Maildir flag letters (``S`` seen, ``F`` flagged, ...).
        """
        return self._write_message(self.maildir(user, folder), raw, internal_date, flags)

    def deliver_many(
        self,
        user: str,
        messages: Iterable[tuple[bytes, dt.datetime]],
        flags: str = "S",
        folder: str = "INBOX",
    ) -> int:
        """Store every ``(raw, internal_date)`` pair like :meth:`deliver`; return the count."""
        maildir = self.maildir(user, folder)
        count = 0
        for raw, internal_date in messages:
            self._write_message(maildir, raw, internal_date, flags)
            count += 1
        return count

    def _write_message(
        self, maildir: Path, raw: bytes, internal_date: dt.datetime, flags: str
    ) -> Path:
        if not MAILDIR_FLAGS.fullmatch(flags):
            raise ValueError(f"invalid Maildir flags {flags!r}; expected letters from DFPRST")
        if not (maildir / "cur").is_dir():
            raise ServiceError(f"dovecot: no Maildir at {maildir}; call add_user/add_folder first")
        if internal_date.tzinfo is None:
            internal_date = internal_date.replace(tzinfo=dt.UTC)
        timestamp = internal_date.timestamp()

        unique = f"{int(timestamp)}.{uuid.uuid4().hex}.mailscan,S={len(raw)}"
        staging = maildir / "tmp" / unique
        staging.write_bytes(raw)
        os.chown(staging, _NOBODY.pw_uid, _NOBODY.pw_gid)
        os.utime(staging, (timestamp, timestamp))
        target = maildir / "cur" / f"{unique}:2,{''.join(sorted(set(flags)))}"
        staging.rename(target)
        return target
