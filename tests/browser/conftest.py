"""Headless Chromium (Debian's package, driven by Playwright) for the browser tests, and screenshots.

No browser is downloaded: Playwright launches /usr/bin/chromium (`make test` installs it). Every page
a test visits can be saved with ``shot(page, name)`` under test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("SYNTHGEN_CHROMIUM", "/usr/bin/chromium")
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
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module (and the Django flag below only while it runs)."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make browser`, or apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own database calls are
    # ordinary synchronous code all the same, so Django may allow them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()


class Watch:
    """What went wrong in the page: JavaScript errors, console errors, requests that left the live server."""

    def __init__(self, page, origin: str):
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text} ({msg.location.get('url')})"),
        )
        page.on("request", lambda request: self._request(request.url, origin))

    def problems(self) -> list[str]:
        """Errors and foreign requests. Left out, because the pages expect and handle them: the 404s of a
        run page probing for a sample grid before the first is written, and the 400 of an upload of
        unusable files (the browser logs both as failed loads)."""
        expected = (("404", "grid.png"), ("400", "/api/datasets/"))
        errors = [e for e in self.errors if not any(code in e and part in e for code, part in expected)]
        return errors + [f"request outside the live server: {url}" for url in self.foreign]

    def _request(self, url: str, origin: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" != origin:
            self.foreign.append(url)


@pytest.fixture
def browser_context(chromium, live_server):
    context = chromium.new_context(viewport=DESKTOP, accept_downloads=True, base_url=live_server.url)
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context, live_server):
    """A desktop-sized page; the test fails if its JavaScript erred or it loaded anything from elsewhere."""
    page = browser_context.new_page()
    page.watch = Watch(page, live_server.url)
    yield page
    assert page.watch.problems() == []


def shot(page, name: str) -> Path:
    """Save a full-page screenshot as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
