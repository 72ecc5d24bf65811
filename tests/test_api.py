"""The service: who may see what, the review workflow, sign-in, bad input, and the audit of
every access, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from ews.db import AuditLog, Review
from tests._service import NEW, OLD, World, auth, build_world


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build_world(tmp_path / "home", db_url)
    with TestClient(create_app(w.settings)) as c:
        yield c, w
    w.db.dispose()


def _get(c: TestClient, w: World, who: str, url: str, **params: object):  # type: ignore[no-untyped-def]
    return c.get(url, params=params, headers=auth(w.tokens[who]))


def _entries(w: World, **where: str) -> list[AuditLog]:
    with w.db.session() as s:
        q = select(AuditLog).order_by(AuditLog.id)
        for k, v in where.items():
            q = q.where(getattr(AuditLog, k) == v)
        return list(s.scalars(q))


def test_supervisor_list_is_the_current_units_flagged_officers(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    r = _get(c, w, "sgt12", "/api/flags", agency="demo")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"] == NEW.isoformat() and "never a finding" in body["notice"]
    assert [f["officer_id"] for f in body["data"]] == ["a1"]
    assert body["data"][0]["rules_fired"] == ["cmpd"] and body["data"][0]["status"] == "new"
    # at the old date: officers CURRENTLY in unit 12 only: a1 yes, m1 (moved out) no,
    # m2 (moved in, flagged then in unit 7) yes
    old = _get(c, w, "sgt12", "/api/flags", agency="demo", as_of=OLD.isoformat()).json()
    assert [f["officer_id"] for f in old["data"]] == ["m2", "a1"]
    assert [f["current_unit"] for f in old["data"]] == ["12", "12"]
    # one audit entry per request, naming the officers shown
    reads = [e for e in _entries(w, actor="sgt.lee") if e.action == "read"]
    assert [e.detail["officers"] for e in reads] == [["a1"], ["m2", "a1"]]
    # all_scored is not a supervisor's view
    assert _get(c, w, "sgt12", "/api/flags", agency="demo", all_scored=True).status_code == 403


def test_filters_and_paging(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    allf = _get(c, w, "reviewer", "/api/flags", agency="demo", all_scored=True).json()
    assert [f["officer_id"] for f in allf["data"]] == ["a1", "m1", "b1", "m2", "b2", "a2"]
    page = _get(c, w, "reviewer", "/api/flags", agency="demo", all_scored=True, limit=2, offset=2)
    assert [f["officer_id"] for f in page.json()["data"]] == ["b1", "m2"]
    assert page.json()["total"] == 6
    unit7 = _get(c, w, "reviewer", "/api/flags", agency="demo", unit="7").json()
    assert [f["officer_id"] for f in unit7["data"]] == ["m1", "b1"]
    new = _get(c, w, "reviewer", "/api/flags", agency="demo", status="new").json()
    assert new["total"] == 3
    assert _get(c, w, "reviewer", "/api/flags", agency="demo", limit=0).status_code == 422


def _cached(c: TestClient, officer: str) -> bool:
    """Whether the officer page's cache holds the record of ``officer`` of agency demo."""
    return any(k[:3] == ("officer", "demo", officer) for k in c.app.state.officer_cache._items)  # type: ignore[attr-defined]


