"""``mailscan``: scan a mailbox and watch it live, list accounts and scans, cancel a scan.

The API address and the token come from ``--api-url`` and ``--token`` or from the
environment variables ``MAILSCAN_API_URL`` and ``MAILSCAN_TOKEN``. Exit statuses:

* 0: done; for ``scan``, the scan COMPLETED.
* 1: the scan FAILED.
* 2: invalid command line (argparse).
* 3: the scan was CANCELLED.
* 4: the API rejected the request (NOT_FOUND, INVALID_INPUT, SCAN_ALREADY_RUNNING, ...).
* 5: the API cannot be reached or rejected the token.
* 130: interrupted with Ctrl-C; a started scan goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from cli import operations
from cli.client import Client, ConnectionFailed, GraphQLFailed, Unauthenticated
from cli.render import ProgressBar, accounts_table, history_table, print_summary

DEFAULT_API_URL = "http://127.0.0.1:8000"

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_REJECTED = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130

EXIT_BY_STATUS = {"COMPLETED": EXIT_COMPLETED, "FAILED": EXIT_FAILED, "CANCELLED": EXIT_CANCELLED}
STATUSES = ["QUEUED", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"]


class Rejected(Exception):
    """The API returned an error member (NotFound, InvalidInput, ...) for a mutation."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(f"{result.get('code')}: {result.get('message')}")
        self.result = result


def add_common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Add --api-url, --token and --json; without ``defaults`` they keep earlier values.

    They are on the main parser and on each command, so they go before or after the command.
    """
    api_url = os.environ.get("MAILSCAN_API_URL", DEFAULT_API_URL)
    token = os.environ.get("MAILSCAN_TOKEN")

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--api-url",
        default=default(api_url),
        help=f"API base address (env MAILSCAN_API_URL, default {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--token",
        default=default(token),
        help="bearer token, for example dev:<user-id> on a development server (env MAILSCAN_TOKEN)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON on stdout"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailscan", description="Scan mailboxes through the mailscan API and watch them live."
    )
    add_common_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser("scan", help="start a scan and show its progress until it ends")
    scan.add_argument("--account", required=True, help="account id (see 'mailscan accounts')")
    scan.add_argument("--months", type=int, default=1, help="months back to scan, 1 to 240")
    scan.add_argument(
        "--no-wait", action="store_true", help="print the task id and return without watching"
    )

    accounts = commands.add_parser("accounts", help="list the connected accounts")

    history = commands.add_parser("history", help="list scans, newest first")
    history.add_argument("--first", type=int, default=20, help="number of scans (default 20)")
    history.add_argument("--status", choices=STATUSES, action="append", help="repeatable")
    history.add_argument("--account", help="only scans of this account id")

    cancel = commands.add_parser("cancel", help="cancel a queued or running scan")
    cancel.add_argument("task", help="task id")

    for command in (scan, accounts, history, cancel):
        add_common_options(command, defaults=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Server messages may contain square brackets, which rich would read as markup.
    errors = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
    if not args.token:
        errors.print("mailscan: no token; pass --token or set MAILSCAN_TOKEN")
        return EXIT_UNREACHABLE
    client = Client(args.api_url, args.token)
    try:
        out = Console(markup=False, highlight=False, soft_wrap=True)
        return run(args, client, out, errors)
    except Rejected as exc:
        if args.json:
            print(json.dumps({"error": exc.result}))
        errors.print(f"mailscan: {exc}")
        return EXIT_REJECTED
    except GraphQLFailed as exc:
        errors.print(f"mailscan: {exc}")
        return EXIT_REJECTED
    except (ConnectionFailed, Unauthenticated) as exc:
        errors.print(f"mailscan: {exc}")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        errors.print("mailscan: interrupted")
        return EXIT_INTERRUPTED
    finally:
        client.close()


def run(args: argparse.Namespace, client: Client, out: Console, errors: Console) -> int:
    if args.command == "accounts":
        accounts = client.execute(operations.ACCOUNTS)["accounts"]
        emit(args, out, accounts, lambda: out.print(accounts_table(accounts)))
        return 0
    if args.command == "history":
        variables = {"first": args.first, "status": args.status, "accountId": args.account}
        page = client.execute(operations.HISTORY, variables)["taskHistory"]
        tasks = [edge["node"] for edge in page["edges"]]
        emit(args, out, tasks, lambda: out.print(history_table(tasks)))
        return 0
    if args.command == "cancel":
        result = client.execute(operations.CANCEL_SCAN, {"taskId": args.task})["cancelScan"]
        task = success_task(result, "CancelScanSuccess")
        emit(args, out, task, lambda: out.print(f"Task {task['id']} is {task['status']}"))
        return 0
    return scan(args, client, out, errors)


def scan(args: argparse.Namespace, client: Client, out: Console, errors: Console) -> int:
    variables = {"accountId": args.account, "months": args.months}
    result = client.execute(operations.START_SCAN, variables)["startScan"]
    task = success_task(result, "StartScanSuccess")
    task_id = task["id"]
    if args.no_wait:
        emit(args, out, task, lambda: out.print(f"Task {task_id} {task['status']}"))
        return 0

    errors.print(f"Scanning {task['accountLabel']} ({args.months} months), task {task_id}")
    try:
        watch(client, task_id, None if args.json else ProgressBar(errors, task["accountLabel"]))
    except KeyboardInterrupt:
        errors.print(
            f"Stopped watching; the scan goes on. Cancel it with: mailscan cancel {task_id}"
        )
        raise

    final = client.execute(operations.TASK, {"id": task_id})["task"]
    emit(args, out, final, lambda: print_summary(out, final))
    return EXIT_BY_STATUS.get(final["status"], EXIT_FAILED)


def watch(client: Client, task_id: str, bar: ProgressBar | None) -> None:
    """Follow ``scanProgress`` until its terminal event, updating ``bar`` when given."""
    events = client.subscribe(operations.SCAN_PROGRESS, {"taskId": task_id})
    if bar is None:
        for _ in events:
            pass
        return
    with bar:
        for data in events:
            bar.update(data["scanProgress"])


def success_task(result: dict[str, Any], success: str) -> dict[str, Any]:
    """Return the task of a success member; raise :class:`Rejected` for an error member."""
    if result["__typename"] != success:
        raise Rejected(result)
    task: dict[str, Any] = result["task"]
    return task


def emit(args: argparse.Namespace, out: Console, value: Any, human: Any) -> None:
    """Print ``value`` as JSON with ``--json``, else call ``human()``."""
    if args.json:
        print(json.dumps(value, indent=2))
    else:
        human()


if __name__ == "__main__":
    sys.exit(main())
