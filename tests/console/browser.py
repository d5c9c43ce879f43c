"""Real headless Chromium for the console's browser tests, driven by Playwright.

Playwright never downloads a browser here: it launches the system's chromium
(`chromium` on PATH, as `fabric test` installs it) by `executable_path`.
Screenshots go under the test's own tmp dir and their paths are printed, so a
failed run's pictures are found next to its logs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server",  # the API is on loopback; a proxy from the environment must not see it
]
TIMEOUT_MS = 30_000


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed (./bin/fabric test installs it when run as root)"
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Needs PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 in the environment (the `browser` fixture sets it)."""
    assert os.environ.get("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD") == "1"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def new_page(browser: Browser, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


class Shots:
    """Numbered screenshots of a test under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taken: list[Path] = []

    async def take(self, page: Page, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        print(f"screenshot: {path}")
        return path


async def log_in(page: Page, url: str, key: str) -> None:
    await page.goto(url)
    await page.locator('input[name="key"]').fill(key)
    await page.locator('#login-form button[type="submit"]').click()
    await page.locator("#app").wait_for(state="visible")
