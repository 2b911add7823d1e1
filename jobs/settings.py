"""Settings read from ``MAILSCAN_*`` environment variables.

Every process (API and worker) builds one :class:`Settings` with :func:`load_settings`.
Defaults suit a developer machine; production sets at least ``MAILSCAN_MONGODB_URL``,
``MAILSCAN_REDIS_URL`` and ``MAILSCAN_SECRET_KEYS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from jobs.errors import ConfigurationError

_PREFIX = "MAILSCAN_"


@dataclass(frozen=True)
class Settings:
    #: MongoDB connection string (MongoDB in production, FerretDB in development).
    mongodb_url: str = "mongodb://127.0.0.1:27017/"
    #: Database name inside that server.
    mongodb_database: str = "mailscan"
    #: Redis URL for the Dramatiq broker, progress pub/sub and limits.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key and channel, so several deployments can share one Redis.
    redis_prefix: str = "mailscan"
    #: Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
    secret_keys: tuple[str, ...] = ()
    #: Accept ``Authorization: Bearer dev:<user-id>``. Never enable in production.
    dev_auth: bool = False
    #: Allow IMAP hosts on loopback and private networks (development and tests).
    allow_private_hosts: bool = False
    #: Allow ``security: NONE`` (plain-text IMAP without TLS).
    allow_insecure_imap: bool = False
    #: Extra CA bundle for IMAP servers with self-signed certificates.
    imap_ca_file: str = ""
    #: Timeout of every IMAP socket operation, in seconds.
    imap_timeout_s: float = 30.0
    #: Messages fetched per IMAP ``UID FETCH`` command and saved per bulk write.
    fetch_batch_size: int = 200
    #: Minimum interval between two intermediate progress events of one task, in seconds.
    progress_interval_s: float = 0.25
    #: Lifetime of the stored latest progress event of a task, in seconds.
    progress_snapshot_ttl_s: int = 7 * 24 * 3600
    #: Lease a running actor holds on its task, in seconds; renewed at a third of it.
    lease_s: float = 30.0
    #: Interval between two sweeps of a worker process for expired leases and lost messages,
    #: in seconds. A RUNNING task whose worker died is sent again within lease_s plus this.
    sweep_interval_s: float = 5.0
    #: A QUEUED task whose broker message is missing for this long is sent again, in seconds.
    lost_message_grace_s: float = 60.0
    #: Tasks finished longer ago than this are deleted with their findings, in days.
    retention_days: float = 30.0
    #: Interval between two deletions of expired tasks by one worker process, in seconds.
    cleanup_interval_s: float = 3600.0
    #: How long a worker shutting down waits for a running batch before it aborts the IMAP
    #: session and hands the task back, in seconds. Keep it below the supervisor's stop timeout.
    shutdown_grace_s: float = 5.0
    #: Test hook: a worker process exits abruptly after saving this many batches of one
    #: attempt, like a crash. 0 turns it off; never set it in production.
    crash_after_batches: int = 0
    #: Attempts of one scan before it ends FAILED.
    max_attempts: int = 5
    #: Delay before the first automatic retry, in seconds; doubles per attempt, with jitter.
    retry_base_s: float = 2.0
    #: Maximum delay between two automatic retries, in seconds.
    retry_max_s: float = 300.0
    #: Worker threads per worker process (also the broker prefetch).
    worker_threads: int = 4
    #: Messages larger than this are recorded from their headers only, in bytes.
    max_message_bytes: int = 25 * 1024 * 1024
    #: Dramatiq queue of scan jobs.
    queue_name: str = "scans"
    #: Largest ``first`` accepted by connection fields.
    max_page_size: int = 100
    #: Deepest GraphQL query accepted.
    max_query_depth: int = 12
    #: Maximum number of aliases in one GraphQL operation, because each alias can repeat a
    #: whole query.
    max_query_aliases: int = 30
    #: Maximum number of lexical tokens in one GraphQL document (GraphiQL's introspection
    #: query has about 500).
    max_query_tokens: int = 5000
    #: Google OAuth client ids whose ID tokens are accepted (the ``aud`` claim); empty turns
    #: Google sign-in off.
    google_client_ids: tuple[str, ...] = ()
    #: URL of Google's token-signing certificates (PEM by key id); tests point it elsewhere.
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    #: Clock skew allowed when checking ``iat``, ``nbf`` and ``exp`` of an ID token, in seconds.
    google_clock_skew_s: int = 30
    #: Email domains allowed to sign in with Google; empty allows every verified address.
    allowed_email_domains: tuple[str, ...] = ()
    #: Scans of one user that may run at once; the rest wait QUEUED.
    max_running_scans_per_user: int = 2
    #: Delay before a scan held back by the per-user limit is offered again, in seconds.
    admission_retry_s: float = 1.0
    #: startScan and retryScan calls one user may make per ``start_scan_window_s``.
    start_scan_limit: int = 60
    #: Length of the rate-limit window of startScan and retryScan, in seconds.
    start_scan_window_s: int = 60
    #: Operations one websocket may run at once (subscriptions, queries and mutations).
    max_ws_operations: int = 20
    #: Time a websocket has to send ``connection_init`` before it is closed with 4408, in seconds.
    connection_init_timeout_s: float = 5.0
    #: Interval of the server's websocket keepalive messages (``ping``, legacy ``ka``), in seconds.
    ws_keepalive_s: float = 15.0
    #: User ids allowed to run the admin queries (``systemHealth``), comma-separated.
    admin_users: tuple[str, ...] = ()


def _convert(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigurationError(
            f"{_PREFIX}{name.upper()}={raw!r} is not a boolean; use 1/0, true/false or yes/no"
        )
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{_PREFIX}{name.upper()}={raw!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"{_PREFIX}{name.upper()}={raw!r} is not a number") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: ``os.environ``).

    Raises :class:`ConfigurationError` naming the variable when a value has the wrong type.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for item in fields(Settings):
        raw = env.get(_PREFIX + item.name.upper())
        if raw is not None:
            values[item.name] = _convert(item.name, raw, item.default)
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once from the environment."""
    return load_settings()
