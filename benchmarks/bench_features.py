"""Benchmark of the as-of feature builder (prints measured figures; not a test).

    .venv/bin/python benchmarks/bench_features.py --officers N [N ...] [--engine duckdb|spark]
        [--data DIR] [--slice-of PACKAGE] [--memory-limit 10GB] [--dates-per-batch K]
        [--threads 2] [--min-free-gib 4]
    .venv/bin/python benchmarks/bench_features.py [--skip-chicago] [--skip-synthetic]
        [--skip-spark] [--million] [--threads N]

Scale (``--officers``): for each size, a synthetic agency of N officers over 10 years
(``ews synth``, seed 1: about 100 events per officer, so ~100M events at 1M; kept in
``--data`` and reused), then the product's command ``ews features build`` at the
12 as-of dates SYNTH_DATES, each in a fresh process watched from here: wall time, CPU time
and peak RSS (``wait4`` rusage of the child), the process tree's RSS and DuckDB's spill
folder sampled twice a second, rows and columns of the table written, and the load average.
A run is killed (its own process group only) when the machine's available memory falls
under ``--min-free-gib``. Then a growth table (time and memory, x per x10 officers).
With ``--engine spark`` each size is also built on Spark local[2] from the same package and
the two tables are asserted equal (keys, integers and strings exactly, floats to 1e-9
relative; the number of float cells not bit-identical is printed). ``--slice-of PACKAGE``
builds on the first N officers of a bigger package (e.g. a 100k slice of the 1M agency).

Default run (no ``--officers``):
1. Chicago (CPDP 2018): convert with ews.adapters.cpdp, then the default spec at Jan 1
   2005..2015 (11 dates, cohort: officers holding a rank). Target: under 20 s.
2. Synthetic agency: the scale run above at 10k and 100k officers (1M with --million).
   On a 10k-officer slice of the 100k agency: a plain pandas implementation (one groupby per
   date and window, as a loop of queries would do) of the count and sustained columns vs
   DuckDB on the same columns (equal results asserted, time ratio printed), and Spark
   local[2] on the full default spec (results asserted equal to DuckDB's, time printed).

Every measured step runs in a fresh process, so peak RSS is that step's own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHICAGO = ROOT.parent / "shared" / "data" / "chicago-cpdp-2018"
CHICAGO_DATES = [dt.date(y, 1, 1) for y in range(2005, 2016)]
SYNTH_DATES = [dt.date(y, m, 1) for y in range(2014, 2020) for m in (1, 7)]  # 12 dates


# ------------------------------------------------------------------ measured steps
def _step_build(
    folder: str,
    dates: list[dt.date],
    engine: str,
    require: str | None,
    spec: str | None,
    out: str | None,
) -> dict[str, Any]:
    from features.build import build_features
    from features.cohort import CohortSpec
    from features.spec import default_spec, spec_from_dict

    sp = spec_from_dict(_counts_spec()) if spec == "counts" else default_spec()
    cohort = CohortSpec(require_assignment=require) if require else None
    w, c = time.perf_counter(), time.process_time()
    df = build_features(Path(folder), dates, sp, engine=engine, cohort=cohort)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    if out:
        df.to_parquet(out)
    return {"wall": wall, "cpu": cpu, "rss": _rss(), "rows": len(df), "cols": len(sp.columns)}


def _step_pandas(folder: str, dates: list[dt.date], out: str) -> dict[str, Any]:
    """The count and sustained columns with pandas: one groupby per date and window."""
    import pandas as pd
    from dateutil.relativedelta import relativedelta

    from ews.contract import read_normalized

    w, c = time.perf_counter(), time.process_time()
    pkg = read_normalized(Path(folder))
    spec = _counts_spec()
    ev = pkg.events
    off = pkg.officers
    frames = []
    for t in dates:
        ts = pd.Timestamp(t)
        coh = off[
            (off.appointed_date < ts) & (off.separation_date.isna() | (off.separation_date >= ts))
        ]
        row = pd.DataFrame({"officer_id": coh.officer_id.astype(str).values, "as_of_date": ts})
        known = ev[ev.reported_date < ts]
        for name, src in spec["sources"].items():
            e = known[known.event_type == src["event_type"]]
            if src.get("category_prefix"):
                e = e[e.category.fillna("").str.startswith(src["category_prefix"])]
            for win in spec["aggregates"][0]["windows"]:
                if win != "career":
                    n, unit = int(win[:-1]), {"d": "days", "y": "years"}[win[-1]]
                    e_w = e[e.reported_date >= ts - relativedelta(**{unit: n})]
                else:
                    e_w = e
                cnt = e_w.groupby("officer_id").size()
                sus = e_w[(e_w.finding == "sustained") & (e_w.finding_date < ts)]
                sus_cnt = sus.groupby("officer_id").size()
                row[f"{name}_{win}_count"] = row.officer_id.map(cnt).fillna(0).astype("int64")
                row[f"{name}_{win}_sustained"] = (
                    row.officer_id.map(sus_cnt).fillna(0).astype("int64")
                )
        frames.append(row)
    df = pd.concat(frames, ignore_index=True)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    df.to_parquet(out)
    return {"wall": wall, "cpu": cpu, "rss": _rss(), "rows": len(df)}


def _counts_spec() -> dict[str, Any]:
    return {
        "name": "counts",
        "sources": {
            "complaint": {"event_type": "complaint"},
            "force_complaint": {"event_type": "complaint", "category_prefix": "05"},
            "use_of_force": {"event_type": "use_of_force"},
            "arrest": {"event_type": "arrest"},
        },
        "aggregates": [
            {
                "sources": ["complaint", "force_complaint", "use_of_force", "arrest"],
                "windows": ["90d", "180d", "1y", "3y", "5y", "career"],
                "metrics": ["count", "sustained"],
            }
        ],
    }


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)


def _run(fn: Any, *args: Any) -> dict[str, Any]:
    """Run one step in a fresh process (spawn) and return its measurements."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ data
