"""Headless Chromium (Debian's package, driven by Playwright) for the browser tests: the fixtures.

No browser is downloaded: Playwright launches /usr/bin/chromium (`make test` installs it). The plain helpers
(log_in, drop, Watch, and ``shot(page, name)``, which saves a page under test-artifacts/screenshots/) are in
pages.py.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.browser.pages import DESKTOP, Watch

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
