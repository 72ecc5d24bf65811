"""The review queues in a real browser (Debian's chromium, driven by Playwright): a supervisor
sees their queue (new, due soon, overdue) at the top of the flag list and follows the overdue
link; a commander sees the queue of each supervisor of their units with the overdue counts
and the flags escalated to them by `ews notify`. Screenshots go with the others'."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update
from typer.testing import CliRunner

from api.security import create_user
from ews.cli import app
from ews.db import ScoringRun, utcnow
from tests import test_pages_browser as browser
from tests._service import NEW, OLD
from tests.test_pages_browser import _shot, _signed_in

pytestmark = browser.pytestmark
served = browser.served  # the fixture: a world served by uvicorn


def test_supervisor_queue_and_commander_overdue_view(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base, w = served
    # the flags of OLD were raised 20 days ago (overdue), those of NEW 12 days ago (due soon)
    with w.db.write() as s:
        for day, back in ((OLD, 20), (NEW, 12)):
            s.execute(
                update(ScoringRun)
                .where(ScoringRun.agency == "demo", ScoringRun.as_of_date == day)
                .values(scored_at=utcnow() - dt.timedelta(days=back))
            )
    token = create_user(w.db, "cmdr.7", "commander", "demo", ["7"], email="c7@agency.test")
    # what `ews notify` would escalate to the commander (tests/test_notify.py delivers it)
    monkeypatch.setenv("EWS_HOME", str(w.settings.home))
    monkeypatch.setenv("EWS_DATABASE_URL", w.db.url)
    from ews.settings import get_settings

    get_settings.cache_clear()
    r = CliRunner().invoke(app, ["notify", "--dry-run", "--kind", "escalation"])
    assert r.exit_code == 0 and "2 overdue flags escalated to you" in r.output, r.output
    get_settings.cache_clear()

    with _signed_in(base, w.tokens["sgt12"]) as page:
        page.goto(base + "/flags?agency=demo")
        queue = page.get_by_role("region", name="Your review queue")
        text: Any = queue.inner_text()
        assert "0 new, due later · 1 due soon (within 3 days) · 2 overdue" in text
        _shot(page, "notify-supervisor-queue")
        queue.get_by_role("link", name="2 overdue").click()
        page.wait_for_url("**overdue_only=true**")
    with _signed_in(base, token) as page:
        page.goto(base + "/flags?agency=demo")
        table = page.get_by_role("table", name="Queues of the supervisors of your units")
        rows = table.locator("tbody tr").all_inner_texts()
        assert [r.split("\t") for r in rows] == [["sgt.ray", "7", "0", "2", "2"]]
        assert "sgt.lee" not in page.content()
        _shot(page, "notify-commander-overdue")
