"""The dashboard at ``/`` in chromium against the real API, worker and Dovecot.

Every request to a host other than 127.0.0.1 is aborted, so the page works offline too.
Screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from api.app import create_app
from jobs.settings import load_settings
from scripts.demo_mailbox import generate_demo_messages
from tests.browser import Browser, open_browser
from tests.mailboxes import connect_filled_account

#: Maximum wait for a scan to end, in milliseconds.
SCAN_TIMEOUT_MS = 60_000


async def test_page_references_no_external_address() -> None:
    app = create_app(load_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/")
        script = await client.get("/static/dashboard.js")
        style = await client.get("/static/dashboard.css")

    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert '<script src="/static/dashboard.js"' in page.text
    assert script.status_code == 200
    assert style.status_code == 200
    for response in (page, script, style):
        assert "http://" not in response.text
        assert "https://" not in response.text


async def connect_with_form(page: Page, user: Any, password: str, label: str) -> None:
    """Connect ``user``'s mailbox over IMAPS through the dashboard's form."""
    await page.click("#connect summary")
    await page.fill("#imap-host", user.host)
    await page.fill("#imap-port", str(user.imaps_port))
    await page.select_option("#imap-security", "SSL")
    await page.fill("#imap-username", user.name)
    await page.fill("#imap-password", password)
    await page.fill("#imap-label", label)
    await page.click("#connect-form button[type=submit]")
    await page.locator("#accounts tbody tr", has_text=label).wait_for()


def task_row(page: Page, account_label: str) -> Any:
    return page.locator("#tasks tbody tr", has_text=account_label).first


async def sign_in_with_keyboard(page: Page, user_id: str) -> None:
    await page.focus("#token")
    await page.keyboard.type(f"dev:{user_id}")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#signed-in:not([hidden])")
    await page.wait_for_selector("#live-state.live", timeout=10_000)


async def progress_value(row: Any) -> float:
    value: float = await row.locator("progress").evaluate("(bar) => bar.value")
    return value


def progress_frames(browser: Browser, task_id: str) -> list[dict[str, Any]]:
    """Return the myScans events of ``task_id`` that reached the page over its websocket."""
    events = []
    for frame in browser.websocket_frames:
        message = json.loads(frame)
        if message.get("type") != "next":
            continue
        event = message["payload"]["data"]["myScans"]
        if event["taskId"] == task_id:
            events.append(event)
    return events


@pytest.mark.integration
async def test_dashboard_scan_reaches_full_bar(
    api_server: Any, worker: Any, mail_user: Any
) -> None:
    user_id = f"dashboard-{uuid.uuid4().hex[:8]}"
    user = mail_user()
    user.deliver_many(generate_demo_messages(60, months=2))

    async with open_browser() as browser:
        page = browser.page
        await page.goto(api_server.http_url + "/")
        await sign_in_with_keyboard(page, user_id)
        await connect_with_form(page, user, user.password, "Small mailbox")
        account = page.locator("#accounts tbody tr", has_text="Small mailbox")
        await account.locator("select").select_option("3")
        await account.get_by_role("button", name="Scan Small mailbox").focus()
        await page.keyboard.press("Enter")

        row = task_row(page, "Small mailbox")
        await row.and_(page.locator("[data-status=COMPLETED]")).wait_for(timeout=SCAN_TIMEOUT_MS)
        # The summary arrives with the task read back after the terminal event.
        await row.locator(".result", has_text="60 messages").wait_for()
        await browser.screenshot("dashboard-scan-completed")
        task_id = await row.get_attribute("data-task-id")
        bar = await progress_value(row)
        text = await row.locator(".progress-text").inner_text()
        result = await row.locator(".result").inner_text()

        await row.get_by_role("button", name="Findings of the scan of Small mailbox").click()
        await page.wait_for_selector("#findings:not([hidden]) tbody tr")
        findings = await page.locator("#findings tbody tr").count()
        await browser.screenshot("dashboard-findings")

    assert bar == 100
    assert text.startswith("100% · done · 60/60 messages")
    assert "60 messages" in result
    assert findings > 0
    events = progress_frames(browser, str(task_id))
    assert events, "no myScans event of the task reached the page"
    assert events[-1]["status"] == "COMPLETED"
    assert browser.external_requests == []
    assert browser.page_errors == []


@pytest.mark.integration
async def test_dashboard_cancels_scan(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = f"dashboard-{uuid.uuid4().hex[:8]}"
    await connect_filled_account(api_server.http_url, user_id, mail_user(), 1500, "Big mailbox")

    async with open_browser(local_storage={"mailscan.token": f"dev:{user_id}"}) as browser:
        page = browser.page
        # The remembered token signs in without the form.
        await page.goto(api_server.http_url + "/")
        await page.wait_for_selector("#live-state.live", timeout=10_000)
        account = page.locator("#accounts tbody tr", has_text="Big mailbox")
        await account.get_by_role("button", name="Scan Big mailbox").click()
        row = task_row(page, "Big mailbox")
        await row.get_by_role("button", name="Cancel the scan of Big mailbox").click()
        await row.and_(page.locator("[data-status=CANCELLED]")).wait_for(timeout=SCAN_TIMEOUT_MS)
        await browser.screenshot("dashboard-scan-cancelled")
        bar = await progress_value(row)
        actions = await row.locator(".actions-cell button").all_inner_texts()
        status = await page.locator("#status").inner_text()

    assert bar < 100
    assert "Cancel" not in actions
    assert status == "Cancellation requested."
    assert browser.external_requests == []
    assert browser.page_errors == []


@pytest.mark.integration
async def test_dashboard_shows_failed_scan(api_server: Any, worker: Any, mail_user: Any) -> None:
    user_id = f"dashboard-{uuid.uuid4().hex[:8]}"
    user = mail_user()

    async with open_browser() as browser:
        page = browser.page
        await page.goto(api_server.http_url + "/")
        await sign_in_with_keyboard(page, user_id)
        await connect_with_form(page, user, "wrong password", "Locked mailbox")
        account = page.locator("#accounts tbody tr", has_text="Locked mailbox")
        await account.get_by_role("button", name="Scan Locked mailbox").click()
        row = task_row(page, "Locked mailbox")
        await row.and_(page.locator("[data-status=FAILED]")).wait_for(timeout=SCAN_TIMEOUT_MS)
        await row.locator(".result .error").wait_for()
        await browser.screenshot("dashboard-scan-failed")
        error = await row.locator(".result .error").inner_text()
        status = await row.locator(".status").inner_text()

    assert status == "FAILED"
    assert error.startswith("AUTH_FAILED: IMAP server")
    assert browser.external_requests == []
    assert browser.page_errors == []
