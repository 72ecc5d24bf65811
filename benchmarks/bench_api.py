"""Benchmark: the service under load, against a bare FastAPI endpoint on the same uvicorn.

What it does, in one run:

1. Builds, once, a 10,000-officer synthetic agency through the commands users run, in the
   folder ``--work`` (default ``./bench-api-work``; reused on later runs while it is there):
   ``ews synth``, ``ews ingest``, ``ews train --config benchmarks/bench_api_experiment.yaml``
   (one small model: the benchmark needs a champion that scores, not the best one) and
   ``ews score --as-of <the day after the data end>``. It then creates a credentialing
   reviewer and a supervisor of the unit with the most flagged officers (``ews users add``;
   the unit is read from the reviewer's flag list).
2. Starts ``ews serve`` (one uvicorn process on 127.0.0.1 and a free port, ``EWS_HOME`` =
   the work folder's ``home``) and a bare FastAPI app with one plain ``def`` endpoint
   returning a small JSON, under the same ``uvicorn.run`` settings, in a second process on
   another port.
3. Drives ``--clients`` (50) concurrent keep-alive clients for ``--warmup`` + ``--seconds``
   against, one after the other: (a) the supervisor's flag list ``GET /api/flags?agency=``,
   (b) officer pages ``GET /api/officers/{agency}/{officer_id}`` cycling over the
   supervisor's flagged officers, (c) the bare endpoint. The load generator is a small
   asyncio HTTP/1.1 client on raw sockets running in its own process, so it takes little
   of the CPU the server needs.
4. Prints, for each: requests, errors (non-2xx, timeouts, connection errors; with counts
   per status), req/s, p50/p95/p99/max latency in ms, the CPU share of the server and of
   the load generator, and the throughput ratios (a)/(c) and (b)/(c); ``--json FILE`` also
   writes them. Targets (reported, not asserted): p99 < 100 ms for (a) and (b), 0 errors,
   (a) and (b) each >= 50% of (c)'s req/s. Each figure is shown with the load average at
   the start and the end of its measurement, and the run ends with a line of its baseline
   (the bare endpoint) and, for (a) and (b), each target "met" or "NOT met" as the figures
   of the same run say (the machine may be shared: compare ratios within one run).
   ``--workers N`` serves with ``ews serve --workers N`` (the bare endpoint stays one
   process).

``--database-url`` runs the service on PostgreSQL: a fresh database is created on that
server for the run (``CREATE DATABASE``, from the database named in the URL), the flags and
users are written into it (``ews score`` and ``ews users add`` with ``EWS_DATABASE_URL``)
and it is dropped at the end. The SQLite run keeps its flags and users in the work folder.

A request is counted (status, latency) when it completes within the measured window (after
the warm-up, before the end), whenever it started; req/s = those requests / window seconds.
Requests still in flight at the end are awaited (so the server is idle before the next
endpoint) but not counted.
Only 127.0.0.1 is used. Every loop is bounded in time and count; the servers this script
started are stopped on exit, on error and on Ctrl-C.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_api.py --json bench-api.json
    .venv/bin/python benchmarks/bench_api.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
AGENCY = "bench"
START_YEAR = 2015
EXPERIMENT = HERE / "bench_api_experiment.yaml"
SUPERVISOR = "bench-supervisor"
REVIEWER = "bench-reviewer"
BARE_PATH = "/bare"
MAX_REQUESTS_PER_CLIENT = 10_000_000
MAX_CHUNKS = 100_000
TARGET_P99_MS = 100.0
TARGET_RATIO = 0.5


# --------------------------------------------------------------------------------------
# The load generator: a raw-socket HTTP/1.1 keep-alive client and the summary of its samples
# --------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """The server answered something that is not a well-formed HTTP/1.1 response."""


def build_request(path: str, port: int, headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one keep-alive ``GET path`` to 127.0.0.1:port."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Accept: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one response: (status, body, whether the server closes the connection).

    Reads the status line and headers, then a ``Content-Length`` body or a chunked one.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    close = parts[0] == "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            if not value.isdigit():
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            close = value == "close" or (close and value != "keep-alive")
    if status < 200 or status in (204, 304):
        return status, b"", close
    if chunked:
        return status, await _read_chunked(reader), close
    if length is None:  # the body runs until the server closes the connection
        return status, await reader.read(), True
    return status, await reader.readexactly(length), close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    for _ in range(MAX_CHUNKS):
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as e:
            raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from e
        if size == 0:
            for _ in range(MAX_CHUNKS):  # trailers, up to the blank line
                if await reader.readuntil(b"\r\n") == b"\r\n":
                    return bytes(body)
            break
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
    raise ProtocolError(f"more than {MAX_CHUNKS} chunks")


async def fetch(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, bytes]:
    """One GET on a new connection (setup and readiness checks, not the measured load)."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(build_request(path, port, headers))
            await writer.drain()
            status, body, _ = await read_response(reader)
            return status, body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(go(), timeout)


