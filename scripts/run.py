"""One-command local run: servers, a demo mailbox, the API and a worker pool until Ctrl-C.

``python -m scripts.run [--port 8000] [--worker-processes 2]`` (``make run``) installs what is
missing and starts the ``run`` profile of :mod:`scripts.services`: Redis, FerretDB on SQLite
and Dovecot. It fills the IMAP user ``demo`` with generated mail once and starts uvicorn and
Dramatiq. Then it connects the demo mailbox through the GraphQL API and prints how to use
GraphiQL.

The development sign-in (``Authorization: Bearer dev:<user-id>``) is on, so anyone who can
reach the port can act as any user: the API listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from jobs.settings import load_settings
from scripts.demo_mailbox import generate_demo_messages
from scripts.services import HOST, ServiceError, Stack, install, port_accepts
from scripts.services.apps import ApiProcess, ManagedProcess, WorkerProcess

logger = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_LABEL = "Demo mailbox"
DEV_TOKEN = f"Bearer dev:{DEMO_USER}"
#: Worker threads per worker process; also the broker prefetch per process.
WORKER_THREADS = 4

ACCOUNTS_QUERY = "{ accounts { id label } }"

CONNECT_MUTATION = """
mutation ConnectDemo($host: String!, $port: Int!, $username: String!, $password: String!) {
  connectImapAccount(input: {host: $host, port: $port, security: SSL, username: $username,
                             password: $password, folders: ["INBOX"], label: "Demo mailbox"}) {
    __typename
    ... on ConnectAccountSuccess { account { id } }
  }
}
"""

START_SCAN_EXAMPLE = """\
mutation {{
  startScan(accountId: "{account_id}", months: 6) {{
    __typename
    ... on StartScanSuccess {{ task {{ id status }} }}
  }}
}}"""


def read_or_create(path: Path, make: Any) -> str:
    """Return the text in ``path``, writing ``make()`` there (mode 0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    value: str = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def prepare_demo_mailbox(stack: Stack) -> str:
    """Create the ``demo`` IMAP user and, when its INBOX is empty, fill it; return the password."""
    password = read_or_create(stack.root / "demo.password", lambda: secrets.token_urlsafe(16))
    inbox = stack.dovecot.add_user(DEMO_USER, password)
    if any((inbox / "cur").iterdir()):
        logger.info("demo mailbox already filled: %s", inbox)
        return password
    count = stack.dovecot.deliver_many(DEMO_USER, generate_demo_messages())
    logger.info("delivered %d demo messages to %s", count, inbox)
    return password


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST one operation as the demo user; raise ServiceError on a GraphQL or HTTP error."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": DEV_TOKEN},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload: dict[str, Any] = json.load(response)
    if payload.get("errors"):
        raise ServiceError(f"GraphQL request to {url} failed: {payload['errors']}")
    data: dict[str, Any] = payload["data"]
    return data


def connect_demo_account(graphql_url: str, stack: Stack, password: str) -> str:
    """Return the id of the demo user's account, connecting it through the API once."""
    for account in graphql(graphql_url, ACCOUNTS_QUERY)["accounts"]:
        if account["label"] == DEMO_LABEL:
            return str(account["id"])

    variables = {
        "host": HOST,
        "port": stack.dovecot.imaps_port,
        "username": DEMO_USER,
        "password": password,
    }
    result = graphql(graphql_url, CONNECT_MUTATION, variables)["connectImapAccount"]
    if result["__typename"] != "ConnectAccountSuccess":
        raise ServiceError(f"connectImapAccount for the demo mailbox failed: {result}")
    return str(result["account"]["id"])


def app_environment(stack: Stack) -> dict[str, str]:
    secret_key = read_or_create(stack.root / "secret.key", lambda: Fernet.generate_key().decode())
    return {
        "MAILSCAN_MONGODB_URL": stack.ferretdb.url,
        "MAILSCAN_REDIS_URL": stack.redis.url,
        "MAILSCAN_SECRET_KEYS": secret_key,
        "MAILSCAN_DEV_AUTH": "1",
        "MAILSCAN_ALLOW_PRIVATE_HOSTS": "1",
        "MAILSCAN_ALLOW_INSECURE_IMAP": "1",
        "MAILSCAN_IMAP_CA_FILE": str(stack.dovecot.cafile),
        "MAILSCAN_WORKER_THREADS": str(WORKER_THREADS),
    }


def print_banner(api: ApiProcess, account_id: str, stack: Stack) -> None:
    print(
        f"""
mailscan is running. Press Ctrl-C to stop everything.

  DEVELOPMENT SIGN-IN IS ON (MAILSCAN_DEV_AUTH=1): "Bearer dev:<any-user-id>" signs in as
  that user. Never enable it on a server that others can reach.

  GraphiQL:  {api.http_url}/graphql
  Headers:   {{"Authorization": "{DEV_TOKEN}"}}
  Demo IMAP account (user "{DEMO_USER}", {HOST}:{stack.dovecot.imaps_port}, SSL): {account_id}

  Try:
{START_SCAN_EXAMPLE.format(account_id=account_id)}

  Dashboard: {api.http_url}/  (sign in with the token dev:{DEMO_USER})
  CLI:       MAILSCAN_API_URL={api.http_url} MAILSCAN_TOKEN=dev:{DEMO_USER} \\
             mailscan scan --account {account_id} --months 3
  Admin:     start with MAILSCAN_ADMIN_USERS={DEMO_USER} make run to use systemHealth and
             /api/admin/health as the demo user.

  Logs: {api.log_file}, {stack.root / "worker.log"} and {stack.root}/<server>/
""",
        flush=True,
    )


def wait_for_stop_signal(children: Sequence[ManagedProcess]) -> None:
    """Block until SIGINT or SIGTERM, or until a child process exits on its own."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        for child in children:
            if not child.is_alive():
                logger.error(
                    "%s exited unexpectedly; stopping everything. Log %s:\n%s",
                    child.name,
                    child.log_file,
                    child.log_tail(),
                )
                return


def run(port: int, worker_processes: int) -> None:
    if port_accepts(port):
        raise ServiceError(f"port {HOST}:{port} is already in use; choose another with --port")
    install()
    stack = Stack("run")
    stack.start()
    children: list[ManagedProcess] = []
    try:
        password = prepare_demo_mailbox(stack)
        env = app_environment(stack)
        api = ApiProcess(stack.root / "api.log", port=port, env=env)
        settings = load_settings({**os.environ, **env})
        worker = WorkerProcess(
            stack.root / "worker.log",
            settings.worker_threads,
            settings.queue_name,
            processes=worker_processes,
            env=env,
        )
        api.start()
        children.append(api)
        worker.start()
        children.append(worker)
        account_id = connect_demo_account(f"{api.http_url}/graphql", stack, password)
        print_banner(api, account_id, stack)
        wait_for_stop_signal(children)
    finally:
        logger.info("stopping the API, the worker and the servers")
        for started in reversed(children):
            started.stop()
        stack.stop()
        logger.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.run", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="API port (default: 8000)")
    parser.add_argument(
        "--worker-processes", type=int, default=2, help="Dramatiq worker processes (default: 2)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(args.port, args.worker_processes)
    except ServiceError as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
