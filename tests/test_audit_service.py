"""The audit trail under a served app (uvicorn on a free port, real HTTP): what one client
sends never fails another client's request (issue 15, item 1), and on PostgreSQL the
service's pools fit the server's max_connections (item 5)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from ews.audit import verify
from tests._service import World, auth, build_world, served_in_thread


def serve(w: World) -> AbstractContextManager[str]:
    """The app of ``w`` served by uvicorn in a thread; its base URL."""
    return served_in_thread(create_app(w.settings))


def _status(call: object, i: int) -> int | str:
    """The status of one request, or the error that kept it from having one."""
    try:
        return call(i)  # type: ignore[operator]
    except httpx.HTTPError as e:
        return f"error:{type(e).__name__}"


def _signed_in(base: str, token: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=60)
    r = c.post("/signin", data={"token": token}, headers={"Origin": base})
    assert r.status_code == 303, r.text
    return c


@pytest.mark.postgres
def test_nul_probes_fail_no_other_request(tmp_path: Path, pg_url: str) -> None:
    """20 NUL probes (a failed sign-in whose path holds NUL, and signed-in pages with NUL in
    the path and in a filter) among 200 concurrent reads: every read answers 200, no probe
    answers 500, and the chain verifies with the probes' entries stored escaped."""
    w = build_world(tmp_path / "home", pg_url)
    with serve(w) as base:
        supervisor = _signed_in(base, w.tokens["sgt12"])
        reviewer = _signed_in(base, w.tokens["reviewer"])
        api = httpx.Client(base_url=base, timeout=60)

        def read(i: int) -> int:
            return api.get("/api/officers/demo/a1", headers=auth(w.tokens["sgt12"])).status_code

        def probe(i: int) -> int:
            kind = i % 3
            if kind == 0:
                r = api.get("/api/officers/demo/x%00y", headers={"Authorization": "Bearer x"})
            elif kind == 1:
                r = supervisor.get("/officers/de%00mo/a1")
            else:
                r = reviewer.get("/audit", params={"actor": "a\x00"})
            return r.status_code

        jobs = [(probe if i % 11 == 0 else read, i) for i in range(220)]
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda job: (job[0].__name__, _status(job[0], job[1])), jobs))
        for c in (supervisor, reviewer, api):
            c.close()
    reads = [s for kind, s in results if kind == "read"]
    probes = [s for kind, s in results if kind == "probe"]
    assert len(reads) == 200 and len(probes) == 20
    assert [s for s in reads if s != 200] == [], "reads failed because of the probes"
    assert all(isinstance(s, int) and (400 <= s < 500 or s == 200) for s in probes), probes
    v = verify(w.db)
    assert v.ok, v.summary()
    with w.db.session() as s:
        from sqlalchemy import select

        from ews.db import AuditLog

        stored = list(
            s.scalars(select(AuditLog.resource).where(AuditLog.resource.contains("\\x00")))
        )
    assert "/api/officers/demo/x\\x00y" in stored
    w.db.dispose()


RACE_DATE = "2024-04-01"


def race_world(home: Path, db_url: str, officers: int = 50) -> World:
    """The service's small world, plus ``officers`` flagged officers of unit 12 at
    RACE_DATE (sgt.lee's, token ``sgt12``) for workflow steps to race on."""
    import datetime as dt

    from ews.flagstore import save_flags
    from tests._service import flags_frame

    w = build_world(home, db_url)
    rows = [(f"r{i}", "12", 0.5 + i / 1000, True) for i in range(officers)]
    save_flags("demo", dt.date.fromisoformat(RACE_DATE), flags_frame(rows), home=home, db=w.db)
    return w


def race(base: str, token: str, officers: int, steps: int) -> dict[str, int]:
    """``steps`` concurrent workflow steps (each on its own connection), ``steps/officers``
    racing to move each officer's flag to under_review: the outcomes by status."""
    from collections import Counter

    def step(i: int) -> str:
        try:
            r = httpx.post(
                f"{base}/api/officers/demo/r{i % officers}/reviews",
                json={"as_of_date": RACE_DATE, "status": "under_review", "note": f"step {i}"},
                headers={**auth(token), "Idempotency-Key": f"race-{i}"},
                timeout=60,
            )
            return str(r.status_code)
        except httpx.HTTPError as e:
            return f"error:{type(e).__name__}"

    with ThreadPoolExecutor(steps) as pool:
        return dict(Counter(pool.map(step, range(steps))))


@contextmanager
def serve_workers(w: World, workers: int) -> Iterator[str]:
    """`ews serve --workers N` of ``w``'s workspace in a subprocess; its base URL."""
    import os
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "EWS_HOME": str(w.settings.home),
        "EWS_DATABASE_URL": w.db.url,
    }
    ews = str(Path(sys.executable).parent / "ews")
    proc = subprocess.Popen(
        [ews, "serve", "--workers", str(workers), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.postgres
def test_workers_race_without_running_out_of_connections(tmp_path: Path, pg_url: str) -> None:
    """`ews serve --workers 4` on PostgreSQL, 120 concurrent workflow steps on 30 flags: no
    5xx and no dropped or stalled request (one step per flag is recorded, the others are
    409), and the chain holds every recorded step. (Before the pools were sized, each worker
    could open 120 connections against max_connections 100: 500s and stalls.)"""
    from sqlalchemy import func, select

    from ews.db import Review

    w = race_world(tmp_path / "home", pg_url, officers=30)
    with serve_workers(w, 4) as base:
        outcomes = race(base, w.tokens["sgt12"], officers=30, steps=120)
    assert outcomes == {"201": 30, "409": 90}, outcomes
    with w.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Review)) == 30
    assert verify(w.db).ok
    w.db.dispose()


@pytest.mark.postgres
def test_serve_refuses_workers_that_cannot_fit(pg_url: str) -> None:
    """More workers than max_connections allows: a clear error at start, exit 2."""
    from typer.testing import CliRunner

    from ews.cli import app
    from ews.db import AppDatabase, PoolTooSmall, pg_pools
    from ews.settings import get_settings

    AppDatabase(pg_url).dispose()
    pools = pg_pools(pg_url, 1)
    assert pools["total"] >= 4 and pools["read"] >= 1
    with pytest.raises(PoolTooSmall, match="max_connections"):
        pg_pools(pg_url, 500)
    import os

    os.environ["EWS_DATABASE_URL"] = pg_url
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["serve", "--workers", "500"])
    finally:
        del os.environ["EWS_DATABASE_URL"]
        os.environ.pop("EWS_WORKERS", None)
        get_settings.cache_clear()
    assert r.exit_code == 2 and "Use fewer workers" in r.output and "Traceback" not in r.output


if __name__ == "__main__":  # the race by hand: python -m tests.test_audit_service URL N STEPS
    import sys
    import tempfile

    url, workers, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        world = race_world(Path(tmp) / "home", url, officers=steps // 4)
        with serve_workers(world, workers) as base:
            started = time.perf_counter()
            print(race(base, world.tokens["sgt12"], steps // 4, steps))
            print(f"{time.perf_counter() - started:.1f} s; chain: {verify(world.db).summary()}")
        world.db.dispose()
