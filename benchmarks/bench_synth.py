"""Benchmark: the synthetic agency generator at scale (default 100k officers over 10 years,
about 10 million events).

Runs ``ews.synth.synthesize`` in a child process (so that its peak RSS is its own, read from
``resource.getrusage``) into a temporary folder and prints: events, seconds, events per
second, peak RSS and the size of the package. Target: well under a minute.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_synth.py [--officers 100000]
        [--years 10] [--format parquet|csv] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys
from pathlib import Path
from ews.synth import synthesize
r = synthesize(Path(sys.argv[1]), officers=int(sys.argv[2]), years=int(sys.argv[3]), seed=1,
               fmt=sys.argv[4], quiet=True)
print(json.dumps({"events": r.events, "officers": r.officers, "assignments": r.assignments,
                  "seconds": r.seconds, "per_officer_year": r.events / r.active_officer_years}))
"""


def run_once(officers: int, years: int, fmt: str) -> dict[str, float]:
    """One generation in a child process; returns its counts, times and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="ews-bench-synth-") as tmp:
        out = Path(tmp) / "agency"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(out), str(officers), str(years), fmt],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        )
        wall = time.perf_counter() - t0
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in out.iterdir())
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {**result, "wall": wall, "peak_rss_mib": rss, "package_mib": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--officers", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(
        f"synthesize: {args.officers:,} officers x {args.years} years, {args.format}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} cores"
    )
    for i in range(args.repeat):
        r = run_once(args.officers, args.years, args.format)
        print(
            f"run {i + 1}: events {r['events']:,.0f} ({r['per_officer_year']:.1f} per active "
            f"officer-year), officers {r['officers']:,.0f}, assignments {r['assignments']:,.0f}; "
            f"generate+write {r['seconds']:.1f} s (process {r['wall']:.1f} s), "
            f"{r['events'] / r['seconds']:,.0f} events/s, peak RSS {r['peak_rss_mib']:,.0f} MiB, "
            f"package {r['package_mib']:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
