"""Benchmark: ``ews train`` on a synthetic agency shaped like Chicago (prints figures; not a
test).

    .venv/bin/python benchmarks/bench_train.py [--officers 13000] [--test-years 7]
        [--inner 2] [--labels sustained_or_force any_complaint] [--threads N]
        [--data DIR] [--no-baseline]

or ``ews benchmark train`` with the same options. An agency of ``--officers`` officers with
records from 2004 (``ews synth``, seed 1; kept in ``--data`` and reused), ingested into a
fresh workspace, then ``ews train`` as a user runs it (its own process, the champion
registered) with the Chicago benchmark's grid, selection and rules
(``models/experiments/chicago.yaml``) on training dates every January 1 since 2005,
``--test-years`` yearly test dates ending two years before the data end, and ``--inner``
inner validation splits. Printed: wall and CPU seconds of the run, its time per step (the
``timings`` of results.json), the load average before and after, and, unless
``--no-baseline``, a same-run baseline: the same train with ``EWS_THREADS=1`` and
``EWS_FIT_CACHE=0`` (one fit at a time, every split fitted anew, as before the fit cache),
with whether the two runs' records (every accuracy figure) are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.chicago import CHICAGO_CONFIG  # noqa: E402
from benchmarks.common import BenchmarkError  # noqa: E402
from benchmarks.triage_peer import _ews  # noqa: E402

AGENCY = "bench_train"
FIRST_YEAR = 2004  # records start here; training dates every January 1 from 2005


@dataclass
class TrainRun:
    """One timed ``ews train``: wall and CPU seconds, its steps, the load around it."""

    name: str
    threads: int
    cache: bool
    seconds: float
    cpu_seconds: float
    steps: dict[str, float]
    records: list[dict[str, Any]]
    load_before: tuple[float, ...]
    load_after: tuple[float, ...]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        steps = ", ".join(
            f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}"
            for k, v in self.steps.items()
            if k != "total_s"
        )
        return (
            f"{self.name}: EWS_THREADS={self.threads}, fit cache {'on' if self.cache else 'off'}: "
            f"{self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU (process and workers); "
            f"steps, wall s: {steps}; load average before {_load(self.load_before)}, after "
            f"{_load(self.load_after)}"
        )


def _load(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def agency(data: Path, officers: int, years: int, env: dict[str, str]) -> Path:
    """The synthetic agency of ``officers`` officers over ``years`` years from 2004 (``ews
    synth``, seed 1), made once in ``data`` and reused."""
    out = Path(data) / f"synth{officers}x{years}"
    if (out / "events.parquet").is_file():
        print(f"agency: {out} (generated before)")
        return out
    seconds, _ = _ews(
        "synth",
        str(out),
        "--officers",
        str(officers),
        "--years",
        str(years),
        "--start-year",
        str(FIRST_YEAR),
        "--seed",
        "1",
        env=env,
    )
    print(f"agency: {officers:,} officers, {years} years, `ews synth` in {seconds:.1f} s")
    return out


def write_config(
    path: Path, test_years: list[int], inner: int, labels: list[str], n_boot: int
) -> Path:
    """The Chicago benchmark's config with this agency's dates: training dates every January
    1 since 2005, ``test_years`` as test dates, ``inner`` inner splits, no cohort filter."""
    import yaml

    cfg = yaml.safe_load(CHICAGO_CONFIG.read_text())
    cfg.update(
        name="bench-train",
        agency=AGENCY,
        cohort=None,
        labels=labels,
        n_boot=n_boot,
        splitter={
            "test_dates": [date(y, 1, 1).isoformat() for y in test_years],
            "label_window": "1y",
            "train_history": None,
            "first_train_date": f"{FIRST_YEAR + 1}-01-01",
            "train_every": "1y",
            "label_maturity": True,
            "inner_splits": inner,
        },
    )
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train(
    name: str, config: Path, out: Path, env: dict[str, str], threads: int, cache: bool
) -> TrainRun:
    """``ews train --config CONFIG`` in its own process with ``threads`` and the fit cache
    on or off; its figures from results.json."""
    run_env = {**env, "EWS_THREADS": str(threads), "EWS_FIT_CACHE": "1" if cache else "0"}
    before = os.getloadavg()
    seconds, cpu = _ews("train", "--config", str(config), "--out", str(out), env=run_env)
    after = os.getloadavg()
    results = json.loads((out / "results.json").read_text())
    return TrainRun(
        name=name,
        threads=threads,
        cache=cache,
        seconds=seconds,
        cpu_seconds=cpu,
        steps=results.get("timings", {}),
        records=results.get("records", []),
        load_before=tuple(round(v, 2) for v in before),
        load_after=tuple(round(v, 2) for v in after),
    )


def run(
    officers: int = 13_000,
    test_years: int = 7,
    inner: int = 2,
    labels: list[str] | None = None,
    threads: int | None = None,
    data: Path | None = None,
    baseline: bool = True,
    n_boot: int = 1000,
) -> list[TrainRun]:
    """Make (or reuse) the agency, ingest it into a fresh workspace, time ``ews train`` and,
    with ``baseline``, the same train on one thread without the fit cache; print each."""
    if officers < 1 or test_years < 1 or inner < 0:
        raise BenchmarkError("--officers and --test-years must be positive, --inner >= 0")
    threads = threads or os.cpu_count() or 1
    labels = labels or ["sustained_or_force", "any_complaint"]
    # test years end one label window before the last full year of records
    first_test = 2016 - test_years + 1
    if first_test < FIRST_YEAR + 2 + inner:
        raise BenchmarkError(f"--test-years {test_years}: too many for records from 2004")
    years = 2017 - FIRST_YEAR + 1  # records 2004..2017: labels of the 2016 test date end
    data = Path(data or Path(tempfile.gettempdir()) / "ews-bench-train")
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ews-bench-train-") as tmp:
        root = Path(tmp)
        env = {
            **os.environ,
            "EWS_HOME": str(root / "ews-home"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "EWS_BUILD_REPORTS": "false",
        }
        for var in ("EWS_MLFLOW_URI", "EWS_DATABASE_URL", "OMP_NUM_THREADS"):
            env.pop(var, None)  # as a user runs it
        pkg = agency(data, officers, years, env)
        _ews("ingest", str(pkg), "--agency", AGENCY, env=env)
        config = write_config(
            root / "experiment.yaml",
            list(range(first_test, 2017)),
            inner,
            labels,
            n_boot,
        )
        print(
            f"ews train: {officers:,} officers, training dates every January 1 from 2005, "
            f"test dates {first_test}..2016 ({test_years}), {inner} inner splits, labels "
            f"{', '.join(labels)}, Chicago's grid; {os.cpu_count()} cores"
        )
        runs = [train("ews train", config, root / "run", env, threads, cache=True)]
        print(runs[0].describe(), flush=True)
        if baseline:
            base = train("baseline", config, root / "base", env, 1, cache=False)
            print(base.describe())
            same = json.dumps(base.records) == json.dumps(runs[0].records)
            print(
                f"same run: {base.seconds / runs[0].seconds:.2f}x faster than the baseline "
                f"({base.seconds:.1f} s -> {runs[0].seconds:.1f} s); records (every accuracy "
                f"figure) {'identical' if same else 'DIFFERENT'}"
            )
            runs.append(base)
    return runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--officers", type=int, default=13_000, help="officers of the agency")
    ap.add_argument("--test-years", type=int, default=7, help="yearly test dates, to 2016")
    ap.add_argument("--inner", type=int, default=2, help="inner validation splits per split")
    ap.add_argument("--labels", nargs="+", default=None, help="labels (default: two)")
    ap.add_argument("--threads", type=int, default=None, help="EWS_THREADS (default: cores)")
    ap.add_argument("--data", type=Path, default=None, help="where the agency is kept")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--no-baseline", action="store_true", help="skip the same-run baseline")
    args = ap.parse_args(argv)
    try:
        run(
            args.officers,
            args.test_years,
            args.inner,
            args.labels,
            args.threads,
            args.data,
            baseline=not args.no_baseline,
            n_boot=args.n_boot,
        )
    except BenchmarkError as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