def _slice(src: Path, out: Path, n_officers: int) -> Path:
    """The first ``n_officers`` officers of a package with their events and assignments."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "4GB"})
    con.execute(
        f"create table ids as select officer_id from read_parquet('{src}/officers.parquet') "
        f"order by officer_id limit {n_officers}"
    )
    for t in ("officers", "events", "assignments"):
        con.execute(
            f"copy (select * from read_parquet('{src}/{t}.parquet') "
            f"where officer_id in (select officer_id from ids)) to '{out}/{t}.parquet' "
            "(format parquet)"
        )
    return out


def _synth(out: Path, officers: int) -> tuple[Path, int]:
    from ews.synth import synthesize

    years = 10
    rep = synthesize(out, officers, years, seed=1, quiet=True)
    return out, rep.events


# ------------------------------------------------------------------ scale: the CLI, watched
GIB = 1024**3
YEARS, SEED = 10, 1


@dataclass
class Watched:
    """One command run in a fresh process, as measured from outside it."""

    args: list[str]
    code: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # user + system seconds of the child (and the children it waited for)
    rss: float = 0.0  # GiB: the child's peak RSS (wait4 rusage)
    tree: float = 0.0  # GiB: the peak of the process tree's summed RSS, sampled
    spill: float = 0.0  # GiB: the peak size of the spill folder, sampled
    min_free: float = 0.0  # GiB: the least available memory of the machine seen
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and end
    killed: str = ""
    stdout: str = ""


def _tree_rss(pid: int) -> int:
    """Bytes of RSS of ``pid`` and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _available() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    return float("inf")


def _folder_size(path: Path | None) -> int:
    if path is None or not path.is_dir():
        return 0
    total = 0
    for p in path.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:
            continue
    return total


