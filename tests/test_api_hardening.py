"""The attacks of issue 15 (items 3, 4, 6, 7) replayed against the service: each test here
failed on the code before the fix.

Sessions: a captured page cookie is no API key, sign-out / revoke / disable / rotate / idle /
absolute expiry end a session, a cross-site sign-in form is refused. The limiter: rotating
X-Forwarded-For gives no extra guesses, a valid token is never refused for others' failures.
Security headers on every route. Every refusal is one audit entry (a client's repeated ones
summarized); report rebuilds single-flight and limited; the chain status scoped to the
agency; supervisors see flagged officers only; rotate keeps the expiry; bad form dates 422.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.app import create_app
from ews.db import AuditLog, User
from tests._service import NEW, World, auth, build_world, served_in_thread

SAME_SITE = {"Origin": "http://testserver"}


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build_world(tmp_path / "home", db_url)
    with TestClient(create_app(w.settings)) as c:
        yield c, w
    w.db.dispose()


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[tuple[TestClient, World]]:
    w = build_world(tmp_path / "home", f"sqlite:///{tmp_path / 'app.db'}")
    with TestClient(create_app(w.settings)) as c:
        yield c, w
    w.db.dispose()


def _signin(c: TestClient, w: World, who: str) -> tuple[str, str]:
    """Sign in through the page: (the session cookie, the page's CSRF token)."""
    r = c.post("/signin", data={"token": w.tokens[who]}, headers=SAME_SITE)
    assert r.status_code == 200 and r.url.path == "/flags", r.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text).group(1)  # type: ignore[union-attr]
    return str(c.cookies.get("ews_session")), csrf


def _opens_flags(app: Any, cookie: str) -> bool:
    other = TestClient(app, follow_redirects=False)  # no lifespan: the app's database stays
    other.cookies.set("ews_session", cookie)
    r = other.get("/flags")
    assert r.status_code in (200, 303), r.status_code
    return r.status_code == 200


def _count(w: World, **where: Any) -> int:
    with w.db.session() as s:
        q = select(func.count()).select_from(AuditLog)
        for k, v in where.items():
            q = q.where(getattr(AuditLog, k) == v)
        return int(s.scalar(q) or 0)


# -- 3. sessions -----------------------------------------------------------------------------


def test_a_captured_cookie_is_no_api_key_and_sign_out_ends_it(world) -> None:  # type: ignore[no-untyped-def]
    from ews.db import WebSession

    c, w = world
    cookie, csrf = _signin(c, w, "sgt12")
    assert cookie != w.tokens["sgt12"]
    # the attack: the cookie replayed on the API, as a bearer token or as the cookie
    assert c.get("/api/me", headers=auth(cookie)).status_code == 401
    assert c.get("/api/me").status_code == 401  # the cookie rides along: not a credential
    # the pages take the session only: a bearer token opens no page
    bare = TestClient(c.app, follow_redirects=False)
    r = bare.get("/flags", headers=auth(w.tokens["sgt12"]))
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    with w.db.session() as s:  # stored hashed, bound to the user
        row = s.scalars(select(WebSession)).one()
        assert cookie not in (row.session_sha256,) and len(row.session_sha256) == 64
    assert _opens_flags(c.app, cookie)
    assert c.post("/signout", data={"csrf": csrf}).url.path == "/signin"
    # the attack: the same cookie after sign-out
    assert not _opens_flags(c.app, cookie)


def test_cookie_flags_and_login_csrf(sqlite_world) -> None:  # type: ignore[no-untyped-def]
    c, w = sqlite_world
    data = {"token": w.tokens["sgt12"]}
    plain = TestClient(c.app, follow_redirects=False)
    if True:
        # the attack: another site's page posts the sign-in form (login CSRF)
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Referer": "https://evil.example/x"},
            {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
            {},
        ):
            r = plain.post("/signin", data=data, headers=headers)
            assert r.status_code == 403 and "set-cookie" not in r.headers, headers
        for headers in (
            SAME_SITE,
            {"Referer": "http://testserver/signin"},
            {"Sec-Fetch-Site": "same-origin"},
        ):
            r = plain.post("/signin", data=data, headers=headers)
            assert r.status_code == 303, headers
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert "secure" not in cookie  # served over http here
    tls = TestClient(c.app, base_url="https://testserver", follow_redirects=False)
    if True:
        r = tls.post("/signin", data=data, headers={"Origin": "https://testserver"})
        assert r.status_code == 303 and "; secure" in r.headers["set-cookie"].lower()
    assert _count(w, action="refused", resource="/signin") == 5


