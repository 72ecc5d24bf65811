"""The pages, as a supervisor and a reviewer use them: sign in, the flags of one's units, an
officer's page and the review form, the reviewers' audit pages; the same scope rule and the
same 404 as the API; forms refused without their CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from ews.db import AuditLog, Review
from tests._service import NEW, OLD, World, build_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, World]]:
    w = build_world(tmp_path / "home", f"sqlite:///{tmp_path / 'app.db'}")
    with TestClient(create_app(w.settings)) as c:
        yield c, w
    w.db.dispose()


SAME_SITE = {"Origin": "http://testserver"}  # what a browser sends from the sign-in page


def _signin(c: TestClient, w: World, who: str) -> str:
    r = c.post("/signin", data={"token": w.tokens[who]}, headers=SAME_SITE)
    assert r.status_code == 200 and r.url.path == "/flags", r.text
    return re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)  # type: ignore[union-attr]


def test_sign_in_and_out(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    assert c.get("/flags").url.path == "/signin"
    bad = c.post("/signin", data={"token": "not-a-working-token-at-all"}, headers=SAME_SITE)
    assert bad.status_code == 401 and "does not work" in bad.text
    csrf = _signin(c, w, "sgt12")
    cookie = c.cookies.get("ews_session")
    assert cookie and cookie != w.tokens["sgt12"]  # a session's id, never the token
    assert c.post("/signout", data={"csrf": "forged"}).status_code == 403
    assert c.post("/signout", data={"csrf": csrf}).url.path == "/signin"
    assert c.get("/flags").url.path == "/signin"


def test_supervisor_pages(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    csrf = _signin(c, w, "sgt12")
    page = c.get("/flags", params={"agency": "demo"}).text
    assert "/officers/demo/a1?as_of=2024-01-01" in page and "m1" not in page
    assert "Audit log" not in page  # no link to what the role cannot open
    old = c.get("/flags", params={"agency": "demo", "as_of": OLD.isoformat()}).text
    assert "/officers/demo/m2" in old and "/officers/demo/m1" not in old
    officer = c.get("/officers/demo/a1")
    assert officer.status_code == 200
    assert "<svg" in officer.text and "unit median" in officer.text
    # the officer's behaviours over the scored dates against the unit and rank means
    assert "Behaviours over the scored dates, against peers" in officer.text
    assert re.search(
        r"2023-01-01</td><td><strong>7</strong> <[^>]+>\(unit 2.5, rank 1.5\)", officer.text
    )
    assert re.search(
        r"2024-01-01</td><td><strong>9</strong> <[^>]+>\(unit 2.5, rank 1.5\)", officer.text
    )
    assert "Record the next step" in officer.text and "under review" in officer.text
    missing = c.get("/officers/demo/ghost")
    moved = c.get("/officers/demo/m1", params={"as_of": OLD.isoformat()})
    assert missing.status_code == moved.status_code == 404 and missing.text == moved.text
    form = {
        "csrf": csrf,
        "as_of_date": NEW.isoformat(),
        "status": "under_review",
        "factor_0": "force_180d_count",
        "agree_0": "no",
        "note": "talked with the officer",
    }
    assert c.post("/officers/demo/a1/reviews", data={**form, "csrf": "x"}).status_code == 403
    done = c.post("/officers/demo/a1/reviews", data=form)
    assert done.status_code == 200 and "Recorded: Under review, by sgt.lee" in done.text
    again = c.post(
        "/officers/demo/a1/reviews",
        data={**form, "status": "intervention_assigned", "intervention_type": "training"},
    )
    assert again.status_code == 422 and "due_date" in again.text
    out = c.post("/officers/demo/m1/reviews", data=form)
    assert out.status_code == 404 and out.text == missing.text
    with w.db.session() as s:
        steps = list(s.scalars(select(Review)))
    assert [(r.officer_id, r.status, r.factor_feedback) for r in steps] == [
        ("a1", "under_review", [{"factor": "force_180d_count", "agree": False, "comment": ""}])
    ]
    assert c.get("/audit").status_code == 403


def test_reviewer_pages(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    _signin(c, w, "reviewer")
    c.get("/flags", params={"agency": "demo"})
    officer = c.get("/officers/demo/b1").text
    assert "Record the next step" not in officer  # reviewers do not record reviews
    audit = c.get("/audit")
    assert audit.status_code == 200 and "audit chain intact" in audit.text
    assert "/officers/demo/b1" in audit.text
    timely = c.get("/timeliness")
    assert timely.status_code == 200 and "2024-01-01" in timely.text
    with w.db.session() as s:
        reads = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.actor == "auditor")
        )
    assert reads and reads >= 5


@pytest.mark.parametrize(
    "url",
    [
        "/audit?before_id=99999999999",
        "/flags?page=0",
        "/flags?status=bogus",
        "/flags?as_of=2024-13-01",
        "/flags?unit=" + "u" * 300,
        "/officers/demo/a%001",
        "/officers/" + "d" * 80 + "/a1",
        "/officers/demo/" + "x" * 300,
    ],
)
def test_bad_page_input_is_4xx(world, url: str) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    _signin(c, w, "admin")
    r = c.get(url)
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("text/html")


def test_reasons_name_rules_by_their_words_never_their_keys() -> None:
    from api.pages import reasons

    factors = [
        {"feature": "use_of_force_90d_count", "sentence": "3 use-of-force reports in 90 days"},
        {
            "rule": "cmpd",
            "name": "cmpd",
            "title": "Charlotte-Mecklenburg-style threshold rule",
            "description": "3 or more complaints in the last 180 days or 3 or more use-of-force "
            "reports in the last 90 days",
            "sentence": "3 or more use-of-force reports in the last 90 days (this officer: 3)",
            "reason": "3 or more use-of-force reports in the last 90 days (this officer: 3)",
        },
        {"context": True, "sentence": "12 years of service"},
    ]
    assert reasons(factors, ["cmpd", "best_single"]) == [
        "3 use-of-force reports in 90 days",
        "3 or more use-of-force reports in the last 90 days (this officer: 3) (a warning rule "
        "used by the Charlotte-Mecklenburg police)",
        "Also flagged by a warning rule learned from this agency's past records",
        "Context, not a reason: 12 years of service",
    ]
    top = {
        "rule": "iapro_top_percentile",
        "title": "top-5%-of-the-unit rule (IAPro style)",
        "reason": "in the top 5% of unit 016 for complaints in the last year",
    }
    assert reasons([top], ["iapro_top_percentile"]) == [
        "Among the top 5% of unit 016 for complaints in the last year (a top-5%-of-the-unit "
        "warning rule)"
    ]


@pytest.mark.parametrize("who", ["sgt12", "ds"])
def test_report_pages_are_refused_to_other_roles(world, who: str) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    _signin(c, w, who)
    audit_log = c.get("/audit")  # the answer of every reviewers' page to another role
    assert audit_log.status_code == 403
    for url in ("/model-card", "/audit-report", "/audit-report.pdf"):
        r = c.get(url, params={"agency": "demo"})
        assert r.status_code == 403 and r.text == audit_log.text, url
    with w.db.session() as s:
        refused = s.scalars(select(AuditLog.resource).where(AuditLog.action == "denied")).all()
    assert {"/model-card", "/audit-report", "/audit-report.pdf"} <= set(refused)


def test_report_pages_say_when_there_is_nothing_to_report(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    _signin(c, w, "reviewer")
    page = c.get("/model-card", params={"agency": "demo"})
    assert page.status_code == 200 and "no snapshot of agency" in page.text
    assert c.get("/audit-report.pdf").status_code == 404