def watch(
    args: list[str], env: dict[str, str], min_free_gib: float, spill: Path | None = None
) -> Watched:
    """Run ``python -m ews.cli ARGS`` in its own process group; its progress lines pass
    through to stderr, its stdout is kept. Kills the group if available memory falls under
    ``min_free_gib``."""
    w = Watched(args=args, load=(os.getloadavg()[0], 0.0), min_free=_available())
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ews.cli", *args], env=env, stdout=out, start_new_session=True
        )
        tree = spill_peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            tree = max(tree, _tree_rss(proc.pid))
            spill_peak = max(spill_peak, _folder_size(spill))
            free = _available()
            w.min_free = min(w.min_free, free)
            if free < min_free_gib and not w.killed:
                w.killed = f"available memory {free:.1f} GiB < {min_free_gib} GiB"
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.5)
        proc.returncode = w.code = os.waitstatus_to_exitcode(status)
        w.wall = time.perf_counter() - t0
        out.seek(0)
        w.stdout = out.read()
    w.cpu = usage.ru_utime + usage.ru_stime
    w.rss = usage.ru_maxrss * 1024 / GIB  # Linux: KiB
    w.tree, w.spill = tree / GIB, spill_peak / GIB
    w.load = (w.load[0], os.getloadavg()[0])
    return w


def _agency(data: Path, officers: int, env: dict[str, str], min_free: float) -> Path:
    """The synthetic agency of ``officers`` officers in ``data`` (generated once)."""
    folder = data / f"synth{officers}"
    stamp = folder / ".bench.json"
    params = {"officers": officers, "years": YEARS, "seed": SEED}
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        print(f"[{officers:,}] agency: {folder} (generated before)")
        return folder
    args = ["synth", str(folder), "--officers", str(officers), "--years", str(YEARS)]
    w = watch([*args, "--seed", str(SEED)], env, min_free)
    if w.code != 0:
        raise SystemExit(f"ews synth failed ({w.code}) {w.killed}")
    events = next((ln.split()[1] for ln in w.stdout.splitlines() if "events:" in ln), "?")
    print(
        f"[{officers:,}] ews synth: {events} events in {w.wall:.1f} s, peak RSS {w.rss:.2f} GiB "
        f"(load {w.load[0]:.2f} -> {w.load[1]:.2f})"
    )
    stamp.write_text(json.dumps(params))
    return folder


def build_cli(
    folder: Path,
    out: Path,
    engine: str,
    env: dict[str, str],
    min_free: float,
    dates_per_batch: int | None,
) -> Watched:
    """``ews features build`` of the 12 SYNTH_DATES into ``out``, watched."""
    first, last = SYNTH_DATES[0].isoformat(), SYNTH_DATES[-1].isoformat()
    args = ["features", "build", "--package", str(folder), "--out", str(out), "--overwrite"]
    args += ["--from", first, "--to", last, "--every", "6m", "--engine", engine]
    if dates_per_batch:
        args += ["--dates-per-batch", str(dates_per_batch)]
    spill = Path(env["EWS_TEMP_DIR"]) if engine == "duckdb" else None
    return watch(args, env, min_free, spill)


@dataclass
class Row:
    officers: int
    engine: str
    w: Watched
    rows: int = 0
    cols: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _describe(r: Row) -> str:
    w = r.w
    return (
        f"{w.wall:.1f} s wall, {w.cpu:.1f} s CPU, peak RSS {w.rss:.2f} GiB (process tree "
        f"{w.tree:.2f} GiB, spilled {w.spill:.2f} GiB), {r.rows:,} rows x {r.cols} columns, "
        f"load {w.load[0]:.2f} -> {w.load[1]:.2f}"
    )


def _table_size(path: Path) -> tuple[int, int]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return meta.num_rows, meta.num_columns


def compare_tables(a: Path, b: Path) -> tuple[int, int]:
    """Assert two feature tables equal (keys, integers and strings exactly, floats to 1e-9
    relative, missing in the same cells); returns (float cells, cells not bit-identical)."""
    import numpy as np
    import pyarrow.parquet as pq

    x, y = pq.ParquetFile(a), pq.ParquetFile(b)
    assert x.schema_arrow.names == y.schema_arrow.names, "columns differ"
    assert x.metadata.num_rows == y.metadata.num_rows, "rows differ"
    cells = differ = 0
    for name in x.schema_arrow.names:
        u = x.read(columns=[name]).column(0)
        v = y.read(columns=[name]).column(0)
        if u.type.equals(v.type) and str(u.type) == "double":
            p = u.to_numpy(zero_copy_only=False)
            q = v.to_numpy(zero_copy_only=False)
            assert (np.isnan(p) == np.isnan(q)).all(), f"{name}: missing in other cells"
            ok = ~np.isnan(p)
            assert np.allclose(p[ok], q[ok], rtol=1e-9, atol=1e-9), name
            cells += int(ok.sum())
            differ += int((p[ok] != q[ok]).sum())
        else:
            assert u.equals(v), f"{name}: values differ"
    return cells, differ


