"""Benchmark of the as-of feature builder (prints measured figures; not a test).

    .venv/bin/python benchmarks/bench_features.py [--skip-chicago] [--skip-synthetic]
        [--skip-spark] [--million] [--threads N]

1. Chicago (CPDP 2018): convert with ews.adapters.cpdp, then the default spec at Jan 1
   2005..2015 (11 dates, cohort: officers holding a rank). Target: under 20 s.
2. Synthetic agency (ews.synth): 100k officers / ~10M events / 12 as-of dates on DuckDB.
   Target: under 60 s and 8 GiB. On a 10k-officer slice of it: a plain pandas
   implementation (one groupby per date and window, as a loop of queries would do) of the
   count and sustained columns vs DuckDB on the same columns (equal results asserted, time
   ratio printed), and Spark local[2] on the full default spec (results asserted equal to
   DuckDB's, time printed).
3. Cost growth: DuckDB wall time at 10k and 100k officers (1M with --million).

Every measured step runs in a fresh process, so peak RSS is that step's own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
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
    con = duckdb.connect()
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


def _fmt(m: dict[str, Any]) -> str:
    return (
        f"{m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, peak RSS {m['rss'] / 1024:.2f} GiB, "
        f"{m['rows']:,} rows"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-chicago", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-spark", action="store_true")
    ap.add_argument("--million", action="store_true", help="also 1M officers (slow, ~100M events)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (EWS_THREADS)")
    args = ap.parse_args()
    os.environ["EWS_THREADS"] = str(args.threads)
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

        sizes = [10_000, 100_000] + ([1_000_000] if args.million else [])
        times: dict[int, float] = {}
        for n in sizes:
            t = time.perf_counter()
            folder, events = _synth(tmp / f"synth{n}", n)
            print(
                f"\n[synthetic {n:,}] generated {events:,} events "
                f"in {time.perf_counter() - t:.1f} s"
            )
            m = _run(_step_build, str(folder), SYNTH_DATES, "duckdb", None, None, None)
            times[n] = m["wall"]
            print(
                f"[synthetic {n:,}] DuckDB, default spec ({m['cols']} columns), 12 dates: {_fmt(m)}"
            )
            if n == 100_000:
                print("[synthetic 100,000] target < 60 s and < 8 GiB")
        base = sizes[0]
        for n in sizes[1:]:
            print(
                f"[growth] {base:,} -> {n:,} officers: {times[base]:.1f} s -> {times[n]:.1f} s "
                f"(x{times[n] / times[base]:.1f} for x{n // base} data)"
            )

        # the 10k-officer slice of the 100k agency
        sl = _slice(tmp / "synth100000", tmp / "slice10k", 10_000)
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
