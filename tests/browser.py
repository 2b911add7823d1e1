"""Browser tests' helpers: Debian's chromium driven by Playwright, and their screenshots.

Chromium runs headless with a new empty profile and without its background services, and
every request to a host other than 127.0.0.1 is aborted and recorded, so a page that needs
the internet fails its test instead of waiting. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Page, Route, WebSocket, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@dataclass
class Browser:
    page: Page
    #: Addresses of aborted requests to other hosts than 127.0.0.1.
    external_requests: list[str] = field(default_factory=list)
    #: Uncaught exceptions of page scripts.
    page_errors: list[str] = field(default_factory=list)
    #: Messages the page logged with console.error, including failed resource loads.
    console_errors: list[str] = field(default_factory=list)
    #: Text frames the page received on its websockets, in order.
    websocket_frames: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as ``test-artifacts/<name>.png`` and return its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@asynccontextmanager
async def open_browser(local_storage: dict[str, str] | None = None) -> AsyncIterator[Browser]:
    """Start chromium with an empty profile and yield one page of it.

    ``local_storage`` entries are set before any script of a page on 127.0.0.1 runs.
    """
    async with async_playwright() as playwright:
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1280, "height": 900},
            )
            page = context.pages[0] if context.pages else await context.new_page()
            browser = Browser(page)

            async def block_external(route: Route) -> None:
                if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
                    await route.continue_()
                    return
                browser.external_requests.append(route.request.url)
                await route.abort()

            await context.route("**/*", block_external)
            page.on("pageerror", lambda error: browser.page_errors.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    browser.console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.on("websocket", lambda socket: _record_frames(socket, browser))
            if local_storage:
                await context.add_init_script(script=_local_storage_script(local_storage))
            try:
                yield browser
            finally:
                await context.close()


def _record_frames(socket: WebSocket, browser: Browser) -> None:
    def record(payload: str | bytes) -> None:
        if isinstance(payload, str):
            browser.websocket_frames.append(payload)

    socket.on("framereceived", record)


def _local_storage_script(entries: dict[str, str]) -> str:
    return f"""
if (window.location.hostname === "127.0.0.1") {{
  for (const [key, value] of Object.entries({json.dumps(entries)})) {{
    if (window.localStorage.getItem(key) === null) window.localStorage.setItem(key, value);
  }}
}}
"""
