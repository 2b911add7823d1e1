"""Real Redis, PostgreSQL, FerretDB and Dovecot servers for development and tests.

Every server listens on 127.0.0.1 and keeps its files (config, data, logs, pid file) in
``.state/<profile>/<component>/`` inside the repository. Two profiles exist:

* ``run``: Redis, FerretDB on SQLite and Dovecot, for ``make run``.
* ``test``: Redis, PostgreSQL, FerretDB on PostgreSQL and Dovecot, for the test suite.

Command line::

    python -m scripts.services install
    python -m scripts.services start|stop|status --profile test|run

``start`` is idempotent and returns once every server accepts connections. ``stop`` reads the
pid files, so it also cleans up after a crashed session. The test fixtures start their own
stacks in ``.state/test/session-<id>/``; ``stop --profile test`` also stops those whose pytest
process has exited.

NOTE: PostgreSQL and the Dovecot mail folders need root, because the servers run their work as
the ``postgres`` and ``nobody`` users.
"""

from scripts.services.dovecot import Dovecot
from scripts.services.install import install
from scripts.services.process import (
    HOST,
    STATE_ROOT,
    Component,
    ServiceError,
    free_port,
    port_accepts,
)
from scripts.services.servers import FerretDB, PostgreSQL, Redis
from scripts.services.stack import (
    DEFAULT_PORTS,
    PROFILES,
    Ports,
    Profile,
    Stack,
    session_owner_alive,
    session_roots,
)

__all__ = [
    "DEFAULT_PORTS",
    "HOST",
    "PROFILES",
    "STATE_ROOT",
    "Component",
    "Dovecot",
    "FerretDB",
    "Ports",
    "PostgreSQL",
    "Profile",
    "Redis",
    "ServiceError",
    "Stack",
    "free_port",
    "install",
    "port_accepts",
    "session_owner_alive",
    "session_roots",
]