def scale(args: argparse.Namespace) -> list[Row]:
    """The --officers run: agencies, builds, the Spark check, the growth table."""
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.gettempdir()) / f"ews-bench-spill-{os.getpid()}"
    env = {
        **os.environ,
        "EWS_THREADS": str(args.threads),
        "EWS_TEMP_DIR": str(spill),
        "EWS_SPARK_DRIVER_MEMORY": args.spark_driver_memory,
        "PYTHONPATH": str(ROOT),
    }
    if args.memory_limit:
        env["EWS_MEMORY_LIMIT"] = args.memory_limit
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
    print(
        f"machine: {os.cpu_count()} cores, {ram:.1f} GiB; "
        f"DuckDB threads {args.threads}, memory limit {args.memory_limit or 'DuckDB default'}, "
        f"spill to {spill}; {len(SYNTH_DATES)} as-of dates {SYNTH_DATES[0]} .. {SYNTH_DATES[-1]}"
    )
    rows: list[Row] = []
    for n in sorted(args.officers):
        if getattr(args, "slice_of", None):
            folder = data / f"slice{n}"
            if not (folder / "officers.parquet").is_file():
                t = time.perf_counter()
                _slice(Path(args.slice_of), folder, n)
                print(
                    f"[{n:,}] the first {n:,} officers of {args.slice_of}: {folder} "
                    f"({time.perf_counter() - t:.1f} s)"
                )
        else:
            folder = _agency(data, n, env, args.min_free_gib)
        tag = "slice" if getattr(args, "slice_of", None) else ""
        duck = data / f"features{tag}{n}_duckdb.parquet"
        r = Row(
            n,
            "duckdb",
            build_cli(folder, duck, "duckdb", env, args.min_free_gib, args.dates_per_batch),
        )
        if r.w.code != 0:
            print(f"[{n:,}] DuckDB build FAILED (exit {r.w.code}) {r.w.killed}")
            rows.append(r)
            continue
        r.rows, r.cols = _table_size(duck)
        print(f"[{n:,}] ews features build, DuckDB: {_describe(r)}")
        rows.append(r)
        if args.engine == "spark":
            sp = data / f"features{tag}{n}_spark.parquet"
            s = Row(
                n,
                "spark",
                build_cli(folder, sp, "spark", env, args.min_free_gib, args.dates_per_batch),
            )
            if s.w.code != 0:
                print(f"[{n:,}] Spark build FAILED (exit {s.w.code}) {s.w.killed}")
                continue
            s.rows, s.cols = _table_size(sp)
            cells, differ = compare_tables(duck, sp)
            s.extra = {"float_cells": cells, "not_bit_identical": differ}
            rows.append(s)
            print(f"[{n:,}] ews features build, Spark local[2]: {_describe(s)}")
            print(
                f"[{n:,}] Spark == DuckDB: {s.rows:,} rows x {s.cols} columns equal "
                f"({differ:,} of {cells:,} float cells not bit-identical); DuckDB "
                f"{r.w.wall:.1f} s, Spark {s.w.wall:.1f} s (incl. session start)"
            )
    _growth([r for r in rows if r.engine == "duckdb" and r.w.code == 0])
    return rows


def _growth(rows: list[Row]) -> None:
    if not rows:
        return
    print(
        "\n[growth] officers     rows        wall s   CPU s   peak RSS GiB   x wall   x RSS   load"
    )
    prev: Row | None = None
    for r in rows:
        xs = (
            f"{r.w.wall / prev.w.wall:6.1f}   {r.w.rss / prev.w.rss:5.1f}"
            if prev
            else "     -       -"
        )
        print(
            f"[growth] {r.officers:>9,}  {r.rows:>11,}  {r.w.wall:8.1f}  {r.w.cpu:6.1f}  "
            f"{r.w.rss:12.2f}   {xs}   {r.w.load[0]:.2f}"
        )
        prev = r