@pytest.mark.parametrize("end", ["revoke", "disable", "rotate", "idle", "absolute"])
def test_sessions_end(world, end: str) -> None:  # type: ignore[no-untyped-def]
    from api.security import revoke_token, rotate_token, set_active
    from ews.db import WebSession

    c, w = world
    cookie, _ = _signin(c, w, "sgt12")
    other, _ = _signin(c, w, "sgt7")
    assert _opens_flags(c.app, cookie)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if end == "revoke":
        revoke_token(w.db, "sgt.lee")
    elif end == "disable":
        set_active(w.db, "sgt.lee", False)
        set_active(w.db, "sgt.lee", True)  # enabling again does not revive the session
    elif end == "rotate":
        rotate_token(w.db, "sgt.lee")
    else:
        column = "last_seen_at" if end == "idle" else "expires_at"
        back = dt.timedelta(minutes=31) if end == "idle" else dt.timedelta(seconds=1)
        with w.db.write() as s:
            s.execute(update(WebSession).values({column: now - back}))
    assert not _opens_flags(c.app, cookie)
    assert _opens_flags(c.app, other) is (end not in ("idle", "absolute"))


def test_sessions_expired_long_ago_are_deleted(sqlite_world) -> None:  # type: ignore[no-untyped-def]
    from ews.db import WebSession

    c, w = sqlite_world
    _signin(c, w, "sgt12")
    long_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=31)
    with w.db.write() as s:
        s.execute(update(WebSession).values(expires_at=long_ago))
    _signin(c, w, "sgt7")
    with w.db.session() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 1


# -- 4. the limiter --------------------------------------------------------------------------


@pytest.mark.parametrize("proxies", ["", "127.0.0.1"])
def test_forwarded_for_gives_no_extra_guesses(tmp_path: Path, proxies: str) -> None:
    """Served as `ews serve` serves (api.server.uvicorn_options): from 127.0.0.1, rotating
    X-Forwarded-For gave unlimited guesses and audit rows; a valid token from an address with
    10 failures got 429."""
    from api.server import uvicorn_options

    w = build_world(tmp_path / "home", f"sqlite:///{tmp_path / 'app.db'}")
    with (
        served_in_thread(create_app(w.settings), **uvicorn_options(proxies)) as base,
        httpx.Client(base_url=base) as h,
    ):
        codes = [
            h.get(
                "/api/me",
                headers={
                    "Authorization": f"Bearer g{i:04d}-guess-xxxxxxxxxxxxxxxxx",
                    "X-Forwarded-For": f"10.9.{i // 250}.{i % 250}",
                },
            ).status_code
            for i in range(30)
        ]
        valid = h.get("/api/me", headers=auth(w.tokens["sgt12"]) | {"X-Forwarded-For": "10.9.0.1"})
        if proxies:  # a listed proxy: each forwarded address is a client of its own
            assert codes == [401] * 30
        else:  # the address the server sees: ten guesses, then refused
            assert codes == [401] * 10 + [429] * 20
        assert valid.status_code == 200, valid.text
        # the same guesses under one forwarded address are limited behind the proxy too
        spoof = {"X-Forwarded-For": "10.8.8.8"}
        more = [
            h.get("/api/me", headers=auth(f"other-guess-{i:04d}-xxxxxxxxxxx") | spoof)
            for i in range(12)
        ]
        assert more[-1].status_code == 429
    try:
        failed = _count(w, action="sign_in_failed")
        assert failed == (10 if not proxies else 30 + 10)
        # what was not written one by one is in summaries (written when the service stopped)
        with w.db.session() as s:
            summaries = list(
                s.scalars(select(AuditLog).where(AuditLog.action == "refusals_summarized"))
            )
        held = sum(e.detail["refusals"] for e in summaries)
        assert failed + held == 30 + 12
    finally:
        w.db.dispose()