def get_json(port: int, path: str, token: str) -> Any:
    status, body = asyncio.run(fetch(port, path, {"Authorization": f"Bearer {token}"}))
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
    return json.loads(body)


@dataclass
class Samples:
    """What the clients saw: latencies (s) and outcomes of the measured requests."""

    started: float
    measure_from: float
    deadline: float
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    sent_total: int = 0  # warm-up, window and after: every request that got an outcome

    def add(self, t0: float, t1: float, outcome: str) -> None:
        """Count a request that completed (or failed) at t1 when t1 falls in the window."""
        self.sent_total += 1
        if self.measure_from <= t1 <= self.deadline:
            self.latencies.append(t1 - t0)
            self.outcomes[outcome] += 1


async def _client(
    port: int,
    requests: Sequence[bytes],
    first: int,
    step: int,
    samples: Samples,
    timeout: float,
) -> None:
    """One keep-alive connection sending requests[first], requests[first + step], ... back to
    back until the deadline (reconnecting when the server closes or fails)."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    index = first
    try:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            t0 = time.perf_counter()
            if t0 >= samples.deadline:
                break
            close = False
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
                conn[1].write(requests[index % len(requests)])
                status, _, close = await asyncio.wait_for(read_response(conn[0]), timeout)
                outcome = str(status)
            except TimeoutError:
                outcome, close = "timeout", True
            except (
                OSError,
                EOFError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ProtocolError,
            ) as e:
                outcome, close = f"error:{type(e).__name__}", True
            t1 = time.perf_counter()
            samples.add(t0, t1, outcome)
            index += step
            if close and conn is not None:
                conn[1].close()
                conn = None
            if outcome.startswith(("error:", "timeout")):
                await asyncio.sleep(0.01)  # do not spin on a server that refuses connections
    finally:
        if conn is not None:
            conn[1].close()


async def _drive(
    port: int,
    requests: Sequence[bytes],
    clients: int,
    seconds: float,
    warmup: float,
    timeout: float,
) -> Samples:
    now = time.perf_counter()
    samples = Samples(started=now, measure_from=now + warmup, deadline=now + warmup + seconds)
    await asyncio.gather(
        *(_client(port, requests, i, clients, samples, timeout) for i in range(clients))
    )
    return samples


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of values sorted ascending (nan when there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(samples: Samples) -> dict[str, Any]:
    """Counts, errors, req/s and latency percentiles (ms) of the measured window."""
    window = samples.deadline - samples.measure_from
    lat = sorted(samples.latencies)
    ok = sum(n for o, n in samples.outcomes.items() if o.isdigit() and 200 <= int(o) < 300)
    requests = sum(samples.outcomes.values())

    def ms(v: float) -> float | None:
        return None if math.isnan(v) else round(v * 1000, 2)

    return {
        "requests": requests,
        "ok": ok,
        "errors": requests - ok,
        "outcomes": dict(sorted(samples.outcomes.items())),
        "window_s": round(window, 3),
        "req_per_s": round(requests / window, 1) if window > 0 else None,
        "p50_ms": ms(percentile(lat, 50)),
        "p95_ms": ms(percentile(lat, 95)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(lat[-1]) if lat else None,
        "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
        "sent_total": samples.sent_total,
    }


def run_load(
    port: int,
    paths: Sequence[str],
    headers: dict[str, str] | None = None,
    clients: int = 50,
    seconds: float = 20.0,
    warmup: float = 3.0,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Drive ``clients`` connections at ``paths`` (cycled) and return the summary, with the
    CPU share this process used."""
    requests = [build_request(p, port, headers) for p in paths]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    samples = asyncio.run(_drive(port, requests, clients, seconds, warmup, timeout))
    summary = summarize(samples)
    wall = time.perf_counter() - wall0
    summary["client_cpu_pct"] = round(100 * (time.process_time() - cpu0) / wall, 1)
    return summary


