"""The supervisors' pages and the officers' optional name and badge (issue 18, item 4).

- name and badge are never a feature or model input and never leave in the public release
  (exports: see test_models_cli's train-score-evaluate test);
- a user outside an officer's scope never sees the officer's name or badge;
- the flag list puts what is due first; after a review step is saved the page opens at the
  review history and names the step recorded.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from ews.contract import DISPLAY_COLUMNS, read_normalized, write_normalized
from ews.db import Review
from tests._service import BADGES, NAMES, NEW, OLD, World, auth, build_world, demo_snapshot

ROOT = Path(__file__).resolve().parents[1]


def with_names(folder: Path) -> Path:
    """The normalized package in ``folder`` rewritten with a name and badge per officer."""
    pkg = read_normalized(folder)
    officers = pkg.officers.assign(
        name="Zebulon Quartermaine " + pkg.officers["officer_id"].astype(str),
        badge="ZQ-" + pkg.officers["officer_id"].astype(str),
    )
    write_normalized(folder, officers, pkg.events, pkg.assignments)
    return folder


# ---- never a model input, never public ----------------------------------------------------


def test_no_feature_or_model_code_reads_name_or_badge() -> None:
    from features.engines import USED

    assert not set(USED["officers"]) & set(DISPLAY_COLUMNS)
    for package in ("features", "models"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "DISPLAY_COLUMNS" not in text and "badge" not in text.lower(), path


def test_features_are_the_same_with_or_without_names(tmp_path: Path) -> None:
    from _models_agency import make_agency

    from features.build import build_features

    plain = make_agency(tmp_path / "plain", officers=25)
    named = with_names(make_agency(tmp_path / "named", officers=25))
    assert "Zebulon" in str(read_normalized(named).officers["name"].iloc[0])
    day = [dt.date(2012, 1, 1)]
    a, b = build_features(plain, day), build_features(named, day)
    assert not set(b.columns) & set(DISPLAY_COLUMNS)
    assert not any(b[c].astype(str).str.contains("Zebulon").any() for c in b.columns)
    pd.testing.assert_frame_equal(a, b)


def test_the_public_release_never_publishes_a_name_or_badge(tmp_path: Path) -> None:
    from _models_agency import make_agency

    from ews import public

    pkg = read_normalized(with_names(make_agency(tmp_path / "pkg", officers=30)))
    assert "zebulon quartermaine o0003" in public.identifiers(pkg)
    assert "zq-o0003" in public.identifiers(pkg)
    events = pkg.events.copy()
    complaints = events.index[events["event_type"] == "complaint"]
    events.loc[complaints[:12], "category"] = "Zebulon Quartermaine O0003"  # a name
    events.loc[complaints[12:24], "category"] = "ZQ-O0004"  # a badge
    tables = public.agency_tables("a", type(pkg)(pkg.officers, events, pkg.assignments))
    labels = {r for t in tables for r in t.rows} | {c for t in tables for c in t.cols}
    assert not any("zebulon" in x.lower() or "zq-" in x.lower() for x in labels), labels
    assert "other" in labels


def test_validate_keeps_names_and_refuses_an_overlong_one(tmp_path: Path) -> None:
    from ews_testdata import valid_tables, write_package

    from ews.validate import validate_package

    tables = valid_tables()
    tables["officers"]["name"] = ["Ann Lee", None, "Bo Diaz", "Cy Park"]
    tables["officers"]["badge"] = ["0101", "0102", None, "0104"]
    ok = validate_package(write_package(tmp_path / "ok", tables))
    assert ok.ok and ok.tables["officers"]["name"].to_pylist()[0] == "Ann Lee"
    tables["officers"]["name"][1] = "x" * 201
    bad = validate_package(write_package(tmp_path / "bad", tables))
    assert [line for line in bad.report_lines() if "name" in line] == [
        "officers.csv row 2, name: at most 200 characters"
    ]


def test_synth_writes_names_and_distinct_badges(tmp_path: Path) -> None:
    from ews.synth import synthesize

    synthesize(tmp_path / "s", officers=120, years=1, seed=3, quiet=True)
    officers = read_normalized(tmp_path / "s").officers
    assert officers["name"].notna().all() and officers["name"].str.match(r"^\w+ \w+$").all()
    assert officers["badge"].is_unique and officers["badge"].str.len().eq(5).all()


# ---- the pages --------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, World]]:
    home = tmp_path / "home"
    w = build_world(home, f"sqlite:///{tmp_path / 'app.db'}", demo_snapshot(home))
    with TestClient(create_app(w.settings)) as c:
        yield c, w
    w.db.dispose()


def _signin(c: TestClient, w: World, who: str) -> str:
    r = c.post("/signin", data={"token": w.tokens[who]}, headers={"Origin": "http://testserver"})
    assert r.status_code == 200 and r.url.path == "/flags", r.text
    return re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)  # type: ignore[union-attr]


def _never_named(text: str, officers: tuple[str, ...]) -> None:
    for o in officers:
        assert NAMES[o] not in text and BADGES[o] not in text, o


def test_a_user_outside_scope_never_sees_a_name(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    _signin(c, w, "sgt12")
    outside = ("b1", "b2", "m1")  # unit 7 now (m1 moved out of unit 12)
    for day in (NEW, OLD):
        page = c.get("/flags", params={"agency": "demo", "as_of": day.isoformat()}).text
        assert NAMES["a1"] in page and BADGES["a1"] in page
        _never_named(page, outside)
    for o in outside:
        for day in (NEW, OLD):
            r = c.get(f"/officers/demo/{o}", params={"as_of": day.isoformat()})
            assert r.status_code == 404
            _never_named(r.text, tuple(NAMES))
            assert "Sign out" in r.text and 'aria-label="Main"' in r.text  # the header stays
    own = c.get("/officers/demo/a1").text
    assert f"<h1>{NAMES['a1']}</h1>" in own and f"Badge {BADGES['a1']}" in own
    # tenure and age beside the reasons, as context
    assert "13 years of service (since 2010)" in own and "about 39 years old" in own
    _never_named(own, outside)
    # the other unit's sergeant sees his officers' names, never sgt12's
    c.cookies.clear()
    _signin(c, w, "sgt7")
    seven = c.get("/flags", params={"agency": "demo"}).text
    assert NAMES["b1"] in seven and NAMES["m1"] in seven
    _never_named(seven, ("a1", "a2"))
    # the API answers no name to anyone: names are for the pages of the officer's viewers
    for who in ("sgt12", "admin"):
        for url in ("/api/flags?agency=demo", "/api/officers/demo/a1"):
            body = c.get(url, headers=auth(w.tokens[who])).text
            _never_named(body, tuple(NAMES))


def _step(c: TestClient, w: World, officer: str, **body: object) -> None:
    r = c.post(
        f"/api/officers/demo/{officer}/reviews",
        json={"as_of_date": NEW.isoformat(), **body},
        headers=auth(w.tokens["admin"]),
    )
    assert r.status_code == 201, r.text


def test_the_flag_list_puts_what_is_due_first(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    # by score: a1, m1, b1. a1 dismissed (finished: last); b1's intervention was due on
    # 2024-02-01 (overdue: first); m1 still new (first review due 14 days after the flag)
    _step(c, w, "a1", status="dismissed", reason="known situation, already handled")
    _step(c, w, "b1", status="under_review")
    _step(
        c,
        w,
        "b1",
        status="intervention_assigned",
        intervention_type="training",
        due_date="2024-02-01",
    )
    _signin(c, w, "admin")

    def order(**params: str) -> list[str]:
        page = c.get("/flags", params={"agency": "demo", **params}).text
        return re.findall(r'href="/officers/demo/(\w+)\?as_of=2024-01-01"', page)

    assert order() == ["b1", "m1", "a1"]
    assert order(order="rank") == ["a1", "m1", "b1"]
    page = c.get("/flags", params={"agency": "demo"}).text
    rows = page.split("<tbody>")[1].split("</tr>")
    b1, m1, a1 = rows[0], rows[1], rows[2]
    overdue_days = (dt.date.today() - dt.date(2024, 2, 1)).days
    assert f"{overdue_days} days overdue" in b1 and "intervention due" in b1
    assert re.search(r"1[34] days left", m1) and "first review due" in m1
    assert "nothing due" in a1
    # the status as a coloured badge with its words, overdue as a second badge
    assert 'class="badge st-intervention_assigned">Intervention assigned' in b1
    assert 'class="badge st-overdue">Overdue' in b1
    assert 'class="badge st-new">New: not reviewed yet' in m1
    # no jargon: the model in words, never its registry name
    assert "computer model (version 3)" in page and "ews-demo" not in page
    assert c.get("/flags", params={"order": "bogus"}).status_code == 422


def test_due_first_orders_open_flags_by_date_then_undated_then_finished() -> None:
    from api.routes.flags import Row, due_first

    def row(oid: str, status: str, due: dt.date | None) -> Row:
        return Row("12", status, True, False, oid, "{}", due)

    rows = [
        row("r1", "dismissed", None),
        row("r2", "under_review", None),
        row("r3", "new", dt.date(2024, 3, 1)),
        row("r4", "intervention_completed", None),
        row("r5", "intervention_assigned", dt.date(2024, 2, 1)),
        row("r6", "new", dt.date(2024, 3, 1)),
    ]
    assert [r.officer_id for r in due_first(rows)] == ["r5", "r3", "r6", "r2", "r1", "r4"]


def test_after_saving_the_page_opens_at_the_recorded_step(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    csrf = _signin(c, w, "sgt12")
    form = {
        "csrf": csrf,
        "as_of_date": NEW.isoformat(),
        "status": "under_review",
        "factor_0": "force_180d_count",
        "agree_0": "no",
        "comment_0": "the reports were one incident",
        "note": "talked with the officer",
    }
    r = c.post("/officers/demo/a1/reviews", data=form, follow_redirects=False)
    assert r.status_code == 303
    with w.db.session() as s:
        (step,) = s.scalars(select(Review)).all()
        assert step.factor_feedback == [
            {
                "factor": "force_180d_count",
                "agree": False,
                "comment": "the reports were one incident",
            }
        ]
    assert r.headers["location"] == f"/officers/demo/a1?as_of=2024-01-01&done={step.id}#reviews"
    page = c.get(r.headers["location"]).text
    history = page.split('id="reviews"')[1].split("Record the next step")[0]
    assert "Recorded: Under review, by sgt.lee" in history
    assert f'<li id="review-{step.id}" class="just-saved">' in history
    assert "Disagrees</strong>: x" in history and "the reports were one incident" in history
    assert "Note: talked with the officer" in history
    # the reasons, the history and the form come before the charts and the events
    at = [page.index(s) for s in ('id="why"', 'id="reviews"', 'id="trend"', 'id="events"')]
    assert at == sorted(at)
    # another step's id, or none, confirms nothing
    assert "Recorded:" not in c.get("/officers/demo/a1", params={"done": step.id + 7}).text
    assert c.get("/officers/demo/a1", params={"done": "x"}).status_code == 422


def test_reasons_link_to_the_events_that_count(tmp_path: Path) -> None:
    from api.officer_view import for_people, reason_items

    events = [
        {"event_type": "use_of_force", "reported_date": dt.date(2023, 12, 1), "category": "X"},
        {"event_type": "use_of_force", "reported_date": dt.date(2022, 1, 1), "category": "X"},
        {"event_type": "complaint", "reported_date": dt.date(2023, 11, 21), "category": "05A F"},
        {"event_type": "complaint", "reported_date": dt.date(2023, 6, 1), "category": "09A V"},
    ]
    factors = [
        {"feature": "use_of_force_1y_count", "sentence": "1 use-of-force report in the last year"},
        {"feature": "force_complaint_1y_count_unit_pct", "sentence": "top of the unit"},
        {
            "rule": "iapro_top_percentile",
            "reason": "in the top 5% of unit 12 for complaints in the last year",
        },
    ]
    items = reason_items(factors, ["iapro_top_percentile"], events, dt.date(2024, 1, 1))
    assert [i["events"] for i in items] == [[0], [2], [2, 3]]
    assert items[2]["text"].startswith("Among the top 5% of unit 12")
    assert [for_people(v) for v in (4, 1.059, 0.471, 0.006, 0.0, None)] == [
        "4",
        "1.1",
        "0.5",
        "under 0.1",
        "0",
        "–",
    ]
