"""Measure the triage-peer experiment (same as ``ews benchmark triage-peer``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/triage_peer.py [DATA] [--no-share-depths]

DATA defaults to ../shared/data/triage-peer-10k. Prints per-stage wall-clock and CPU seconds
and precision@10%, recall@10% and ROC AUC per test date and model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "triage-peer-10k"


def main(argv: list[str]) -> None:
    from models.benchmarks import format_triage_peer, run_triage_peer

    args = [a for a in argv if not a.startswith("--")]
    data = Path(args[0]) if args else DEFAULT
    result = run_triage_peer(data, share_depths="--no-share-depths" not in argv)
    print(format_triage_peer(result))


if __name__ == "__main__":
    main(sys.argv[1:])