def _load_worker() -> None:
    """``bench_api.py --load-worker``: read a run_load spec (JSON) on stdin, print the
    summary (JSON) on stdout. The load runs in its own process, away from the parent."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(run_load(**spec)))


def load_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    limit = spec["warmup"] + spec["seconds"] + spec["timeout"] + 60
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--load-worker"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=limit,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --------------------------------------------------------------------------------------
# The bare FastAPI app (the reference) and the server processes
# --------------------------------------------------------------------------------------


def bare_app() -> Any:
    """A FastAPI app with one plain ``def`` endpoint returning a small JSON."""
    from fastapi import FastAPI

    app = FastAPI(title="bare reference")

    @app.get(BARE_PATH)
    def bare() -> dict[str, Any]:
        return {"status": "ok", "officers": 3, "notice": "a small JSON"}

    return app


def _bare_server(port: int) -> None:
    """``bench_api.py --bare-server PORT``: the bare app under the uvicorn.run settings
    `ews serve` uses."""
    import uvicorn

    from api.server import UVICORN

    uvicorn.run(bare_app(), host=HOST, port=port, **UVICORN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server process this script started (its own process group), stopped by ``stop``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, port: int, ready_timeout: float = 120.0) -> None:
        self.port = port
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [a.replace("{port}", str(port)) for a in self.argv],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log}")
            try:
                asyncio.run(fetch(port, "/", timeout=5))  # any HTTP answer means it serves
                return
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer in {ready_timeout:.0f} s; see {self.log}")

    @property
    def log(self) -> str:
        return str(self.log_path)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes (its process group: the worker
        processes of ``ews serve --workers`` too; Linux /proc), nan elsewhere."""
        if self.proc is None:
            return math.nan
        total, found = 0.0, False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # fields after the command (which may hold spaces): state, ppid, pgrp, ...
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) != self.proc.pid:
                    continue
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                found = True
            except (OSError, ValueError, IndexError):
                continue
        return total if found else math.nan

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------------------
# The agency, its flags and users, through the CLI
# --------------------------------------------------------------------------------------


@dataclass
class Setup:
    work: Path
    ews: str
    officers: int
    years: int
    seed: int
    database_url: str | None = None  # None: the workspace's SQLite

    @property
    def home(self) -> Path:
        return self.work / "home"

    @property
    def as_of(self) -> str:
        return f"{START_YEAR + self.years}-01-01"  # the day after the synthetic data end

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("EWS_DATABASE_URL", None)
        env.update(
            EWS_HOME=str(self.home),
            OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        if self.database_url:
            env["EWS_DATABASE_URL"] = self.database_url
        return env

    def ews_cmd(self, *args: str, timeout: float = 1800) -> str:
        """Run ``ews ARGS`` (output to the log; returns stdout)."""
        t0 = time.perf_counter()
        print(f"  $ ews {' '.join(args)}", flush=True)
        done = subprocess.run(
            [self.ews, *args],
            env=self.env(),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        with (self.work / "logs" / "cli.log").open("a", encoding="utf-8") as log:
            log.write(f"$ ews {' '.join(args)}\n{done.stdout}\n{done.stderr}\n")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-2000:]
            raise RuntimeError(f"ews {' '.join(args)} failed ({done.returncode}):\n{tail}")
        print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
        return done.stdout


def state_path(work: Path) -> Path:
    return work / "state.json"


def read_state(work: Path) -> dict[str, Any]:
    path = state_path(work)
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(work: Path, state: dict[str, Any]) -> None:
    tmp = state_path(work).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path(work))


