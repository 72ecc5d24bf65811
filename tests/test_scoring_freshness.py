"""Scores only inside the data: an as-of date too far past the data's end is refused by the
library (so by `ews score`, the demo and the API alike), and a stored run that would now be
refused is marked stale in the API's JSON and on the flag list and officer pages."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ews.flagstore import save_flags
from models.scoring import DEFAULT_MAX_STALENESS_DAYS, run_freshness, staleness
from tests._service import NEW, build_world, demo_snapshot, flags_frame


def test_staleness_allows_a_quarter_after_the_data_end() -> None:
    end = dt.date(2015, 12, 31)
    assert DEFAULT_MAX_STALENESS_DAYS == 92
    assert staleness(end + dt.timedelta(days=1), end) is None
    assert staleness(end + dt.timedelta(days=92), end) is None
    why = staleness(dt.date(2030, 1, 1), end)
    assert why is not None
    assert "data end 2015-12-31" in why and "92 days" in why and "until 2016-04-01" in why
    assert staleness(dt.date(2016, 4, 2), end, max_days=92) is not None
    assert staleness(dt.date(2016, 4, 2), end, max_days=400) is None
    assert run_freshness(dt.date(2030, 1, 1), {"data_end": "2015-12-31"})["stale"] is True
    assert run_freshness(dt.date(2016, 1, 1), {"data_end": "2015-12-31"})["stale"] is False
    assert run_freshness(dt.date(2016, 1, 1), {})["stale"] is None  # not recorded: unknown


STALE_DAY = dt.date(2024, 6, 1)  # the demo snapshot's events end 2023-11-21


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    snap = demo_snapshot(home)
    w = build_world(home, f"sqlite:///{tmp_path / 'app.db'}", snapshot_id=snap)
    rows = [("a1", "12", 0.9, True), ("a2", "12", 0.1, False)]
    # an old-style run (no data end recorded): its snapshot tells the data end
    save_flags("demo", STALE_DAY, flags_frame(rows, snap), home=home, db=w.db)
    recorded = flags_frame(rows, snap).assign(data_end="2023-11-21")
    save_flags("demo", dt.date(2024, 2, 1), recorded, home=home, db=w.db)
    with TestClient(create_app(w.settings)) as c:
        yield c, w
    w.db.dispose()


def test_a_stored_run_past_the_data_is_marked_stale(client) -> None:  # type: ignore[no-untyped-def]
    c, w = client
    head = {"Authorization": f"Bearer {w.tokens['sgt12']}"}
    stale = c.get(
        "/api/flags", params={"agency": "demo", "as_of": STALE_DAY.isoformat()}, headers=head
    )
    assert stale.status_code == 200
    run = stale.json()["run"]
    assert run["stale"] is True and run["data_end"] == "2023-11-21"
    assert "data end 2023-11-21" in run["stale_reason"]
    fresh = c.get("/api/flags", params={"agency": "demo", "as_of": NEW.isoformat()}, headers=head)
    assert fresh.json()["run"]["stale"] is False
    recorded = c.get("/api/flags", params={"agency": "demo", "as_of": "2024-02-01"}, headers=head)
    assert recorded.json()["run"]["stale"] is False  # 72 days after the data end: allowed
    officer = c.get("/api/officers/demo/a1", params={"as_of": STALE_DAY.isoformat()}, headers=head)
    assert officer.json()["flag"]["stale"] is True

    r = c.post(
        "/signin", data={"token": w.tokens["sgt12"]}, headers={"Origin": "http://testserver"}
    )
    assert r.status_code == 200
    page = c.get("/flags", params={"agency": "demo", "as_of": STALE_DAY.isoformat()}).text
    assert re.search(r"Stale: these flags were scored on data that end 2023-11-21", page)
    assert "Stale:" not in c.get("/flags", params={"agency": "demo", "as_of": NEW.isoformat()}).text
    officer_page = c.get("/officers/demo/a1", params={"as_of": STALE_DAY.isoformat()}).text
    assert "Stale: this flag was scored on data that end 2023-11-21" in officer_page