def test_a_cached_record_is_refused_like_a_missing_one(world) -> None:  # type: ignore[no-untyped-def]
    """The attack on the officer page's cache: what supervisor A's request left in it,
    supervisor B (another unit) and another agency's reviewer ask for, and each gets the
    404 of an officer that does not exist, with the same audit entry; a review step or a
    new scoring run shows at once."""
    from ews.flagstore import save_flags
    from tests._service import flags_frame

    c, w = world
    url = "/api/officers/demo/a1"
    first = _get(c, w, "sgt12", url)
    assert first.status_code == 200 and _cached(c, "a1")
    assert _get(c, w, "sgt12", url).content == first.content  # served from the cache
    for who in ("sgt7", "reviewer_other"):
        for params in ({}, {"as_of": NEW.isoformat()}, {"as_of": OLD.isoformat()}):
            cached = _get(c, w, who, url, **params)
            missing = _get(c, w, who, "/api/officers/demo/nobody", **params)
            assert cached.status_code == missing.status_code == 404
            assert cached.content == missing.content == b'{"detail":"not found"}'
            assert cached.headers == missing.headers
    assert _cached(c, "a1")  # the refusals above were decided on the cached record
    for actor in ("sgt.ray", "auditor.other"):
        refused = _entries(w, actor=actor)
        assert len(refused) == 6 and {e.action for e in refused} == {"not_found"}
        pairs = [(refused[i], refused[i + 1]) for i in range(0, 6, 2)]
        assert all(a.detail == b.detail and a.agency == b.agency for a, b in pairs)
    # a review step by A is on the page at once
    step = c.post(
        url + "/reviews",
        json={"as_of_date": NEW.isoformat(), "status": "under_review"},
        headers=auth(w.tokens["sgt12"]),
    )
    assert step.status_code == 201, step.text
    assert _get(c, w, "sgt12", url).json()["status"] == "under_review"
    # a new run that moves a1 to unit 7: A loses the officer at once, B sees them
    save_flags(
        "demo",
        dt.date(2024, 6, 1),
        flags_frame([("a1", "7", 0.9, True), ("b1", "7", 0.7, True)]),
        home=w.settings.home,
        db=w.db,
    )
    assert _get(c, w, "sgt12", url).status_code == 404
    assert _get(c, w, "sgt7", url).json()["as_of"] == "2024-06-01"


def test_moved_officer_leaves_the_old_supervisors_view(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    missing = _get(c, w, "sgt12", "/api/officers/demo/nobody")
    assert missing.status_code == 404
    for as_of in (None, OLD.isoformat(), NEW.isoformat()):
        params = {"as_of": as_of} if as_of else {}
        r = _get(c, w, "sgt12", "/api/officers/demo/m1", **params)
        assert (r.status_code, r.json()) == (404, missing.json())
        post = c.post(
            "/api/officers/demo/m1/reviews",
            json={"as_of_date": OLD.isoformat(), "status": "under_review"},
            headers=auth(w.tokens["sgt12"]),
        )
        assert (post.status_code, post.json()) == (404, missing.json())
    # the new unit's supervisor sees the officer, old flags included
    r = _get(c, w, "sgt7", "/api/officers/demo/m1", as_of=OLD.isoformat())
    assert r.status_code == 200
    body = r.json()
    assert body["flag"]["unit"] == "12" and [h["as_of"] for h in body["history"]] == [
        OLD.isoformat(),
        NEW.isoformat(),
    ]
    refusals = [e for e in _entries(w, actor="sgt.lee") if e.action == "not_found"]
    assert len(refusals) == 7  # every 404 is logged, the missing officer's too
    with w.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Review)) == 0


