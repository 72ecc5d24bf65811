"""The pages in a real browser (Debian's chromium, driven by Playwright): a supervisor signs
in, reaches an officer by keyboard, sees the charts and the timeline of events, takes the flag
through the review workflow and sees it in the list; a reviewer signs in and opens the
reviewers' pages at 1280 and 800 px: the navigation on one row at 1280 px, no page wider than
the window, the audit report under the site header with its PDF link, answering at once (kept
built, as `ews score` keeps it) and saying so while it is rebuilt. Every page is photographed
into ``test-output/screenshots/`` of the repository (or ``$EWS_TEST_OUTPUT/screenshots/``)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from tests._service import NAMES, World, build_world, demo_snapshot, served_in_thread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, World]]:

    home = tmp_path / "home"
    w = build_world(home, f"sqlite:///{tmp_path / 'app.db'}", demo_snapshot(home))
    with served_in_thread(create_app(w.settings)) as base:
        yield base, w
    w.db.dispose()


ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = (
    Path(os.environ.get("EWS_TEST_OUTPUT") or Path(__file__).resolve().parents[1] / "test-output")
    / "screenshots"
)


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert (SHOTS / f"{name}.png").stat().st_size > 10_000


def _sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/")
    page.get_by_label("Your token").fill(token)
    page.keyboard.press("Enter")
    page.wait_for_url("**/flags")


@contextmanager
def _browser_page(width: int = 1280) -> Iterator[Any]:
    """A page of Debian's chromium ``width`` px wide; on leaving, no Content-Security-Policy
    of the service was violated (the console names every blocked script, style or image)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            blocked: list[str] = []
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            yield page
            assert blocked == []
        finally:
            browser.close()


@contextmanager
def _signed_in(base: str, token: str, width: int = 1280) -> Iterator[Any]:
    """A page of Debian's chromium ``width`` px wide, signed in with ``token`` (a session)."""
    with _browser_page(width) as page:
        _sign_in(page, base, token)
        yield page


def test_api_docs_work_offline_under_their_csp(served) -> None:  # type: ignore[no-untyped-def]
    base, _ = served
    with _browser_page() as page:
        page.goto(base + "/docs")
        page.locator(".swagger-ui .info .title").wait_for()
        assert "ews: early-intervention system" in page.locator(".swagger-ui .info").inner_text()
        page.locator(".opblock-summary").first.click()  # an operation opens
        page.locator(".opblock-body").first.wait_for()
        _shot(page, "api-docs")


def _step(page: Any, status: str, **fields: str) -> None:
    page.get_by_label("Next step").select_option(status)
    for label, value in fields.items():
        page.get_by_label(label.replace("_", " ")).fill(value)
    page.get_by_role("button", name="Save step").click()
    page.wait_for_url("**done=*#reviews")
    # the confirmation names the step, at the review history, in view
    saved = page.get_by_role("status")
    words = status.replace("_", " ")
    assert saved.inner_text().startswith(f"Recorded: {words[0].upper()}{words[1:]}, by sgt.lee")
    assert saved.is_visible() and _in_view(page, saved)
    assert page.locator("li.just-saved").count() == 1


