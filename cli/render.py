"""Human-readable output of the command line, written with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Column, Table

ACTIVE_STATUSES = {"QUEUED", "RUNNING", "CANCELLING"}
#: Length of an account or task id (a MongoDB ObjectId in hexadecimal).
ID_WIDTH = 24


def format_seconds(seconds: float | None) -> str:
    """Return a duration such as ``42 s``, ``3 min 5 s`` or ``1 h 2 min``; ``-`` for None."""
    if seconds is None:
        return "-"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def format_rate(messages_per_second: float | None) -> str:
    return "-" if messages_per_second is None else f"{messages_per_second:.0f} msg/s"


def id_column(header: str) -> Column:
    # Ids are copied into other commands, so they are never shortened or wrapped.
    return Column(header, no_wrap=True, min_width=ID_WIDTH)


def accounts_table(accounts: list[dict[str, Any]]) -> Table:
    table = Table(id_column("ID"), "Label", "Server", "User", "Folders", title="Accounts")
    for account in accounts:
        server = f"{account['host']}:{account['port']} {account['security']}"
        table.add_row(
            account["id"], account["label"], server, account["username"],
            ", ".join(account["folders"]),
        )  # fmt: skip
    return table


def history_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(
        id_column("Task"), "Account", "Months", "Created", "Status", "Done", "Result", title="Scans"
    )
    for task in tasks:
        table.add_row(
            task["id"], task["accountLabel"], str(task["months"]), task["createdAt"][:19],
            task["status"], f"{task['percent']:.0f}%", outcome_text(task),
        )  # fmt: skip
    return table


def outcome_text(task: dict[str, Any]) -> str:
    """Return the error or the summary of a task in one line."""
    error = task.get("error")
    if error:
        return f"{error['code']}: {error['message']}"
    summary = task.get("summary")
    if not summary:
        return ""
    findings = sum(row["count"] for row in summary["findings"])
    return (
        f"{summary['messages']} messages, {summary['newsletters']} newsletters, "
        f"{summary['flagged']} flagged, {findings} findings"
    )


def print_summary(console: Console, task: dict[str, Any]) -> None:
    """Print the outcome of a finished task: status, totals, finding counts, top senders."""
    console.print(
        f"Task {task['id']} {task['status']} ({task['accountLabel']}, {task['months']} months)"
    )
    error = task.get("error")
    if error:
        console.print(f"Error {error['code']}: {error['message']}")
    summary = task.get("summary")
    if not summary:
        return
    console.print(outcome_text(task))
    for row in summary["findings"]:
        console.print(f"  {row['kind']}: {row['count']}")
    if summary["topSenders"]:
        senders = ", ".join(
            f"{row['address']} ({row['messages']})" for row in summary["topSenders"][:5]
        )
        console.print(f"Top senders: {senders}")


class ProgressBar:
    """A rich progress bar of one scan, fed with ``scanProgress`` events."""

    def __init__(self, console: Console, label: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[phase]}"),
            TextColumn("{task.fields[counts]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[rate]}"),
            console=console,
        )
        self._task: TaskID = self._progress.add_task(
            label, total=100, phase="queued", counts="", eta="-", rate="-"
        )

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, event: dict[str, Any]) -> None:
        counts = f"{event['processed']}/{event['total']}" if event["total"] else ""
        active = event["status"] in ACTIVE_STATUSES
        self._progress.update(
            self._task,
            completed=event["percent"],
            phase=event["phase"].lower(),
            counts=counts,
            eta=format_seconds(event["etaSeconds"]) if active else "-",
            rate=format_rate(event["messagesPerSecond"]),
        )