def test_other_agency_reviewer_sees_nothing_of_this_agency(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    missing = _get(c, w, "reviewer_other", "/api/flags", agency="nowhere")
    assert missing.status_code == 404
    for url, params in (
        ("/api/flags", {"agency": "demo"}),
        ("/api/officers/demo/a1", {}),
        ("/api/audit", {"agency": "demo"}),
        ("/api/audit/disparities", {"agency": "demo"}),
        ("/api/reviews/timeliness", {"agency": "demo"}),
    ):
        r = _get(c, w, "reviewer_other", url, **params)
        assert (r.status_code, r.json()) == (404, missing.json()), url
    # its audit view holds its own agency's entries only
    _get(c, w, "sgt12", "/api/flags", agency="demo")
    log = _get(c, w, "reviewer_other", "/api/audit").json()["data"]
    assert log and {e["agency"] for e in log} == {"other"}
    agencies = _get(c, w, "reviewer_other", "/api/agencies").json()["data"]
    assert [a["agency"] for a in agencies] == ["other"]


def test_sign_in_failures_are_one_401_logged_and_slowed(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    bodies = set()
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer not-a-token-but-long-enough"},
    ):
        r = c.get("/api/me", headers=headers)
        assert r.status_code == 401
        bodies.add(r.text)
    assert len(bodies) == 1
    fails = _entries(w, actor="anonymous")
    assert len(fails) == 5 and {e.action for e in fails} == {"sign_in_failed"}
    for _ in range(5):
        c.get("/api/me", headers={"Authorization": "Bearer wrong-token-guessing-xxxx"})
    # ten failures from this address: guesses are refused before any lookup...
    r = c.get("/api/me", headers={"Authorization": "Bearer another-guess-from-here-xx"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # ...but a user's valid token from the same address is never refused for them
    assert c.get("/api/me", headers=auth(w.tokens["sgt12"])).status_code == 200


def test_token_revoke_disable_rotate_expire(world) -> None:  # type: ignore[no-untyped-def]
    """Each change takes effect once the token cache's bound (EWS_TOKEN_CACHE_SECONDS) has
    passed, on a clock the test moves; an expiry takes effect at once."""
    from api.security import create_user, revoke_token, rotate_token, set_active

    c, w = world
    cache, now = c.app.state.token_cache, [0.0]
    cache.clock = lambda: now[0]
    bound = w.settings.token_cache_seconds
    assert 0 < bound <= 5

    def later() -> None:
        now[0] += bound

    ok = auth(w.tokens["ds"])
    assert c.get("/api/me", headers=ok).status_code == 200
    set_active(w.db, "ds", False)
    later()
    assert c.get("/api/me", headers=ok).status_code == 401
    set_active(w.db, "ds", True)
    assert c.get("/api/me", headers=ok).status_code == 200
    revoke_token(w.db, "ds")
    later()
    assert c.get("/api/me", headers=ok).status_code == 401
    new = rotate_token(w.db, "ds", expires="1h")
    me = c.get("/api/me", headers=auth(new)).json()
    assert me["username"] == "ds" and me["expires_at"] is not None
    gone = create_user(w.db, "short", "reviewer", "demo", expires="1h")
    assert c.get("/api/me", headers=auth(gone)).status_code == 200  # now cached
    with w.db.write() as s:
        from ews.db import User

        s.scalar(select(User).where(User.username == "short")).expires_at = OLD  # type: ignore[union-attr]
    later()
    assert c.get("/api/me", headers=auth(gone)).status_code == 401
    why = [e.detail["why"] for e in _entries(w, actor="anonymous")]
    assert why == ["user disabled", "unknown token", "token expired"]


def _step(c: TestClient, w: World, who: str, officer: str, key: str | None = None, **body: object):  # type: ignore[no-untyped-def]
    headers = auth(w.tokens[who]) | ({"Idempotency-Key": key} if key else {})
    payload = {"as_of_date": NEW.isoformat(), **body}
    return c.post(f"/api/officers/demo/{officer}/reviews", json=payload, headers=headers)


def test_review_workflow(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    r = _step(c, w, "sgt12", "a1", status="intervention_completed")
    assert r.status_code == 409 and "allowed: under_review, dismissed" in r.json()["detail"]
    assert _step(c, w, "sgt12", "a1", status="under_review").status_code == 201
    again = _step(c, w, "sgt12", "a1", status="under_review")
    assert again.status_code == 200  # the same step repeated: no duplicate
    bad = _step(c, w, "sgt12", "a1", status="intervention_assigned", intervention_type="training")
    assert bad.status_code == 422 and "due_date" in bad.json()["detail"]
    step = {
        "status": "intervention_assigned",
        "intervention_type": "peer_support",
        "due_date": "2024-02-01",
        "note": "pairing with a field training officer",
        "factor_feedback": [{"factor": "force_180d_count", "agree": True, "comment": "seen"}],
    }
    first = _step(c, w, "sgt12", "a1", key="k-1", **step)
    assert first.status_code == 201
    replay = _step(c, w, "sgt12", "a1", key="k-1", **step)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    reused = _step(c, w, "sgt12", "a1", key="k-1", status="dismissed", reason="x")
    assert reused.status_code == 409
    done = _step(c, w, "sgt12", "a1", status="intervention_completed")
    assert done.status_code == 201
    assert _step(c, w, "sgt12", "a1", status="dismissed", reason="late").status_code == 409
    page = _get(c, w, "sgt12", "/api/officers/demo/a1").json()
    assert page["status"] == "intervention_completed" and page["allowed_next"] == []
    assert [v["status"] for v in page["reviews"]] == [
        "under_review",
        "intervention_assigned",
        "intervention_completed",
    ]
    assert page["reviews"][1]["factor_feedback"][0]["agree"] is True
    writes = [e for e in _entries(w, officer_id="a1") if e.action == "write"]
    assert [(e.detail["from"], e.detail["to"]) for e in writes] == [
        ("new", "under_review"),
        ("under_review", "intervention_assigned"),
        ("intervention_assigned", "intervention_completed"),
    ]
    # dismissal needs a reason; unflagged officers are not reviewed (but by admins)
    assert _step(c, w, "sgt7", "b1", status="dismissed").status_code == 422
    assert _step(c, w, "sgt7", "b1", status="dismissed", reason="known issue").status_code == 201
    # a2 was never flagged: not in a supervisor's view (the 404 of a missing officer)
    assert _step(c, w, "sgt12", "a2", status="under_review").status_code == 404
    assert _step(c, w, "sgt12", "a2", status="under_review", all_scored=True).status_code == 403
    assert _step(c, w, "admin", "a2", status="under_review", all_scored=True).status_code == 201
    assert _step(c, w, "reviewer", "a1", status="under_review").status_code == 403
    timely = _get(c, w, "reviewer", "/api/reviews/timeliness", agency="demo").json()
    new = [d for d in timely["data"] if d["as_of"] == NEW.isoformat()][0]
    assert (new["flagged"], new["reviewed"], new["open"]) == (3, 2, 1)
    assert new["by_status"] == {"intervention_completed": 1, "dismissed": 1, "new": 1}
    assert timely["interventions_by_type"] == {"peer_support": 1}


def test_review_and_its_audit_entry_commit_together(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import api.routes.officers as officers

    c, w = world

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit storage failed")

    monkeypatch.setattr(officers, "append", broken)
    c2 = TestClient(c.app, raise_server_exceptions=False)
    r = _step(c2, w, "sgt12", "a1", status="under_review")
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    with w.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Review)) == 0


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/officers/demo/" + "x" * 201, None),
        ("GET", "/api/officers/demo/a%001", None),
        ("GET", "/api/officers/" + "d" * 65 + "/a1", None),
        ("GET", "/api/flags?agency=../../outside", None),
        ("GET", "/api/flags?agency=demo&unit=" + "u" * 201, None),
        ("POST", "/api/officers/demo/a1/reviews", {"as_of_date": "2024-01-01", "status": "x"}),
        (
            "POST",
            "/api/officers/demo/a1/reviews",
            {"as_of_date": "2024-01-01", "status": "under_review", "note": "n" * 4001},
        ),
        (
            "POST",
            "/api/officers/demo/a1/reviews",
            {"as_of_date": "2024-01-01", "status": "under_review", "note": "a\u0000b"},
        ),
        (
            "POST",
            "/api/officers/demo/a1/reviews",
            {"as_of_date": "2024-01-01", "status": "under_review", "extra": 1},
        ),
    ],
)
def test_bad_input_is_4xx_never_500(world, method: str, url: str, body: object) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    r = c.request(method, url, json=body, headers=auth(w.tokens["admin"]))
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"detail"}


