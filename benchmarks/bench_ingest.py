"""Benchmark: validate + ingest of a large package against pyarrow reading the same CSV files.

Generates (``ews.synth``, CSV; about 10M events for 100,000 officers over 10 years) or
reuses (``--package PATH``) a contract package, then measures ``--repeat`` runs (default 3),
alternating, and reports the best and the median (the machine is shared): the time
``pyarrow.csv.read_csv`` takes to read the CSV files alone, and the time of ``ews ingest``
(validate + normalize + hash + write) in a fresh workspace, run in a child process so that
its peak RSS can be read from ``resource.getrusage``. Prints events/second, the ratio
ingest/read in the best and in the median run (target <= 3 in both) and the peak RSS
(target < 6 GiB); exits 1 when a target is missed.

    .venv/bin/python benchmarks/bench_ingest.py --officers 100000 --years 10
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

EVENT_TYPES = np.array(["arrest", "traffic_stop", "complaint", "use_of_force", "commendation"])
FINDINGS = np.array(["sustained", "not_sustained", "unfounded", "exonerated", "pending", ""])
_OPTS = pacsv.WriteOptions(quoting_style="needed")


def _dates(days: np.ndarray) -> pa.Array:
    """Day numbers since 1970 as ISO date strings."""
    return pc.cast(pa.array(days.astype("int32"), pa.int32()).cast(pa.date32()), pa.string())


def make_package(folder: Path, n_events: int, n_officers: int, seed: int = 1) -> Path:
    """Write a simple valid contract package of CSV files (numpy, no per-row Python)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    start = np.datetime64("2010-01-01").astype(int)
    appointed = start - rng.integers(0, 20 * 365, n_officers)
    ids = pc.binary_join_element_wise("o", pa.array(np.arange(n_officers)).cast(pa.string()), "")
    officers = pa.table(
        {
            "officer_id": ids,
            "appointed_date": _dates(appointed),
            "separation_date": pa.array([None] * n_officers, pa.string()),
            "birth_year": pa.array(1960 + rng.integers(0, 35, n_officers)).cast(pa.string()),
            "sex": pa.array(rng.choice(np.array(["M", "F"]), n_officers)),
            "race": pa.array(rng.choice(np.array(["A", "B", "C", "D"]), n_officers)),
        }
    )
    pacsv.write_csv(officers, folder / "officers.csv", write_options=_OPTS)
    chunk = 2_000_000
    with pacsv.CSVWriter(folder / "events.csv", _event_schema(), write_options=_OPTS) as writer:
        for lo in range(0, n_events, chunk):
            n = min(chunk, n_events - lo)
            off = rng.integers(0, n_officers, n)
            event_date = start + rng.integers(0, 10 * 365, n)
            reported = event_date + rng.integers(0, 30, n)
            etype = rng.choice(EVENT_TYPES, n, p=[0.6, 0.3, 0.05, 0.04, 0.01])
            finding = np.where(etype == "complaint", rng.choice(FINDINGS, n), "")
            fdate = np.where(
                (finding != "") & (finding != "pending"), reported + rng.integers(0, 400, n), -1
            )
            fd = _dates(fdate)
            fd = pc.if_else(pa.array(fdate < 0), pa.scalar(None, pa.string()), fd)
            eid = pc.binary_join_element_wise(
                "e", pa.array(np.arange(lo, lo + n)).cast(pa.string()), ""
            )
            batch = pa.table(
                {
                    "event_id": eid,
                    "officer_id": pc.take(ids, pa.array(off)),
                    "event_type": pa.array(etype),
                    "event_date": _dates(event_date),
                    "reported_date": _dates(reported),
                    "case_id": pa.array([None] * n, pa.string()),
                    "category": pa.array([None] * n, pa.string()),
                    "finding": pc.if_else(
                        pa.array(finding == ""), pa.scalar(None, pa.string()), pa.array(finding)
                    ),
                    "finding_date": fd,
                    "outcome": pa.array([None] * n, pa.string()),
                },
                schema=_event_schema(),
            )
            writer.write_table(batch)
    return folder


def _event_schema() -> pa.Schema:
    names = [
        "event_id", "officer_id", "event_type", "event_date", "reported_date", "case_id",
        "category", "finding", "finding_date", "outcome",
    ]  # fmt: skip
    return pa.schema([(n, pa.string()) for n in names])


