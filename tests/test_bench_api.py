"""The load generator of benchmarks/bench_api.py: its raw HTTP/1.1 client and its summary.

Counts and percentiles must agree with what the server saw, for Content-Length, chunked and
Connection: close answers, non-2xx statuses, and a real uvicorn server. No timing targets.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_api  # noqa: E402

BODY = b'{"status": "ok", "rows": [1, 2, 3]}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    served: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = self.path.split("?")[0]
        with self.lock:
            self.served[path] = self.served.get(path, 0) + 1
        if path == "/missing":
            self._send(404, b'{"detail": "not found"}')
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (BODY[:10], BODY[10:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/close":
            self._send(200, BODY, close=True)
        else:
            self._send(200, BODY)

    def _send(self, status: int, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture()
def tiny_server() -> Iterator[tuple[int, dict[str, int]]]:
    served: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"served": served, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1], served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _consistent(summary: dict[str, Any]) -> None:
    outcomes = summary["outcomes"]
    assert summary["requests"] == sum(outcomes.values()) > 0
    ok = sum(n for o, n in outcomes.items() if o.startswith("2"))
    assert summary["ok"] == ok
    assert summary["errors"] == summary["requests"] - ok
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["req_per_s"] == pytest.approx(
        summary["requests"] / summary["window_s"], rel=0.01
    )
    assert summary["sent_total"] >= summary["requests"]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench_api.percentile(values, 50) == 50
    assert bench_api.percentile(values, 95) == 95
    assert bench_api.percentile(values, 99) == 99
    assert bench_api.percentile(values, 100) == 100
    assert bench_api.percentile([7.0], 99) == 7.0
    assert bench_api.percentile([1.0, 2.0], 50) == 1.0
    assert math.isnan(bench_api.percentile([], 50))


def test_summary_counts_only_the_window() -> None:
    samples = bench_api.Samples(started=0.0, measure_from=1.0, deadline=3.0)
    samples.add(0.0, 0.5, "200")  # warm-up: not counted
    samples.add(0.5, 1.5, "200")  # started in the warm-up, completed in the window
    samples.add(1.5, 1.6, "404")
    samples.add(1.6, 1.8, "error:ConnectionResetError")
    samples.add(2.9, 3.5, "200")  # completed after the end: not counted
    s = bench_api.summarize(samples)
    assert s["requests"] == 3 and s["ok"] == 1 and s["errors"] == 2
    assert s["outcomes"] == {"200": 1, "404": 1, "error:ConnectionResetError": 1}
    assert s["sent_total"] == 5
    assert s["req_per_s"] == 1.5
    assert s["p50_ms"] == pytest.approx(200.0) and s["max_ms"] == pytest.approx(1000.0)


def test_raw_client_reads_every_framing(tiny_server: tuple[int, dict[str, int]]) -> None:
    port, _ = tiny_server
    for path in ("/len", "/chunked", "/close"):
        assert asyncio.run(bench_api.fetch(port, path, timeout=10)) == (200, BODY)
    status, body = asyncio.run(bench_api.fetch(port, "/missing", timeout=10))
    assert (status, body) == (404, b'{"detail": "not found"}')


def test_load_counts_match_the_server(tiny_server: tuple[int, dict[str, int]]) -> None:
    port, served = tiny_server
    paths = ["/len", "/chunked", "/close", "/missing", "/len?x=1"]
    summary = bench_api.run_load(port, paths, clients=3, seconds=1.0, warmup=0.2, timeout=10)
    _consistent(summary)
    assert set(summary["outcomes"]) == {"200", "404"}  # no connection or protocol error
    assert summary["errors"] == summary["outcomes"]["404"] > 0
    assert sum(served.values()) == summary["sent_total"]  # every request reached the server
    assert set(served) == {"/len", "/chunked", "/close", "/missing"}


def test_load_against_the_bare_uvicorn_app(tmp_path: Path) -> None:
    port = bench_api.free_port()
    server = bench_api.Server(
        "bare",
        [sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--bare-server", str(port)],
        {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        tmp_path / "bare.log",
    )
    try:
        server.start(port, ready_timeout=60)
        summary = bench_api.run_load(
            port, [bench_api.BARE_PATH], clients=8, seconds=1.0, warmup=0.2, timeout=10
        )
    finally:
        server.stop()
    assert server.proc is None
    _consistent(summary)
    assert summary["outcomes"] == {"200": summary["requests"]}
    assert summary["errors"] == 0


def _figures(rate: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {
        "req_per_s": rate,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "errors": errors,
        "loadavg_start_end": ["0.50 0.40 0.30", "0.70 0.45 0.31"],
    }


def test_verdicts_read_the_targets_off_the_figures_of_the_same_run() -> None:
    results = {
        "a": _figures(1_600.0, 80.0),  # 53% of the baseline, p99 under 100 ms
        "b": _figures(1_400.0, 120.0, errors=2),  # 47%, p99 over 100 ms, errors
        "c": _figures(3_000.0, 20.0),
    }
    lines = bench_api.verdicts(results, bench_api.round_ratios(results))
    assert lines[0].startswith("baseline, same run: (c) bare FastAPI endpoint 3,000.0 req/s")
    assert "load average 0.50 0.40 0.30 -> 0.70 0.45 0.31" in lines[0]
    a, b = lines[1], lines[2]
    assert "= 53.3% of the baseline (target >= 50%: met)" in a
    assert "p99 80.0 ms (target < 100 ms: met)" in a and "errors 0 (met)" in a
    assert "= 46.7% of the baseline (target >= 50%: NOT met)" in b
    assert "p99 120.0 ms (target < 100 ms: NOT met)" in b and "errors 2 (NOT met)" in b
    assert all("load average 0.50 0.40 0.30 -> 0.70 0.45 0.31" in line for line in lines)