def _in_view(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    return bool(box) and 0 <= box["y"] < page.viewport_size["height"]


def _date_lines(page: Any) -> list[int]:
    """The number of text lines of each date on the page."""
    return list(
        page.evaluate(
            """[...document.querySelectorAll('.date')].map(e => {
                const r = document.createRange(); r.selectNodeContents(e);
                return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; })"""
        )
    )


def _width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_supervisor_reviews_a_flag_with_the_keyboard(served) -> None:  # type: ignore[no-untyped-def]
    base, w = served
    with _signed_in(base, w.tokens["sgt12"]) as page:
        a1 = NAMES["a1"]  # the officer by the name his sergeant knows him by
        assert page.get_by_role("link", name=a1).is_visible()
        assert page.get_by_role("link", name=NAMES["m1"]).count() == 0  # moved out of unit 12
        assert page.get_by_role("link", name="Audit log").count() == 0  # not the role's
        assert page.locator(".badge.st-new").first.inner_text() == "New: not reviewed yet"
        assert "days left" in page.locator("td.dates").first.inner_text()
        _shot(page, "supervisor-flags")
        page.set_viewport_size({"width": 800, "height": 900})
        assert _width(page) <= 800
        assert set(_date_lines(page)) == {1}
        _shot(page, "supervisor-flags-800")
        page.set_viewport_size({"width": 1280, "height": 900})
        # keyboard only: tab to the officer's link and open it
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == a1:
                break
        page.keyboard.press("Enter")
        page.wait_for_url("**/officers/demo/a1**")
        assert page.get_by_role("heading", name=a1).is_visible()
        # the reasons, the context, the history and the form first; dates never wrap
        assert "13 years of service" in page.locator("aside.context").inner_text()
        form_y = page.get_by_label("Next step").bounding_box()["y"]
        assert form_y < page.locator("figure").first.bounding_box()["y"]
        assert set(_date_lines(page)) == {1}
        # the charts: score against peers, behaviours against peers
        assert page.locator("figure svg").count() == 2
        assert page.get_by_role("heading", name="Behaviours over the scored dates").is_visible()
        # the timeline: the events known at the date, findings only once final
        events = page.locator("section[aria-labelledby=events] tbody tr")
        assert events.count() == 3  # e1, e2, e3 of a1 (b1's event is not shown)
        text = page.locator("section[aria-labelledby=events]").inner_text()
        assert "05A EXCESSIVE FORCE" in text and "sustained" in text and "TASER" in text
        assert "PHYSICAL FORCE" not in text
        _shot(page, "supervisor-officer")
        page.set_viewport_size({"width": 800, "height": 900})
        assert _width(page) <= 800
        assert set(_date_lines(page)) == {1}
        _shot(page, "supervisor-officer-800")
        page.set_viewport_size({"width": 1280, "height": 900})
        # the workflow: review, assign an intervention, complete it
        _step(page, "under_review", Note="spoke with the officer")
        page.get_by_label("Intervention (with").select_option(index=1)
        page.get_by_label("Due date (with").fill("2024-03-01")
        _step(page, "intervention_assigned")
        assert "Intervention assigned" in page.locator("main").inner_text()
        _step(page, "intervention_completed", Note="training done")
        assert page.get_by_label("Next step").count() == 0  # nothing follows a completion
        _shot(page, "supervisor-officer-after-review")
        page.get_by_role("link", name="Back to the flags").click()
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=a1))
        assert "Intervention completed" in row.inner_text()


@pytest.mark.parametrize("width", [1280, 800])
def test_reviewer_opens_the_reviewers_pages(served, width: int) -> None:
    from models.audit_report import building_since, refresh_report

    base, w = served
    # `ews score` keeps the report built (models.audit_report.keep_built): the same step here
    refresh_report("demo", w.settings, w.db)
    with _signed_in(base, w.tokens["reviewer"], width) as page:
        _shot(page, f"reviewer-flags-{width}")
        assert page.get_by_role("button", name="Save step").count() == 0
        for link, heading, name in REVIEWER_PAGES:
            t0 = time.perf_counter()
            page.get_by_role("link", name=link, exact=True).click()
            page.wait_for_load_state()
            took = time.perf_counter() - t0
            assert page.get_by_role("heading", name=heading).first.is_visible()
            assert took < 5, f"{link} took {took:.1f} s"  # kept built: no half-minute wait
            _shot(page, f"{name}-{width}")
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"{link} is {wide} px wide in a {width} px window"
            links = page.locator("header nav a")
            if width == 1280:  # the navigation on one row
                tops = {round(links.nth(i).bounding_box()["y"]) for i in range(links.count())}
                assert len(tops) == 1, f"{link}: the navigation wraps ({sorted(tops)})"
            assert page.get_by_role("button", name="Sign out").is_visible()
        # the report page: under the site header, with its PDF link
        pdf = page.get_by_role("link", name="Download this report as PDF")
        assert pdf.is_visible() and "rebuilt" not in page.locator("body").inner_text()
        if width == 800:
            return
        # a rebuild says so (with when it started) and the report stays readable meanwhile
        page.get_by_role("link", name="Model card", exact=True).first.click()
        page.get_by_role("button", name="Rebuild the report from the current data").click()
        notice = page.get_by_role("status").filter(has_text="being rebuilt")
        assert "started at" in notice.inner_text()
        assert page.get_by_role("heading", name="Model card: demo").is_visible()
        _shot(page, "reviewer-model-card-rebuilding-1280")
        for _ in range(600):  # let the build end before the workspace goes
            if building_since("demo", w.settings.home) is None:
                break
            time.sleep(0.2)
        page.reload()
        assert page.get_by_text("being rebuilt").count() == 0


REVIEWER_PAGES = [
    ("Audit log", "Audit log", "reviewer-audit-log"),
    ("Review timeliness", "Review timeliness", "reviewer-timeliness"),
    ("Disparities", "Disparities", "reviewer-disparities"),
    ("Drift", "Drift", "reviewer-drift"),
    ("Model card", "Model card", "reviewer-model-card"),
    # last: the report is the very file `ews audit-report` writes, under the site's header
    ("Audit report", "Audit report of the early-intervention system", "reviewer-audit-report"),
]