def test_a_guess_at_a_known_prefix_is_limited_but_its_owner_is_not(sqlite_world) -> None:  # type: ignore[no-untyped-def]
    c, w = sqlite_world
    token = w.tokens["reviewer"]
    for i in range(10):  # guesses sharing the user's prefix, from this address
        c.get("/api/me", headers=auth(token[:8] + f"guess{i:02d}" + "x" * 20))
    # a fresh guess is refused without a lookup; the owner's token is served
    assert c.get("/api/me", headers=auth("unrelated-guess-xxxxxxxxxxxx")).status_code == 429
    assert c.get("/api/me", headers=auth(token)).status_code == 200


# -- 6. security headers ---------------------------------------------------------------------

SAMPLE = {
    "agency": "demo",
    "officer_id": "a1",
    "run_id": "1",
    "path": "ews.css",
}


def _check_headers(path: str, r: httpx.Response) -> None:
    h = r.headers
    csp = h.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, (path, r.status_code, csp)
    script = re.search(r"script-src ([^;]*)", csp)
    assert script is None or "unsafe-inline" not in script.group(1), (path, csp)
    assert "default-src 'none'" in csp, path
    assert h.get("x-frame-options") == "DENY", path
    assert h.get("x-content-type-options") == "nosniff", path
    assert h.get("referrer-policy") == "no-referrer", path
    if not path.startswith(("/static/", "/static-docs/")):
        assert h.get("cache-control") == "no-store", (path, r.status_code)


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the app, included routers walked into."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount, Route

    for route in routes:
        if isinstance(route, Mount):
            yield (
                "GET",
                prefix
                + route.path
                + ("/ews.css" if route.path == "/static" else "/swagger-ui.css"),
            )
        elif isinstance(route, (APIRoute, Route)):
            for method in sorted(route.methods or {"GET"}):
                yield method, prefix + route.path
        else:  # an included router (FastAPI's wrapper of it)
            included = route.include_context
            yield from _routes(route.original_router.routes, prefix + included.prefix)