def test_lone_surrogate_and_oversized_body(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    url = "/api/officers/demo/a1/reviews"
    raw = b'{"as_of_date": "2024-01-01", "status": "under_review", "note": "\\ud800"}'
    headers = auth(w.tokens["sgt12"]) | {"Content-Type": "application/json"}
    r = c.post(url, content=raw, headers=headers)
    assert r.status_code == 422, r.text
    big = b'{"note": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = c.post(url, content=big, headers=headers)
    assert r.status_code == 413 and r.json() == {"detail": "the request body is over 1 MiB"}

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 100_000

    r = c.post(url, content=chunks(), headers=headers)
    assert r.status_code == 413
    with w.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Review)) == 0


def test_docs_work_offline_and_errors_are_declared(world) -> None:  # type: ignore[no-untyped-def]
    c, _ = world
    html = c.get("/docs").text
    assert "cdn" not in html.lower() and "/static-docs/swagger-ui-bundle.js" in html
    js = c.get("/static-docs/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    spec = c.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert {"401", "404", "422"} <= set(op["responses"]), path
    assert "Sign in" in c.get("/").text  # the pages start at the sign-in form


def _disparity_world(tmp_path: Path, officers: Any) -> tuple[Any, Any, str]:
    """An agency of two scored officers with an ingested snapshot: (settings, db, reviewer)."""
    import pandas as pd

    from api.security import create_user
    from ews.contract import write_normalized
    from ews.db import AppDatabase
    from ews.flagstore import save_flags
    from ews.ingest import ingest_package
    from ews.settings import Settings
    from ews.store import Workspace
    from tests._service import flags_frame

    settings = Settings(home=tmp_path / "home")
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
    db = AppDatabase(settings.app_database_url)
    frame = flags_frame([("a1", "12", 0.9, True), ("a2", "12", 0.1, False)])
    save_flags("demo", NEW, frame.assign(snapshot_id=snap.id), settings.home, db=db)
    return settings, db, create_user(db, "auditor", "reviewer")


def test_disparities_for_reviewers_only(tmp_path: Path) -> None:
    import pandas as pd

    from api.security import create_user

    officers = pd.DataFrame(
        {"officer_id": ["a1", "a2"], "appointed_date": ["2010-01-01"] * 2, "sex": ["F", "M"]}
    )
    settings, db, auditor = _disparity_world(tmp_path, officers)
    sgt = create_user(db, "sgt.lee", "supervisor", "demo", ["12"])
    try:
        with TestClient(create_app(settings)) as c:
            r = c.get("/api/audit/disparities", params={"agency": "demo"}, headers=auth(auditor))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["officers"] == 2 and body["outcome_known"] is False
            assert [g["group"] for g in body["by"]["sex"]["groups"]] == ["F", "M"]
            denied = c.get("/api/audit/disparities", params={"agency": "demo"}, headers=auth(sgt))
            assert denied.status_code == 403
            assert body["in_sample"] is None  # model ews-demo v3 is not in the registry
    finally:
        db.dispose()


def test_disparities_refuse_in_sample_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from models import registry

    officers = pd.DataFrame({"officer_id": ["a1", "a2"], "appointed_date": ["2010-01-01"] * 2})
    settings, db, auditor = _disparity_world(tmp_path, officers)
    cutoff = (NEW + dt.timedelta(days=365)).isoformat()
    monkeypatch.setattr(
        registry, "version_tags", lambda n, v, uri=None: {"ews.label_known_by": cutoff}
    )
    try:
        with TestClient(create_app(settings)) as c:
            url, q = "/api/audit/disparities", {"agency": "demo"}
            refused = c.get(url, params=q, headers=auth(auditor))
            assert refused.status_code == 409, refused.text
            assert "in-sample" in refused.json()["detail"] and cutoff in refused.json()["detail"]
            ok = c.get(url, params={**q, "allow_in_sample": "true"}, headers=auth(auditor))
            assert ok.status_code == 200 and ok.json()["in_sample"] is True
    finally:
        db.dispose()


def test_a_missing_run_is_prepared_once_for_concurrent_requests() -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from api.routes.flags import Prepared, RunCache

    cache, calls, lock = RunCache(), [], threading.Lock()

    def build() -> Prepared:
        with lock:
            calls.append(1)
        time.sleep(0.2)
        return Prepared([], {"id": 1})

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache.get_or_build(("a", 1), build), range(8)))
    assert len(calls) == 1 and all(g is got[0] for g in got)


def test_start_up_prepares_each_agencys_newest_flags(tmp_path: Path, db_url: str) -> None:
    """The first flag-list request of an agency is answered from what start-up prepared
    (the event loop's cache-only read finds it), not built while other requests wait; a
    database with no agency starts all the same."""
    from api.routes.flags import _cached_rows, data_version

    w = build_world(tmp_path / "home", db_url)
    app = create_app(w.settings)
    with TestClient(app):
        with w.db.read_conn() as s:
            version = data_version(s, "demo")
        day, prepared = _cached_rows(app.state.run_cache, "demo", None, dt.date.today(), version)
        assert day == NEW and len(prepared.rows) > 0
    w.db.dispose()
