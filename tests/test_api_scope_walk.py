"""An attacker's walk: every route of the OpenAPI document, as a supervisor of unit 12, a
reviewer of another agency and a data scientist, over officers of another unit, officers who
moved between units, unflagged officers and another agency's officers, at every date. Outside
one's scope the answer must be exactly the answer for a record that does not exist, and no
response, audit entry or review may touch an officer outside the scope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from ews.db import AuditLog, Review
from tests._service import NEW, OLD, World, auth, build_world

# (agency, officer) of every officer in the world
OFFICERS = [("demo", o) for o in ("a1", "a2", "b1", "b2", "m1", "m2")] + [("other", "x1")]
# who may see whom now (current unit 12: a1, a2, m2; current unit 7: b1, b2, m1); of their
# units, supervisors see the officers flagged at some date (a2 never was)
SCOPE = {
    "sgt12": {("demo", o) for o in ("a1", "m2")},
    "reviewer_other": {("other", "x1")},
    "ds": {("demo", o) for o in ("a1", "a2", "b1", "b2", "m1", "m2")},
}
MISSING = "ghost"


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build_world(tmp_path / "home", db_url)
    with TestClient(create_app(w.settings), raise_server_exceptions=False) as c:
        yield c, w
    w.db.dispose()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            names = [p["name"] for p in op.get("parameters", []) if p["in"] in ("path", "query")]
            ops.append((method.upper(), path, names))
    return ops


def _request(
    c: TestClient,
    token: str,
    method: str,
    path: str,
    names: list[str],
    agency: str,
    officer: str,
    as_of: str | None,
) -> tuple[int, str]:
    url = path.replace("{agency}", agency).replace("{officer_id}", officer)
    params = {}
    if "agency" in names and "{agency}" not in path:
        params["agency"] = agency
    if "officer_id" in names and "{officer_id}" not in path:
        params["officer_id"] = officer
    if "as_of" in names and as_of:
        params["as_of"] = as_of
    if "all_scored" in names:
        params["all_scored"] = "true"
    body = None
    if method == "POST":
        body = {"as_of_date": as_of or NEW.isoformat(), "status": "under_review"}
    r = c.request(method, url, params=params, json=body, headers=auth(token))
    return r.status_code, r.text


def test_walk_every_route_outside_scope(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    ops = _operations(c.get("/openapi.json").json())
    assert len(ops) >= 9
    before_reviews = _reviews(w)
    walked = refused = 0
    server_errors = []
    for who, visible in SCOPE.items():
        token = w.tokens[who]
        for method, path, names in ops:
            if "agency" not in names and "officer_id" not in names:
                continue
            for as_of in (None, OLD.isoformat(), NEW.isoformat()):
                missing = {
                    a: _request(c, token, method, path, names, a, MISSING, as_of)
                    for a in ("demo", "other", "nowhere")
                }
                for agency, officer in OFFICERS:
                    answer = _request(c, token, method, path, names, agency, officer, as_of)
                    walked += 1
                    if answer[0] >= 500:
                        server_errors.append((who, method, path, agency, officer, answer))
                    if (agency, officer) in visible:
                        continue
                    # per-officer routes: exactly the missing officer's answer; agency-level
                    # routes of an agency outside the scope: the missing agency's answer
                    agency_level = "{officer_id}" not in path and "officer_id" not in names
                    if agency_level and any(a == agency for a, _ in visible):
                        continue
                    expected = missing["nowhere"] if agency_level else missing[agency]
                    assert answer == expected, (who, method, path, agency, officer, as_of)
                    refused += 1
    assert not server_errors, server_errors[:5]
    print(f"scope walk: {walked} requests, {refused} outside scope, all answered as missing")
    assert refused > 100
    # 0 writes outside scope
    after = _reviews(w)
    new = after - before_reviews
    for who, visible in SCOPE.items():
        name = {"sgt12": "sgt.lee", "reviewer_other": "auditor.other", "ds": "ds"}[who]
        assert {(a, o) for r, a, o in new if r == name} <= visible
    # 0 reads outside scope, in the audit log's own account of what each user was shown
    with w.db.session() as s:
        entries = list(s.scalars(select(AuditLog).where(AuditLog.action == "read")))
    for e in entries:
        who = {"sgt.lee": "sgt12", "auditor.other": "reviewer_other", "ds": "ds"}.get(e.actor)
        if who is None:
            continue
        shown = set(e.detail.get("officers", [])) | ({e.officer_id} if e.officer_id else set())
        agency = e.agency or ""
        assert {(agency, o) for o in shown} <= SCOPE[who], (e.actor, e.resource, shown)


def test_lists_never_show_officers_outside_scope(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    for who, visible in SCOPE.items():
        for agency in ("demo", "other"):
            for as_of in (OLD.isoformat(), NEW.isoformat()):
                params = {"agency": agency, "as_of": as_of}
                if who != "sgt12":
                    params["all_scored"] = "true"
                r = c.get("/api/flags", params=params, headers=auth(w.tokens[who]))
                if r.status_code != 200:
                    continue
                shown = {(agency, f["officer_id"]) for f in r.json()["data"]}
                assert shown <= visible, (who, agency, as_of, shown - visible)
        text = json.dumps(c.get("/api/audit", headers=auth(w.tokens["reviewer_other"])).json())
        assert '"demo"' not in text


def _reviews(w: World) -> set[tuple[str, str, str]]:
    with w.db.session() as s:
        return {(r.reviewer, r.agency, r.officer_id) for r in s.scalars(select(Review))}
