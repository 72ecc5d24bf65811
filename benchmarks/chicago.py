"""Run the Chicago (CPDP) benchmark (same as ``ews benchmark chicago``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/chicago.py [DATA] [OUT]

DATA defaults to ../shared/data/chicago-cpdp-2018, OUT to ./chicago-benchmark. Prints the
table of rules and models per label and test date and the targets; writes OUT/results.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chicago-cpdp-2018"


def main(argv: list[str]) -> None:
    from models.benchmarks import format_chicago, run_chicago

    data = Path(argv[0]) if argv else DEFAULT
    out = Path(argv[1]) if len(argv) > 1 else Path("chicago-benchmark")
    result = run_chicago(data, out, progress=True)
    print(format_chicago(result))
    print(f"\nwrote {out / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