def test_every_route_has_the_security_headers(sqlite_world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from models.audit_report import workspace_folder

    c, w = sqlite_world
    _signin(c, w, "admin")  # the pages by session; the API by token
    headers = auth(w.tokens["admin"])
    # a stored audit report, served by the pages as it was written (inline styles only)
    folder = workspace_folder("demo", w.settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit-report-demo.html").write_text(
        "<html><head><style>p{}</style></head><body><p>the report</p></body></html>"
    )
    import api.pages_report

    state = {"building": None, "failed": None, "stored": True}  # kept built, not stale
    monkeypatch.setattr(api.pages_report, "_status", lambda *a, **k: state)
    requests = [
        (method, re.sub(r"{(\w+)(:\w+)?}", lambda m: SAMPLE.get(m.group(1), "x"), path))
        for method, path in _routes(c.app.routes)
    ]
    requests += [
        ("GET", "/no-such-page"),
        ("DELETE", "/api/me"),
        ("GET", "/api/officers/demo/a%001"),
    ]
    requests.sort(key=lambda m: m[1] == "/signout")  # sign out last
    seen = set()
    for method, path in requests:
        r = c.request(method, path, headers=headers, follow_redirects=False)
        assert r.status_code < 500, (method, path, r.status_code)
        _check_headers(path, r)
        seen.add(path)
    report = c.get("/audit-report", params={"agency": "demo"})
    assert report.status_code == 200 and "<p>the report</p>" in report.text
    assert "script-src" not in report.headers["content-security-policy"]  # none at all
    _check_headers("/audit-report", report)
    big = c.post("/api/officers/demo/a1/reviews", content=b"x" * (1024 * 1024 + 1), headers=headers)
    assert big.status_code == 413
    _check_headers("/api/officers/demo/a1/reviews", big)
    assert {"/docs", "/api/flags", "/flags", "/signin", "/static/ews.css"} <= seen
    assert len(seen) >= 30


def test_an_internal_error_carries_the_headers(sqlite_world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import api.routes.audit as audit_routes

    c, w = sqlite_world

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(audit_routes, "json_response", broken)
    c2 = TestClient(c.app, raise_server_exceptions=False)
    r = c2.get("/api/me", headers=auth(w.tokens["admin"]))
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    _check_headers("/api/me", r)


# -- 7. the smaller items --------------------------------------------------------------------


def test_a_bad_date_in_the_review_form_is_422(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    _, csrf = _signin(c, w, "sgt12")
    form = {"csrf": csrf, "as_of_date": "2021-13-45", "status": "under_review"}
    r = c.post("/officers/demo/a1/reviews", data=form)
    assert r.status_code == 422 and "as_of_date" in r.text
    r = c.post("/officers/demo/a1/reviews", data={**form, "as_of_date": "2024-02-30x"})
    assert r.status_code == 422


def test_rotate_keeps_the_expiry(sqlite_world) -> None:  # type: ignore[no-untyped-def]
    from api.security import UserError, create_user, rotate_token

    c, w = sqlite_world
    create_user(w.db, "temp", "reviewer", "demo", expires="90d")

    def expiry() -> dt.datetime | None:
        with w.db.session() as s:
            return s.scalar(select(User.expires_at).where(User.username == "temp"))

    before = expiry()
    assert before is not None
    new = rotate_token(w.db, "temp")
    assert expiry() == before
    assert c.get("/api/me", headers=auth(new)).json()["expires_at"] == before.isoformat()
    rotate_token(w.db, "temp", expires="1h")
    assert expiry() is not None and expiry() < before  # type: ignore[operator]
    rotate_token(w.db, "temp", expires="never")
    assert expiry() is None
    with w.db.write() as s:
        s.execute(
            update(User).where(User.username == "temp").values(expires_at=dt.datetime(2020, 1, 1))
        )
    with pytest.raises(UserError, match="expiry has passed"):
        rotate_token(w.db, "temp")


def test_every_refusal_is_one_audit_entry(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    admin = auth(w.tokens["admin"])
    cases = [
        (401, lambda: c.get("/api/me")),
        (403, lambda: c.get("/api/audit", headers=auth(w.tokens["sgt12"]))),
        (404, lambda: c.get("/api/officers/demo/ghost", headers=admin)),
        (404, lambda: c.get("/api/no-such-route", headers=admin)),
        (405, lambda: c.delete("/api/me", headers=admin)),
        (
            409,
            lambda: c.post(
                "/api/officers/demo/a1/reviews",
                headers=admin,
                json={"as_of_date": NEW.isoformat(), "status": "intervention_completed"},
            ),
        ),
        (
            413,
            lambda: c.post(
                "/api/officers/demo/a1/reviews", headers=admin, content=b"x" * (1024 * 1024 + 1)
            ),
        ),
        (422, lambda: c.get("/api/flags", params={"agency": "demo", "limit": 0}, headers=admin)),
        (422, lambda: c.get("/api/officers/demo/a%001", headers=admin)),
    ]
    for code, call in cases:
        before = _count(w)
        assert call().status_code == code
        assert _count(w) == before + 1, code
    # the 422 names who asked; the entry of a NUL path is storable
    last = c.app.state.db.audit_entries(actor="root")[-1]
    assert last.detail["status"] == 422 and "\\x00" in last.resource
    # 429: ten failures from this client, then refusals; the rest of a flood is summarized
    before = _count(w)
    codes = [
        c.get("/api/me", headers=auth(f"flood-guess-{i:04d}-xxxxxxxxxxx")).status_code
        for i in range(40)
    ]
    assert codes.count(429) == 31  # the 401 above was this client's first failure
    assert _count(w) - before <= 10  # not written one by one
    c.app.state.refusals.flush(w.db)
    with w.db.session() as s:
        summary = s.scalars(select(AuditLog).where(AuditLog.action == "refusals_summarized")).one()
    assert summary.detail["refusals"] + (_count(w) - before - 1) == 40
    assert summary.detail["statuses"].get("429", 0) >= 30


def test_report_rebuilds_are_single_flight_and_limited(sqlite_world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from models import audit_report

    c, w = sqlite_world
    calls: list[bool] = []
    lock = threading.Lock()

    def slow(agency: str, settings: Any, db: Any, rebuild: bool = False) -> dict[str, Any]:
        with lock:
            calls.append(rebuild)
        if rebuild:
            time.sleep(0.5)
        return {"agency": agency, "built": rebuild}

    monkeypatch.setattr(audit_report, "report_figures", slow)
    url, q, h = (
        "/api/audit/report",
        {"agency": "demo", "rebuild": "true"},
        auth(w.tokens["reviewer"]),
    )
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: c.get(url, params=q, headers=h), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert calls.count(True) == 1  # one build served all six
    again = c.get(url, params=q, headers=h)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    assert calls.count(True) == 1
    assert c.get(url, params={"agency": "demo"}, headers=h).status_code == 200  # reads still work
    # the page's rebuild: limited the same way (the build itself runs in the background)
    monkeypatch.setattr(audit_report, "start_refresh", lambda *a, **k: "now")
    _, csrf = _signin(c, w, "reviewer")
    form = {"csrf": csrf, "agency": "demo"}
    assert c.post("/audit-report/rebuild", data=form).status_code == 429  # the API's, just now
    from api.routes.audit import RebuildGate

    c.app.state.rebuilds = RebuildGate()  # minutes later
    first = c.post("/audit-report/rebuild", data=form, follow_redirects=False)
    assert first.status_code == 303
    assert c.post("/audit-report/rebuild", data=form).status_code == 429


def test_chain_status_is_scoped_to_the_agency(world) -> None:  # type: ignore[no-untyped-def]
    c, w = world
    for _ in range(3):
        c.get("/api/flags", params={"agency": "demo"}, headers=auth(w.tokens["sgt12"]))
        c.get("/api/flags", params={"agency": "other"}, headers=auth(w.tokens["reviewer_other"]))
    c.get("/api/flags", params={"agency": "demo"}, headers=auth(w.tokens["sgt12"]))
    whole = c.get("/api/audit/verify", headers=auth(w.tokens["admin"])).json()
    mine = c.get("/api/audit/verify", headers=auth(w.tokens["reviewer_other"])).json()
    assert whole["ok"] and mine["ok"]
    with w.db.session() as s:
        ours = list(
            s.scalars(select(AuditLog).where(AuditLog.agency == "other").order_by(AuditLog.id))
        )
    assert mine["entries"] == len(ours) - 1  # its own verify read is logged after the answer
    assert (mine["head_id"], mine["head_hash"]) == (ours[-2].id, ours[-2].entry_hash)
    assert mine["head_hash"] != whole["head_hash"] and mine["entries"] < whole["entries"]
    assert whole["head_hash"] not in mine["summary"]


def test_supervisors_see_flagged_and_previously_flagged_officers_only(
    tmp_path: Path, db_url: str
) -> None:
    w = build_world(tmp_path / "home", db_url)
    try:
        with TestClient(create_app(w.settings)) as c:
            sgt = auth(w.tokens["sgt12"])
            missing = c.get("/api/officers/demo/ghost", headers=sgt)
            assert c.get("/api/officers/demo/a1", headers=sgt).status_code == 200  # flagged
            assert c.get("/api/officers/demo/m2", headers=sgt).status_code == 200  # was flagged
            # the attack: the score and rank of an unflagged officer of the unit, by id
            a2 = c.get("/api/officers/demo/a2", headers=sgt)
            assert (a2.status_code, a2.json()) == (404, missing.json())
            assert (
                c.get("/api/officers/demo/a2", headers=auth(w.tokens["reviewer"])).status_code
                == 200
            )
        wide = w.settings.model_copy(update={"supervisors_see_all_scored": True})
        with TestClient(create_app(wide)) as c:
            assert c.get("/api/officers/demo/a2", headers=sgt).status_code == 200
    finally:
        w.db.dispose()