def _fmt(m: dict[str, Any]) -> str:
    return (
        f"{m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, peak RSS {m['rss'] / 1024:.2f} GiB, "
        f"{m['rows']:,} rows"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--officers", type=int, nargs="+", help="scale run at these sizes (e.g. 10000 100000)"
    )
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "ews-bench-features"))
    ap.add_argument("--slice-of", help="build on the first N officers of this package instead")
    ap.add_argument("--memory-limit", default="10GB", help="EWS_MEMORY_LIMIT ('' for DuckDB's)")
    ap.add_argument("--dates-per-batch", type=int, default=None, help="default: the product's")
    ap.add_argument("--min-free-gib", type=float, default=4.0)
    ap.add_argument("--spark-driver-memory", default="4g")
    ap.add_argument("--skip-chicago", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-spark", action="store_true")
    ap.add_argument("--million", action="store_true", help="also 1M officers (slow, ~100M events)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (EWS_THREADS)")
    args = ap.parse_args()
    os.environ["EWS_THREADS"] = str(args.threads)
    if args.officers:
        scale(args)
        return
    print(f"machine: {os.cpu_count()} cores; DuckDB threads {args.threads}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_features_"))

    if not args.skip_chicago:
        from ews.adapters.cpdp import convert_cpdp

        t = time.perf_counter()
        convert_cpdp(CHICAGO, tmp / "chicago")
        print(f"\n[chicago] converted CPDP in {time.perf_counter() - t:.1f} s")
        m = _run(_step_build, str(tmp / "chicago"), CHICAGO_DATES, "duckdb", "rank", None, None)
        print(
            f"[chicago] default spec ({m['cols']} columns), 11 as-of dates, cohort holding a "
            f"rank: {_fmt(m)} (target < 20 s)"
        )

    if not args.skip_synthetic:
        import pandas as pd

        print()
        args.officers = [10_000, 100_000] + ([1_000_000] if args.million else [])
        args.engine = "duckdb"
        scale(args)

        # the 10k-officer slice of the 100k agency
        sl = _slice(Path(args.data) / "synth100000", tmp / "slice10k", 10_000)
        pd_out, db_out = tmp / "pandas.parquet", tmp / "duck.parquet"
        mp_ = _run(_step_pandas, str(sl), SYNTH_DATES, str(pd_out))
        md = _run(_step_build, str(sl), SYNTH_DATES, "duckdb", None, "counts", str(db_out))
        a, b = pd.read_parquet(db_out), pd.read_parquet(pd_out)
        a = a.sort_values(["as_of_date", "officer_id"]).reset_index(drop=True)
        b = b.sort_values(["as_of_date", "officer_id"]).reset_index(drop=True)
        b["as_of_date"] = b["as_of_date"].astype(a["as_of_date"].dtype)
        pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False)
        print(
            f"\n[slice 10k] count+sustained columns ({md['cols']}), 12 dates: pandas "
            f"{mp_['wall']:.1f} s, DuckDB {md['wall']:.1f} s: DuckDB is "
            f"x{mp_['wall'] / md['wall']:.1f} faster (results equal)"
        )
        if not args.skip_spark:
            full_duck = tmp / "duck_full.parquet"
            spark_out = tmp / "spark_full.parquet"
            m1 = _run(_step_build, str(sl), SYNTH_DATES, "duckdb", None, None, str(full_duck))
            m2 = _run(_step_build, str(sl), SYNTH_DATES, "spark", None, None, str(spark_out))
            x, y = pd.read_parquet(full_duck), pd.read_parquet(spark_out)
            pd.testing.assert_frame_equal(x, y, check_dtype=False, rtol=1e-9, atol=1e-9)
            print(
                f"[slice 10k] default spec: DuckDB {m1['wall']:.1f} s, Spark local[2] "
                f"{m2['wall']:.1f} s (incl. session start): identical results"
            )
    print(f"\n(scratch data in {tmp})")


if __name__ == "__main__":
    main()
