"""The service: who may see what, reviews, and the audit of every officer-record access."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import create_user
from ews.db import AppDatabase
from ews.flagstore import save_flags
from ews.settings import Settings

AS_OF = dt.date(2024, 1, 1)


def _flags() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "officer_id": ["a1", "a2", "b1", "b2"],
            "unit": ["12", "12", "7", "7"],
            "score": [0.9, 0.2, 0.8, 0.1],
            "rank": [1, 3, 2, 4],
            "flagged": [True, False, True, False],
            "explanation": [
                "4 use-of-force reports in the last 6 months, 3.1 times the average of unit 12",
                "",
                "2 complaints in the last 90 days",
                "",
            ],
            "rules_fired": [["cmpd"], [], [], []],
            "model_version": ["3", "3", "3", "3"],
        }
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], AppDatabase]]:
    settings = Settings(home=tmp_path / "home")
    save_flags("demo", AS_OF, _flags(), settings.home)
    db = AppDatabase(settings.app_database_url)
    tokens = {
        "sgt": create_user(db, "sgt.lee", "supervisor", "demo", ["12"]),
        "auditor": create_user(db, "auditor", "reviewer"),
        "ds": create_user(db, "ds", "data_scientist"),
        "other": create_user(db, "sgt.far", "supervisor", "elsewhere", ["12"]),
    }
    with TestClient(create_app(settings)) as c:
        yield c, tokens, db
    db.dispose()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_or_bad_token_is_refused_and_logged(client) -> None:  # type: ignore[no-untyped-def]
    c, _, db = client
    assert c.get("/api/flags", params={"agency": "demo"}).status_code == 401
    assert c.get("/api/flags", params={"agency": "demo"}, headers=_h("nope")).status_code == 401
    assert [a.action for a in db.audit_entries(actor="anonymous")] == ["denied"]


def test_supervisor_sees_only_flagged_officers_of_own_units(client) -> None:  # type: ignore[no-untyped-def]
    c, t, db = client
    r = c.get("/api/flags", params={"agency": "demo"}, headers=_h(t["sgt"]))
    assert r.status_code == 200
    body = r.json()
    assert body["as_of"] == "2024-01-01"
    assert [f["officer_id"] for f in body["data"]] == ["a1"]
    assert body["data"][0]["rules_fired"] == ["cmpd"]
    assert "3.1 times the average of unit 12" in body["data"][0]["explanation"]
    assert "never a finding" in body["notice"]
    assert [a.officer_id for a in db.audit_entries(actor="sgt.lee")] == ["a1"]
    # another unit's officer: refused, and the refusal is logged
    assert c.get("/api/officers/demo/b1", headers=_h(t["sgt"])).status_code == 403
    assert db.audit_entries(actor="sgt.lee")[-1].action == "denied"
    # another agency's supervisor sees nothing of this one
    assert c.get("/api/flags", params={"agency": "demo"}, headers=_h(t["other"])).status_code == 403


def test_reviewer_sees_all_units_and_the_audit(client) -> None:  # type: ignore[no-untyped-def]
    c, t, _ = client
    r = c.get("/api/flags", params={"agency": "demo", "all_scored": True}, headers=_h(t["auditor"]))
    assert [f["officer_id"] for f in r.json()["data"]] == ["a1", "b1", "a2", "b2"]
    c.get("/api/officers/demo/b1", headers=_h(t["auditor"]))
    log = c.get("/api/audit", params={"officer_id": "b1"}, headers=_h(t["auditor"])).json()
    assert {(e["actor"], e["action"]) for e in log["data"]} == {("auditor", "read")}
    assert c.get("/api/audit", headers=_h(t["sgt"])).status_code == 403
    assert c.get("/api/audit", headers=_h(t["ds"])).status_code == 403


def test_review_is_recorded_validated_and_audited(client) -> None:  # type: ignore[no-untyped-def]
    c, t, db = client
    url = "/api/officers/demo/a1/reviews"
    bad = {"as_of_date": "2024-01-01", "decision": "intervention", "note": "x"}
    assert c.post(url, json=bad, headers=_h(t["sgt"])).status_code == 422
    assert c.post(url, json={**bad, "decision": "fire"}, headers=_h(t["sgt"])).status_code == 422
    ok = {**bad, "intervention": "peer mentoring"}
    assert c.post(url, json=ok, headers=_h(t["auditor"])).status_code == 403
    assert c.post("/api/officers/demo/b1/reviews", json=ok, headers=_h(t["sgt"])).status_code == 403
    r = c.post(url, json=ok, headers=_h(t["sgt"]))
    assert r.status_code == 201, r.text
    detail = c.get("/api/officers/demo/a1", headers=_h(t["sgt"])).json()
    assert [(v["decision"], v["intervention"]) for v in detail["reviews"]] == [
        ("intervention", "peer mentoring")
    ]
    writes = [a for a in db.audit_entries(officer_id="a1") if a.action == "write"]
    assert len(writes) == 1 and writes[0].detail["decision"] == "intervention"
    timely = c.get(
        "/api/reviews/timeliness", params={"agency": "demo"}, headers=_h(t["auditor"])
    ).json()["data"]
    assert [(d["flagged"], d["reviewed"], d["open"]) for d in timely] == [(2, 1, 1)]


def test_page_and_unknown_date(client) -> None:  # type: ignore[no-untyped-def]
    c, t, _ = client
    assert "officers who may need support" in c.get("/").text
    r = c.get("/api/flags", params={"agency": "demo", "as_of": "2020-01-01"}, headers=_h(t["sgt"]))
    assert r.status_code == 404 and "2024-01-01" in r.json()["detail"]


def test_disparities_for_reviewers_only(tmp_path: Path) -> None:
    from ews.contract import write_normalized
    from ews.ingest import ingest_package
    from ews.store import Workspace

    settings = Settings(home=tmp_path / "home")
    officers = pd.DataFrame(
        {"officer_id": ["a1", "a2"], "appointed_date": ["2010-01-01"] * 2, "sex": ["F", "M"]}
    )
    events = pd.DataFrame(
        {
            "event_id": ["e"],
            "officer_id": ["a1"],
            "event_type": ["arrest"],
            "event_date": ["2023-06-01"],
        }
    )
    snap = ingest_package(
        write_normalized(tmp_path / "p", officers, events),
        "demo",
        workspace=Workspace(settings.home),
    ).snapshot
    save_flags("demo", AS_OF, _flags().iloc[:2].assign(snapshot_id=snap.id), settings.home)
    db = AppDatabase(settings.app_database_url)
    auditor = create_user(db, "auditor", "reviewer")
    sgt = create_user(db, "sgt.lee", "supervisor", "demo", ["12"])
    try:
        with TestClient(create_app(settings)) as c:
            r = c.get("/api/audit/disparities", params={"agency": "demo"}, headers=_h(auditor))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["officers"] == 2 and body["outcome_known"] is False
            assert [g["group"] for g in body["by"]["sex"]["groups"]] == ["F", "M"]
            denied = c.get("/api/audit/disparities", params={"agency": "demo"}, headers=_h(sgt))
            assert denied.status_code == 403
    finally:
        db.dispose()
