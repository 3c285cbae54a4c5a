"""Plain helpers of the browser tests (their fixtures are in conftest.py): logging in, dropping files on
an upload zone, watching a page for errors and requests elsewhere, and screenshots, each saved with
``shot(page, name)`` under test-artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "alice-password-1"  # the `user` fixture's


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


# Drops files on an element the way a person does: a DragEvent whose dataTransfer holds File objects.
DROP_FILES = """([selector, files]) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  const zone = document.querySelector(selector);
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}"""


def drop(page, selector: str, files: list[tuple[str, bytes, str]]) -> None:
    payload = [{"name": name, "data": base64.b64encode(data).decode(), "type": kind} for name, data, kind in files]
    page.evaluate(DROP_FILES, [selector, payload])
