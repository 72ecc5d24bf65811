"""The pages in a real browser (Debian's chromium, driven by Playwright): a supervisor signs
in, reaches an officer by keyboard, records a review step, and sees it in the list."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from tests._service import World, build_world

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, World]]:
    import uvicorn

    w = build_world(tmp_path / "home", f"sqlite:///{tmp_path / 'app.db'}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(w.settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", w
    server.should_exit = True
    thread.join(timeout=10)
    w.db.dispose()


def test_supervisor_reviews_a_flag_with_the_keyboard(served) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    base, w = served
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto(base + "/")
        page.get_by_label("Your token").fill(w.tokens["sgt12"])
        page.keyboard.press("Enter")
        page.wait_for_url("**/flags")
        assert page.get_by_role("link", name="a1").is_visible()
        assert page.get_by_role("link", name="m1").count() == 0  # moved out of unit 12
        # keyboard only: tab to the officer's link and open it
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "a1":
                break
        page.keyboard.press("Enter")
        page.wait_for_url("**/officers/demo/a1**")
        assert page.get_by_role("heading", name="Officer a1").is_visible()
        assert page.locator("figure svg").count() == 1
        page.get_by_label("Next step").select_option("under_review")
        page.get_by_label("Note").fill("spoke with the officer")
        page.get_by_role("button", name="Save step").click()
        page.wait_for_url("**done=saved**")
        assert page.get_by_role("status").inner_text() == "Saved."
        page.get_by_role("link", name="Back to the flags").click()
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name="a1"))
        assert "under review" in row.inner_text()
        browser.close()
