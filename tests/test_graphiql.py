"""GraphiQL at ``GET /graphql`` served from this server only, with no internet address.

The first tests run the app in process and read the page. The browser test opens it in
chromium against the real API and worker, and every request to another host is aborted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from api.app import create_app
from api.graphiql import VENDOR_FILES
from jobs.settings import load_settings
from tests.browser import open_browser
from tests.mailboxes import connect_filled_account

HTML = {"Accept": "text/html"}


class AssetParser(HTMLParser):
    """Collects the ``src`` and ``href`` values of a page, with their ``integrity``."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            address = values.get(name)
            if address is not None:
                self.assets.append((address, values.get("integrity")))


def page_assets(page: str) -> list[tuple[str, str | None]]:
    parser = AssetParser()
    parser.feed(page)
    return parser.assets


@pytest.fixture
async def client() -> Any:
    app = create_app(load_settings())
    # Strawberry builds a request context even for the GraphiQL page, which uses none of it.
    # The lifespan that opens the real connections does not run here, so stand-ins suffice.
    app.state.runtime = None
    app.state.hub = None
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_page_references_no_external_address(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers=HTML)

    assert response.status_code == 200, response.text
    assert "text/html" in response.headers["content-type"]
    assert "://" not in response.text
    assert "unpkg" not in response.text
    assets = page_assets(response.text)
    assert len(assets) == len(VENDOR_FILES) + 2
    for address, _ in assets:
        assert address.startswith("/static/"), address


async def test_vendor_files_match_integrity(client: httpx.AsyncClient) -> None:
    page = (await client.get("/graphql", headers=HTML)).text

    checked = 0
    for address, integrity in page_assets(page):
        if integrity is None:
            continue
        response = await client.get(address)
        assert response.status_code == 200, address
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert integrity == f"sha384-{digest}", address
        checked += 1
    assert checked == len(VENDOR_FILES)


async def test_own_static_files_served(client: httpx.AsyncClient) -> None:
    for path in ("/static/graphiql.js", "/static/graphiql.css"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "://" not in response.text, path


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/react/package.json",
        "/static/vendor/graphiql/../../package-lock.json",
        "/static/vendor/%2e%2e/%2e%2e/web/package.json",
    ],
)
async def test_vendor_route_serves_listed_files_only(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404, response.text


async def test_missing_packages_name_install_step(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAILSCAN_WEB_MODULES", str(tmp_path))

    response = await client.get("/graphql", headers=HTML)

    assert response.status_code == 503
    assert "python -m scripts.services install" in response.text
    assert "react/umd/react.production.min.js" in response.text


# --- in chromium -------------------------------------------------------------------------------

START = """mutation {{
  startScan(accountId: "{account_id}", months: 3) {{
    __typename
    ... on StartScanSuccess {{ task {{ id status }} }}
  }}
}}"""

PROGRESS = """subscription {{
  scanProgress(taskId: "{task_id}") {{ status percent phase processed total }}
}}"""

# The editors are CodeMirror 5 instances; each wrapper element exposes its editor object.
SET_EDITOR = """([selector, text]) => {
  document.querySelector(selector).CodeMirror.setValue(text);
}"""
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
#: Wait after changing the query before running it, in milliseconds.
EDITOR_SETTLE_MS = 1000
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE_TEXT = (
    "() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"
)


async def run_operation(browser: Any, text: str, until: str) -> dict[str, Any]:
    """Put ``text`` in the query editor, run it and return the response once it contains
    ``until``."""
    page = browser.page
    await page.evaluate(SET_EDITOR, [QUERY_EDITOR, text])
    # GraphiQL parses the editor text after a short debounce, and its fetcher picks the
    # websocket only once the parsed document is a subscription.
    await page.wait_for_timeout(EDITOR_SETTLE_MS)
    await page.click(".graphiql-execute-button")
    try:
        await page.wait_for_function(
            f"() => ({RESPONSE_TEXT})().includes({json.dumps(until)})", timeout=60_000
        )
    except PlaywrightTimeoutError:
        shot = await browser.screenshot("graphiql-failure")
        raise AssertionError(
            f"no {until!r} in the GraphiQL response within 60 s; screenshot {shot}, "
            f"response {await page.evaluate(RESPONSE_TEXT)!r}, page errors "
            f"{browser.page_errors}, console errors {browser.console_errors}"
        ) from None
    response: dict[str, Any] = json.loads(await page.evaluate(RESPONSE_TEXT))
    return response


@pytest.mark.integration
async def test_graphiql_runs_scan_offline(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = f"graphiql-{uuid.uuid4().hex[:8]}"
    account_id = await connect_filled_account(
        api_server.http_url, user_id, mail_user(), 60, "GraphiQL mailbox"
    )

    async with open_browser() as browser:
        page = browser.page
        await page.goto(f"{api_server.http_url}/graphql")
        await page.wait_for_selector(QUERY_EDITOR, timeout=20_000)
        headers = json.dumps({"Authorization": f"Bearer dev:{user_id}"})
        await page.evaluate(SET_EDITOR, [HEADERS_EDITOR, headers])

        started = await run_operation(
            browser, START.format(account_id=account_id), "StartScanSuccess"
        )
        task_id = started["data"]["startScan"]["task"]["id"]
        done = await run_operation(browser, PROGRESS.format(task_id=task_id), "COMPLETED")
        await browser.screenshot("graphiql-scan-completed")

    progress = done["data"]["scanProgress"]
    assert progress["status"] == "COMPLETED"
    assert progress["percent"] == 100
    assert progress["processed"] == 60
    assert browser.external_requests == []
    assert browser.page_errors == []