def synth_package(folder: Path, officers: int, years: int) -> Path:
    """The package from helper ``ews.synth`` (CSV), or the simple numpy one without it."""
    try:
        from ews.synth import synthesize
    except ImportError:
        return make_package(folder, officers * years * 10, officers)
    synthesize(folder, officers=officers, years=years, seed=1, fmt="csv", quiet=True)
    return folder


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _ingest_once(package: Path, home: Path) -> tuple[float, float, float, float]:
    """Run ``ews ingest`` in a child process: (wall s, in-command s, CPU s, peak RSS GiB)."""
    import re

    env = dict(os.environ, EWS_HOME=str(home))
    cmd = [sys.executable, "-m", "ews.cli", "ingest", str(package), "--agency", "bench"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cpu0 = _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr)
        raise SystemExit(f"ingest failed with exit {proc.returncode}")
    print("  " + proc.stdout.strip())
    m = re.search(r"done in ([0-9.]+) s", proc.stderr)
    inner = float(m.group(1)) if m else wall
    # ru_maxrss of children is the max over all children so far (KiB on Linux)
    return wall, inner, cpu, max(rss, before) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--package", type=Path, help="reuse this package instead of generating")
    parser.add_argument("--officers", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each; the best and the median count"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated package")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="ews-bench-"))
    package = args.package
    if package is None:
        t0 = time.perf_counter()
        package = synth_package(tmp / "bench_agency", args.officers, args.years)
        print(f"generated the package in {time.perf_counter() - t0:.1f} s: {package}")
    size = sum(p.stat().st_size for p in package.iterdir() if p.is_file())
    csvs = sorted(p for p in package.iterdir() if p.name.endswith((".csv", ".csv.gz")))
    print(f"package: {size / 2**20:,.0f} MiB, files: {', '.join(p.name for p in csvs)}")

    reads, walls, inners, rss = [], [], [], 0.0
    read_cpus, ingest_cpus = [], []
    n_events = 0
    for i in range(args.repeat):
        t0 = time.perf_counter()
        cpu0 = _cpu(resource.RUSAGE_SELF)
        for p in csvs:
            t = pacsv.read_csv(p)
            if p.name.startswith("events"):
                n_events = t.num_rows
            del t
        reads.append(time.perf_counter() - t0)
        read_cpus.append(_cpu(resource.RUSAGE_SELF) - cpu0)
        print(
            f"run {i + 1}: pyarrow.csv.read_csv of all CSV files: {reads[-1]:.2f} s "
            f"({read_cpus[-1]:.1f} CPU s)"
        )
        home = tmp / f"ews-home-{i}"
        wall, inner, cpu, peak = _ingest_once(package, home)
        ingest_cpus.append(cpu)
        walls.append(wall)
        inners.append(inner)
        rss = max(rss, peak)
        print(
            f"run {i + 1}: ews ingest: {wall:.2f} s wall, {inner:.2f} s in the command "
            f"({cpu:.1f} CPU s)"
        )
        shutil.rmtree(home, ignore_errors=True)

    import statistics

    read, wall, inner = min(reads), min(walls), min(inners)
    med_read, med_wall = statistics.median(reads), statistics.median(walls)
    med_inner = statistics.median(inners)
    print(
        f"events: {n_events:,}; load average now: {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores"
    )
    print(f"best pyarrow read: {read:.2f} s")
    print(
        f"best validate+ingest: {wall:.2f} s wall (process start included), "
        f"{inner:.2f} s in the command"
    )
    print(f"events/second (wall): {n_events / wall:,.0f}")
    print(
        f"ratio ingest/read, best runs: {wall / read:.2f} wall, "
        f"{inner / read:.2f} in the command (target <= 3)"
    )
    print(
        f"ratio ingest/read, median runs: {med_wall / med_read:.2f} wall, "
        f"{med_inner / med_read:.2f} in the command (target <= 3)"
    )
    print(
        f"CPU seconds (inflated too when the machine is shared): read {min(read_cpus):.1f}, ingest "
        f"{min(ingest_cpus):.1f}, ratio {min(ingest_cpus) / min(read_cpus):.2f}"
    )
    print(f"peak RSS of ingest: {rss:.2f} GiB (target < 6)")
    if args.keep and args.package is None:
        print(f"kept the package in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    met = wall / read <= 3 and med_wall / med_read <= 3 and rss < 6
    print("targets met" if met else "a target is missed")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