def build_agency(setup: Setup) -> dict[str, Any]:
    """synth -> ingest -> train, once per work folder (the state file marks it done)."""
    state = read_state(setup.work)
    wanted = {"officers": setup.officers, "years": setup.years, "seed": setup.seed}
    if "agency" in state:
        if state["agency"]["params"] != wanted:
            raise SystemExit(
                f"{setup.work} holds an agency built with {state['agency']['params']}, not "
                f"{wanted}: pass --rebuild or another --work"
            )
        print(f"reusing the agency built in {setup.work} ({state['agency']['built_at']})")
        return state
    print(f"building a {setup.officers:,}-officer synthetic agency in {setup.work}")
    (setup.work / "logs").mkdir(parents=True, exist_ok=True)
    package = setup.work / "package" / AGENCY
    setup.ews_cmd(
        "synth", str(package), "--officers", str(setup.officers), "--years", str(setup.years),
        "--seed", str(setup.seed), "--start-year", str(START_YEAR),
    )  # fmt: skip
    setup.ews_cmd("ingest", str(package), "--agency", AGENCY)
    setup.ews_cmd("train", "--config", str(EXPERIMENT), "--agency", AGENCY)
    state = {
        "agency": {
            "params": wanted,
            "name": AGENCY,
            "as_of": setup.as_of,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    }
    write_state(setup.work, state)
    return state


def user_suffix() -> str:
    """User names are unique per scoring (a workspace scored again keeps its old users)."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")


def score_and_reviewer(setup: Setup, suffix: str) -> str:
    """``ews score`` into the setup's database, then a reviewer; returns the reviewer token.
    A champion trained on an older feature spec is retrained first (``ews score`` refuses it)."""
    try:
        setup.ews_cmd("score", "--as-of", setup.as_of, "--agency", AGENCY)
    except RuntimeError as e:
        if "retrain with `ews train`" not in str(e):
            raise
        print("  the feature spec changed since the champion was trained: training again")
        setup.ews_cmd("train", "--config", str(EXPERIMENT), "--agency", AGENCY)
        setup.ews_cmd("score", "--as-of", setup.as_of, "--agency", AGENCY)
    name = f"{REVIEWER}-{suffix}"
    out = setup.ews_cmd("users", "add", name, "--role", "reviewer", "--agency", AGENCY)
    return out.strip().splitlines()[-1].strip()


def add_supervisor(setup: Setup, port: int, reviewer_token: str, suffix: str) -> tuple[str, str]:
    """Create a supervisor of the unit with the most flagged officers (read from the
    reviewer's flag list); returns (unit, token)."""
    flags = get_json(port, flags_path() + "&limit=1000", reviewer_token)
    units = Counter(str(r["unit"]) for r in flags["data"] if r.get("unit") is not None)
    if not units:
        raise RuntimeError("the reviewer's flag list shows no flagged officer with a unit")
    top = max(units.values())
    unit = min(u for u, n in units.items() if n == top)
    print(f"  unit {unit} has the most flagged officers ({top} of {len(flags['data'])})")
    out = setup.ews_cmd(
        "users",
        "add",
        f"{SUPERVISOR}-{suffix}",
        "--role",
        "supervisor",
        "--agency",
        AGENCY,
        "--unit",
        unit,
    )
    return unit, out.strip().splitlines()[-1].strip()


def supervisor_officers(port: int, token: str) -> list[str]:
    """The officers on the supervisor's flag list (empty when it does not answer 200)."""
    status, body = asyncio.run(fetch(port, flags_path(), {"Authorization": f"Bearer {token}"}))
    if status != 200:
        print(f"  the supervisor's flag list answered {status}: {body[:200]!r}")
        return []
    return [str(r["officer_id"]) for r in json.loads(body)["data"]]


def flags_path() -> str:
    return "/api/flags?" + urlencode({"agency": AGENCY})


def officer_path(officer_id: str) -> str:
    return f"/api/officers/{quote(AGENCY, safe='')}/{quote(officer_id, safe='')}"


# --------------------------------------------------------------------------------------
# PostgreSQL: a fresh database for the run
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_postgres(url: str) -> Iterator[str]:
    """Create a new database on the server of ``url`` (connecting to the database it names),
    yield its URL, and drop it afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    given = make_url(url)
    name = f"ews_bench_api_{os.getpid()}_{int(time.time())}"
    admin = given.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    print(f"created PostgreSQL database {name}")
    try:
        yield given.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped PostgreSQL database {name}")


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------

PHASES = (
    ("a", "supervisor's flag list"),
    ("b", "officer page"),
    ("c", "bare FastAPI endpoint"),
)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages (Linux), empty elsewhere."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def measure(
    server: Server, paths: list[str], headers: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    spec = {
        "port": server.port,
        "paths": paths,
        "headers": headers,
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "timeout": args.timeout,
    }
    load0, cpu0, wall0 = loadavg(), server.cpu_seconds(), time.perf_counter()
    result = load_in_subprocess(spec)
    wall = time.perf_counter() - wall0
    cpu = server.cpu_seconds() - cpu0
    result["server_cpu_pct"] = round(100 * cpu / wall, 1)
    # CPU per request (warm-up and window): steadier than req/s on a shared machine
    sent = result.get("sent_total") or 0
    result["server_cpu_ms_per_request"] = round(1000 * cpu / sent, 3) if sent else None
    result["loadavg_start_end"] = [load0, loadavg()]
    return result


def print_table(results: dict[str, dict[str, Any]], ratios: dict[str, float | None]) -> None:
    head = (
        f"{'':28} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'srv cpu':>8} {'gen cpu':>8} {'cpu/req':>8}"
    )
    print(head)
    for key, label in PHASES:
        r = results[key]

        def f(v: Any) -> str:
            return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"

        print(
            f"({key}) {label:24} {f(r['requests']):>9} {f(r['errors']):>7} "
            f"{f(r['req_per_s']):>8} {f(r['p50_ms']):>8} {f(r['p95_ms']):>8} "
            f"{f(r['p99_ms']):>8} {f(r['max_ms']):>8} {f(r['server_cpu_pct']):>7}% "
            f"{f(r['client_cpu_pct']):>7}% {f(r.get('server_cpu_ms_per_request')):>5} ms"
        )
    for key, _ in PHASES:
        bad = {o: n for o, n in results[key]["outcomes"].items() if not o.startswith("2")}
        if bad:
            print(f"    ({key}) errors by status: {bad}")
    for key, label in PHASES:
        start, end = results[key]["loadavg_start_end"]
        print(f"    ({key}) {label}: load average {start} at the start, {end} at the end")
    for name, ratio in ratios.items():
        shown = "-" if ratio is None else f"{100 * ratio:.1f}%"
        print(f"throughput {name}: {shown}  (target >= {100 * TARGET_RATIO:.0f}%)")
    for line in verdicts(results, ratios):
        print(line)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def verdicts(results: dict[str, dict[str, Any]], ratios: dict[str, float | None]) -> list[str]:
    """The targets read off the measured figures of one run: a line for the baseline (the
    bare endpoint, measured in the same run) and, for (a) and (b), req/s as a share of it
    (>= 50%), p99 (< 100 ms) and errors (none), each "met" or "NOT met", every figure with
    the load average at the start and the end of its measurement."""
    c = results["c"]
    c_load = " -> ".join(c["loadavg_start_end"])
    lines = [
        f"baseline, same run: (c) bare FastAPI endpoint {_num(c['req_per_s'])} req/s, "
        f"p50 {_num(c['p50_ms'])} ms, p99 {_num(c['p99_ms'])} ms (load average {c_load})"
    ]
    for key, label in PHASES[:2]:
        r, ratio = results[key], ratios[f"{key}/c"]
        ratio_ok = ratio is not None and ratio >= TARGET_RATIO
        p99_ok = r["p99_ms"] is not None and r["p99_ms"] < TARGET_P99_MS
        shown = "-" if ratio is None else f"{100 * ratio:.1f}%"
        lines.append(
            f"({key}) {label}: {_num(r['req_per_s'])} req/s = {shown} of the baseline "
            f"(target >= {100 * TARGET_RATIO:.0f}%: {_met(ratio_ok)}); "
            f"p50 {_num(r['p50_ms'])} ms, p99 {_num(r['p99_ms'])} ms "
            f"(target < {TARGET_P99_MS:.0f} ms: {_met(p99_ok)}); "
            f"errors {r['errors']} ({_met(r['errors'] == 0)}); "
            f"load average {' -> '.join(r['loadavg_start_end'])}"
        )
    return lines


def median_verdicts(
    rounds: list[dict[str, dict[str, Any]]], ratios: dict[str, float | None]
) -> list[str]:
    """The targets over several rounds: the median ratio, and p99 and errors in each round."""
    lines = []
    for key, label in PHASES[:2]:
        ratio = ratios[f"{key}/c"]
        ratio_ok = ratio is not None and ratio >= TARGET_RATIO
        p99s = [r[key]["p99_ms"] for r in rounds]
        under = sum(p is not None and p < TARGET_P99_MS for p in p99s)
        errors = sum(r[key]["errors"] for r in rounds)
        shown = "-" if ratio is None else f"{100 * ratio:.1f}%"
        lines.append(
            f"({key}) {label}, {len(rounds)} rounds: median {shown} of the baseline "
            f"(target >= {100 * TARGET_RATIO:.0f}%: {_met(ratio_ok)}); p99 "
            f"{', '.join(_num(p) for p in p99s)} ms (target < {TARGET_P99_MS:.0f} ms: "
            f"{_met(under == len(rounds))} in {under} of {len(rounds)}); errors {errors} "
            f"({_met(errors == 0)})"
        )
    return lines


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:,.1f}"


def targets(results: dict[str, dict[str, Any]], ratios: dict[str, float | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("a", "b"):
        r = results[key]
        out[f"{key}_p99_under_{TARGET_P99_MS:.0f}ms"] = (
            r["p99_ms"] is not None and r["p99_ms"] < TARGET_P99_MS
        )
        out[f"{key}_no_errors"] = r["errors"] == 0
        ratio = ratios[f"{key}/c"]
        out[f"{key}_ratio_at_least_{TARGET_RATIO:.2f}"] = bool(ratio and ratio >= TARGET_RATIO)
    return out


def round_ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Throughput of (a) and (b) over (c)'s in one round."""
    c_rate = results["c"]["req_per_s"]
    return {
        f"{k}/c": (round(results[k]["req_per_s"] / c_rate, 4) if c_rate else None)
        for k in ("a", "b")
    }


def stop_all(servers: list[Server]) -> None:
    for server in reversed(servers):
        server.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work.resolve()
    if args.rebuild and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    ews = args.ews or shutil.which("ews", path=str(Path(sys.executable).parent)) or "ews"
    setup = Setup(work, ews, args.officers, args.years, args.seed)
    build_agency(setup)
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:
        stack.callback(stop_all, servers)
        state = read_state(work)
        db_label = "sqlite (EWS_HOME/app.db)"
        if args.database_url:
            setup.database_url = stack.enter_context(fresh_postgres(args.database_url))
            db_label = "postgresql"
        api = Server(
            "ews serve",
            [
                setup.ews,
                "serve",
                "--host",
                HOST,
                "--port",
                "{port}",
                "--workers",
                str(args.workers),
            ],
            setup.env(),
            work / "logs" / "ews-serve.log",
        )
        servers.append(api)
        cached = None if args.database_url else state.get("sqlite")
        if cached:
            api.start(free_port())
            unit, sup_token = cached["unit"], cached["supervisor_token"]
            officer_ids = supervisor_officers(api.port, sup_token)
            if not officer_ids:  # e.g. a workspace scored by an older version of ews
                print("the cached supervisor sees no flagged officer: scoring again")
                api.stop()
                cached = None
        if not cached:
            suffix = user_suffix()
            reviewer_token = score_and_reviewer(setup, suffix)
            api.start(free_port())
            unit, sup_token = add_supervisor(setup, api.port, reviewer_token, suffix)
            if not args.database_url:
                state["sqlite"] = {
                    "unit": unit,
                    "reviewer_token": reviewer_token,
                    "supervisor_token": sup_token,
                }
                write_state(work, state)
            officer_ids = supervisor_officers(api.port, sup_token)
        print(
            f"ews serve on {HOST}:{api.port} ({db_label}), {args.workers} worker process(es); "
            "the bare endpoint: one process"
        )
        if not officer_ids:
            raise RuntimeError(f"the supervisor of unit {unit} sees no flagged officer")
        auth = {"Authorization": f"Bearer {sup_token}"}
        print(f"supervisor of unit {unit}: {len(officer_ids)} flagged officers")

        bare = Server(
            "bare FastAPI",
            [sys.executable, str(Path(__file__).resolve()), "--bare-server", "{port}"],
            setup.env(),
            work / "logs" / "bare.log",
        )
        servers.append(bare)
        bare.start(free_port())
        print(f"bare FastAPI endpoint on {HOST}:{bare.port}{BARE_PATH}")

        load_before = uptime()
        print(f"load: {load_before}")
        plan = {
            "a": (api, [flags_path()], auth),
            "b": (api, [officer_path(o) for o in officer_ids], auth),
            "c": (bare, [BARE_PATH], {}),
        }
        rounds: list[dict[str, dict[str, Any]]] = []
        for n in range(args.rounds):
            results: dict[str, dict[str, Any]] = {}
            for key, label in PHASES:
                server, paths, headers = plan[key]
                print(
                    f"round {n + 1}/{args.rounds} ({key}) {label}: {args.clients} clients, "
                    f"{args.warmup:g} s warm-up + {args.seconds:g} s ...",
                    flush=True,
                )
                results[key] = measure(server, paths, headers, args)
                results[key]["paths"] = paths[:3] + (["..."] if len(paths) > 3 else [])
                time.sleep(1)
            rounds.append(results)
        load_after = uptime()

    per_round = [round_ratios(r) for r in rounds]
    for n, (results, each_ratios) in enumerate(zip(rounds, per_round, strict=True)):
        print(f"\nround {n + 1} of {len(rounds)}")
        print_table(results, each_ratios)
    ratios: dict[str, float | None] = {}
    for k in per_round[0]:
        values = [r[k] for r in per_round]
        known = [v for v in values if v is not None]
        ratios[k] = statistics.median(known) if len(known) == len(values) else None
    if len(rounds) > 1:
        for k, median in ratios.items():
            each = ", ".join("-" if (v := r[k]) is None else f"{100 * v:.1f}%" for r in per_round)
            shown = "-" if median is None else f"{100 * median:.1f}%"
            print(f"throughput {k}, median of {len(rounds)} rounds: {shown} ({each})")
        for line in median_verdicts(rounds, ratios):
            print(line)
    print(f"load before: {load_before}\nload after:  {load_after}")
    report = {
        "benchmark": "bench_api",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "database": db_label,
        "agency": {
            "name": AGENCY,
            "officers": args.officers,
            "years": args.years,
            "seed": args.seed,
            "as_of": setup.as_of,
            "supervisor_unit": unit,
            "supervisor_flagged_officers": len(officer_ids),
        },
        "settings": {
            "clients": args.clients,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "timeout": args.timeout,
            "cpus": os.cpu_count(),
            "workers": args.workers,
        },
        "load_before": load_before,
        "load_after": load_after,
        "results": {f"{k}: {label}": results[k] for k, label in PHASES},
        "rounds": [{f"{k}: {label}": r[k] for k, label in PHASES} for r in rounds],
        "ratios_per_round": per_round,
        "ratios": ratios,
        "targets": targets(results, ratios),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_api.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path("bench-api-work"),
        help="folder for the agency, its workspace and the logs; reused when present "
        "(default: ./bench-api-work)",
    )
    p.add_argument("--rebuild", action="store_true", help="delete --work first and build anew")
    p.add_argument("--officers", type=int, default=10_000, help="officers (default 10000)")
    p.add_argument("--years", type=int, default=6, help="years of records (default 6)")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic agency")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument(
        "--seconds", type=float, default=20.0, help="measured seconds per endpoint (default 20)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat (a), (b), (c) this many times, alternating, and report each round and "
        "the median ratios: fairer on a machine whose load changes (default 1)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="warm-up seconds before each measurement, not counted (default 3)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds before one request counts as a timeout error (default 30)",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL URL (postgresql+psycopg://postgres@127.0.0.1:5432/test): "
        "the run creates a fresh database on that server, serves from it "
        "(EWS_DATABASE_URL) and drops it at the end",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of `ews serve --workers` (default 1); the bare endpoint is "
        "always one process, so a ratio with more workers says what the service gains from "
        "the machine's other cores",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures to FILE")
    p.add_argument("--ews", default=None, help="the ews command (default: next to this python)")
    p.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.load_worker and args.bare_server is None:
        for name in ("clients", "seconds", "officers", "years", "workers"):
            if getattr(args, name) <= 0:
                p.error(f"--{name} must be positive")
        if args.warmup < 0 or args.timeout <= 0:
            p.error("--warmup must be >= 0 and --timeout > 0")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load_worker:
        _load_worker()
        return 0
    if args.bare_server is not None:
        _bare_server(args.bare_server)
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted; the servers were stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
