"""The audit trail under a served app (uvicorn on a free port, real HTTP): what one client
sends never fails another client's request (issue 15, item 1), and on PostgreSQL the
service's pools fit the server's max_connections (item 5)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from ews.audit import verify
from tests._service import World, auth, build_world


@contextmanager
def serve(w: World) -> Iterator[str]:
    """The app of ``w`` served by uvicorn in a thread; its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(w.settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


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
