"""The browser client snippet of ``docs/api.md`` runs in chromium against the real API."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import open_browser
from tests.clients import graphql
from tests.mailboxes import connect_filled_account

pytestmark = pytest.mark.integration

API_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "api.md"

START = """
mutation Start($accountId: ID!) {
  startScan(accountId: $accountId, months: 3) { ... on StartScanSuccess { task { id } } }
}
"""

RUN_SNIPPET = """([taskId, token]) => {
  window.snippetEvents = [];
  watchScan(taskId, token, (event, errors) => window.snippetEvents.push({ event, errors }));
}"""


def client_snippet() -> str:
    """Return the first JavaScript block after the guide's graphql-transport-ws heading."""
    text = API_GUIDE.read_text()
    section = text[text.index("### A graphql-transport-ws client") :]
    match = re.search(r"```js\n(.*?)```", section, re.DOTALL)
    assert match, f"no js block under the graphql-transport-ws heading of {API_GUIDE}"
    return match.group(1)


async def test_guide_snippet_follows_scan(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = f"snippet-{uuid.uuid4().hex[:8]}"
    account_id = await connect_filled_account(
        api_server.http_url, user_id, mail_user(), 40, "Snippet mailbox"
    )
    async with httpx.AsyncClient(base_url=api_server.http_url, timeout=30) as client:
        data = await graphql(client, user_id, START, {"accountId": account_id})
    task_id = data["startScan"]["task"]["id"]

    async with open_browser() as browser:
        page = browser.page
        await page.goto(api_server.http_url + "/")
        await page.add_script_tag(content=client_snippet())
        await page.evaluate(RUN_SNIPPET, [task_id, f"dev:{user_id}"])
        await page.wait_for_function(
            "() => window.snippetEvents.some((item) => item.event.status === 'COMPLETED')",
            timeout=60_000,
        )
        received: list[dict[str, Any]] = await page.evaluate("() => window.snippetEvents")

    assert all(item.get("errors") is None for item in received), received
    percents = [item["event"]["percent"] for item in received]
    assert percents == sorted(percents)
    assert received[-1]["event"]["status"] == "COMPLETED"
    assert received[-1]["event"]["percent"] == 100
    assert browser.page_errors == []
