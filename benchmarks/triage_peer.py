"""The triage-peer benchmark: the peer system's experiment, run through ``ews train``.

    ews benchmark triage-peer --data ../shared/data/triage-peer-10k
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.triage_peer [DATA]

On the synthetic agency ``triage-peer-10k`` the peer system triage 6.0.0 ran one experiment
(``../shared/data/triage-peer-10k/README.md``): cohort of officers appointed before t and not
separated, label "a sustained complaint or a use-of-force report in the year after t", 12
count features, test dates 2019-2022 each trained on as-of dates every 6 months over up to
3 years (labels from 2018 on), 16 models, every prediction and model stored. Here the same
experiment is ``models/experiments/triage_peer.yaml``, run by the product's own command in a
fresh workspace:

1. ``ews ingest DATA`` (validates and stores the package; triage's figure has no such step,
   so it is timed apart);
2. the workspace's MLflow store is created (once per workspace; timed apart);
3. ``ews train --config models/experiments/triage_peer.yaml``, timed end to end from the
   command line (Python start and imports included): features, labels, 16 fits, every test
   prediction written to ``predictions.parquet``, every model registered in MLflow.

The reference figures (triage's seconds and precision) live here, not in the library.

Measured 2026-12-03 17:02, same run, other work paused (load average 1.7 before), with
``--triage-python`` (``benchmarks/triage``): ``ews train`` 28.6 s end to end from the command
line, EWS_THREADS=2 (steps, wall s: check config 2.7, features 2.6, labels 2.4, fit 11.8,
evaluate 1.4, rules 0.3, register 4.7); triage 6.0.0 74.1 s writing its test predictions
only (2.6x) and 153.2 s with its training-set predictions as well, the profile of its
reference figure (5.4x). ``ews train`` with one thread, as triage's forests run: 42.3 s.
precision@10%, mean of the 4 test dates: ews 0.701-0.704, triage 0.701-0.705 per model. The
same machine ran triage's README profile 1.7x slower than the 89.7 s of its reference
(another machine), which is why the ratio is taken in one run. Of the 28.6 s, the forests'
fit is 11.8 s (4 forests of 200 trees at depth 10 on 7k-51k rows on 2 cores; the depth-5
forests are cut from them); registering 16 models went from 15.4 s to 4.7 s by saving them in
forked workers, one signature per model kind and skops' schema written without indentation.

Measured 2026-12-07 00:35-00:42, same run, on a machine shared with other work (load average
11.3-12.2 throughout): ``ews train`` 62.3 s (CPU 28.3 s; steps, wall s: check config 6.2,
features 6.6, labels 1.0, fit 27.8, evaluate 2.1, rules 0.7, register 11.4), triage 145.0 s
test predictions only (2.3x, target 5x: not met) and 169.7 s README profile (2.7x, target
10x: not met); precision@10% ews 0.701-0.704, triage 0.701-0.705. The labels now take one
query for their five knowledge cutoffs (2.6 CPU-s before, 0.8), the registry's workers 2 CPU-s
less (gc.freeze before the fork). The fit (13.6 CPU-s) is half of what remains.

Measured 2026-12-07 01:21-01:25 (branch peer2 with main's parallel fitting merged), same
run, load average 2.6-3.3 before and after ``ews train``: ``ews train`` 19.7 s (CPU 23.6 s
with its child processes; steps, wall s: check config 1.3, features 2.0, labels 0.5, fit
10.2, evaluate 0.8, rules 0.2, register 3.4), triage 50.6 s test predictions only (2.6x,
target 5x: not met) and 109.6 s README profile (5.6x, target 10x: not met); precision@10% ews
0.701-0.704, triage 0.701-0.705. Main without these changes, a minute before at the same
load: 27.0 s. Registering now happens in a process forked at the start (MLflow and skops
imported, the store opened and a first model saved there while features build), so the job
never imports MLflow; and the heap is frozen at exit, which spared Python's last full
collection over some 365k objects (2.5 s at load 10, up to 8 s after a loaded run).

Measured 2026-12-07 03:22-03:37 (branch peer3), main then the branch, each with triage in the
same run, on a machine shared with other work (load average 7.0-11.6 before ``ews train``):
main ``ews train`` 66.0 s (CPU 30.1 s; triage 157.3 s README profile, 2.4x; 114.6 s test
predictions only, 1.7x); the branch 46.7 s (CPU 23.7 s; steps, wall s: check config 3.3,
features 4.8, labels 1.8, fit 23.4, evaluate 1.1, rules 0.4, register 9.9; triage 199.4 s,
4.3x, and 126.2 s, 2.7x): both targets still not met. precision@10% ews 0.703-0.708, triage
0.701-0.705. Back to back without triage (load 11.0-11.7): main 77.2 s (35.6 CPU-s), the
branch 38.5 s (24.4 CPU-s). Two changes: a batch of only forests and logistic regressions is
fitted in this process, each forest on EWS_THREADS threads (no loky workers: their imports,
the matrices written and each forest pickled back cost 8.6 of the run's 37 CPU-s), and the
forests grow each tree on a bootstrap sample of half the rows (``max_samples: 0.5``; printed
beside triage's grid; 28% less fit CPU, quality the same over 5 seeds). The fit is still
about 10 CPU-s of the ~24: four 200-tree depth-10 scikit-learn forests.

Measured 2026-12-07 11:18 and 11:36, quiet machine (load average 0.7-1.8), each with triage
in the same run: ``ews train`` 8.5 s (CPU 14.1 s) against triage's 40.8 s test predictions
only (4.8x) and 75.5 s README profile (8.9x), then 9.6 s (CPU 15.8 s; the same code, the
machine slower at the time) against 43.0 s (4.5x) and 84.2 s (8.7x): neither target met.
Saving a model now audits its skops file with skops instead of loading it back (MLflow's
check, the same refusal of untrusted types) and skips MLflow's environment check for our own
unpinned requirements: the registering process went from about 5.8 to 4.4 CPU-s (forest
saves 0.26 CPU-s each), and ``ews train`` from 9.4-9.8 s to 8.6-8.9 s in runs alternated
with the code before.
What is left is CPU on 2 saturated cores: the job 9.5 CPU-s (imports 1.5, features and
labels 1.2, the four forests 5.8, evaluation 0.7), the registering process 4.4 (imports of
skops, MLflow and its SQL store 2.2, eight forests' skops files 2.1), and 1.3-1.7 s of system
time. Both cores are busy from the end of the config check (1.2 s, imports) to the
registration (0.3-0.5 s, the job waiting). The same code's time varies by 10-15% with the
machine's state (CPU 14.1 s in one run, 15.8 s in another), so each ratio is taken in one run.

Measured 2026-12-07 12:33-14:00 on another machine of the kind, slower (the same code's
``ews train`` took 14.7 s and 24.1 CPU-s there, against 8.5-9.6 s the session before; a
single-thread 200-tree forest fit on 70k rows 4.8-5.1 s), load average 1.1-2.0, each with
triage in the same run. Before this session's changes: 14.7 s against triage's 61.6 s test
predictions only (4.2x) and 122.6 s README profile (8.3x). After them, four runs: 13.2 s
(58.8 / 116.1 s: 4.5x / 8.8x), 14.0 s (57.0 / 128.7 s: 4.1x / 9.2x), 13.9 s (66.1 / 132.2
s: 4.8x / 9.5x), 14.0 s (62.5 / 141.6 s: 4.5x / 10.1x). The 5x target was met in none; 10x
in one of four. precision@10% unchanged (ews 0.703-0.708, triage 0.701-0.705). Two changes:
the features and labels are built in a helper process forked at the start of the run
(``models.prebuild``) while the config check imports scikit-learn, which had left a core
idle for 1.7-2.1 s (``check config`` then ``build features`` and ``build labels`` took
3.0-3.9 s in a row; now 1.7-2.3 s, the helper finishing 0.2 s after the check); and a
forest's trees check their labels and read their estimator's parameter names without the
Python work scikit-learn repeats per tree (``models.forest.fast_class_encoding``: the same
trees; 0.34 to 0.16 s per 200 tiny trees). Tried and not kept: fitting the sets in a
background thread so that each split is evaluated while the next is fitted (the sets then
finish smallest last, the registering process saves the largest forests after the request,
and evaluation slowed beside the fits: 13.7-14.6 s against 11.8-15.1 s alternated).
Where the time goes now (one traced run, 12.4 s): Python start and imports to the run 0.4 s;
pandas, then the config check (1.6 s) beside the helper (1.9 s); the four forests 7.9 s on
two cores shared with the registering process (its imports of skops, MLflow and its SQL
store 2.5 CPU-s, then the saves); evaluation of the four splits 1.5 s on one core; the
registration request 0.7 s while the job waits.

Measured 2026-12-07 15:19-16:31 on a third machine of the kind, faster (the same code's
``ews train`` 8.0-10.4 s; its speed moved by a quarter between identical runs), each with
triage in the same run. The code of the session before, five runs: 8.0 s (80.5 / 41.2 s:
10.1x / 5.1x, both met), 9.5 s (81.8 / 44.6 s: 8.7x / 4.7x), 8.0 s (87.3 / 43.8 s: 10.9x /
5.4x, both met), 10.1 s (98.3 / 49.1 s: 9.7x / 4.9x), 10.4 s (84.1 / 48.2 s: 8.1x / 4.6x).
A profile (perf, all processes) showed 5% of the CPU in Python's cyclic garbage collector:
full collections walking the objects of imports that stay alive for the process's life. The
registering process (warm-up), the prebuild helper and the run's config check now import with
the collector paused (``ews.processes.collection_paused``; the registering process then
freezes what it imported): time in collections on triage-peer, from gc callbacks, went from
1.17 to 0.33 CPU-s (registering process 0.76 to 0.19, helper 0.17 to 0.03, job 0.26 to 0.11).
Wall time in five alternated pairs moved within the machine's noise (medians 9.75 s before,
9.90 s after, each pair's spread up to 2.5 s). With it, two runs: 9.7 s (110.3 / 60.5 s:
11.3x / 6.2x) and 8.9 s (93.5 / 44.6 s: 10.5x / 5.0x), both targets met in both.
precision@10% unchanged in every run (ews 0.703-0.708, triage 0.701-0.705).

Measured 2026-12-07 18:04-18:52 on a fourth machine of the kind, slower again (the same
code's ``ews train`` 11.6-16.7 s in twelve runs alternated with this session's changes; a
Chicago benchmark 132.7 s end to end against 99-104 s on the third), load average 0.6-1.6.
Alternated runs of the code before and after this session's changes could not separate them
(medians 13.57 / 13.69 s, then 14.86 / 14.48 s, over 5-6 pairs each: the spread of identical
runs, 12-17 s, is larger than the changes), so each was measured on its own: a 200-tree
forest's skops file written with its trees sharing their equal ``classes_`` and
``n_classes_`` (0.352 to 0.308 CPU-s to write and audit at depth 10, 0.344 to 0.297 at depth
5); MLflow's run-context tags (the git commit, the notebook checks) resolved in the
registering process's warm-up instead of while the job waits (0.13 s; the register step went
from 0.7 to 0.6 s); ews's own modules byte-compiled by the install scripts (``ews train
--help`` 0.40-0.59 s to 0.32-0.35 s where PYTHONDONTWRITEBYTECODE is set, as on these
machines). ``ews train`` is now timed three times (``--repeat``) with triage's runs between
them, and the median run is judged. Two such runs: 15.0, 14.4 and 13.7 s (median 14.4 s)
against triage's 138.4 s README profile (9.6x) and 67.7 s test predictions only (4.7x); then
13.7, 15.6 and 15.4 s (median 15.4 s) against 141.7 s (9.2x) and 67.3 s (4.4x): neither
target met on this machine. precision@10% the same in every run (ews 0.703-0.708, triage
0.701-0.705). Where the CPU goes (about 24 s of it on 2 cores): the four forests 9.2 s, the
registering process 7.2-7.6 s (its imports of skops, MLflow and MLflow's SQL store 3.7 s, the
saves of 16 models about 3 s, the registration 0.6-0.8 s), the helper's features and labels
2.2 s (Ibis and DuckDB imports 0.3-0.5 s, the first build of the features 1.1-1.2 s where a
second one takes 0.7 s), the job's imports (pandas 0.55 s, scikit-learn 1.5 s) and its
evaluation (1.0 s). Both cores are busy from the helper's fork (0.85 s after the command
starts) to the registration request, which the job waits for.

Measured 2026-12-07 23:12-00:05 on a machine of the kind as slow as the fourth (the same
code's ``ews train`` 11.9-17.8 s, CPU 20-30 s, in identical runs), load average 0.8-2.1.
Where the CPU went (perf, one run, 26 CPU-s): the four forests' trees 10.8 s, the registering
process 7.8 s (its imports of skops, MLflow and MLflow's SQL store about 4.5 s; writing and
auditing the eight forests' skops files about 3 s: 0.29 s to write a 200-tree forest's file,
0.11 s to audit it, 0.23 s to load it, all of it skops's Python work over some 1,000 objects
per forest), the job 5.8 s, the helper 2.2 s. A forest is now fitted as
``models.ensembles.PackedRandomForestClassifier``: scikit-learn's ``RandomForestClassifier``,
the same trees and predictions, whose files hold its trees as a few arrays (every tree's nodes
in one, their values in another, what the trees share once). Its skops file is written and
audited in 0.07 CPU-s instead of 0.48 and loaded in 0.03 instead of 0.24; the registering
process went from 8.6 to 6.1 CPU-s, and five alternated pairs of runs from 30.1 to 27.3 CPU-s
(mean; the new code was faster in four). With it, two runs of this benchmark: 11.9, 13.7 and
16.1 s (median 13.7 s) against triage's 142.7 s README profile (10.4x) and 67.3 s test
predictions only (4.9x); then 15.7, 14.3 and 13.6 s (median 14.3 s) against 135.8 s (9.5x)
and 65.5 s (4.6x). The code before, in the same session: 13.0 s against 126.5 s (9.8x) and
58.2 s (4.5x). With pickle keeping the trees unpacked (the checkpoint, the pipe) and the
packed files' checks: 15.6, 15.0 and 14.9 s (median 15.0 s) against 127.6 s (8.5x) and 77.9 s
(5.2x). On this machine no run met both targets: 10x in one of three, 5x in one.
precision@10% the same in every run (ews 0.703-0.708, triage 0.701-0.705). Tried and not
kept: LightGBM's random-forest mode as a histogram forest (200 trees, depth 10, the same
leaf size: 8.3 CPU-s against 10.4 for the four depth-10 forests, but 2.7 against 7.1 at depth
5, where ews cuts the depth-5 forests from the depth-10 ones for nothing, and precision@10%
0.7024 against 0.7045); scoring each split's test rows on a background thread while the run
finished the split before (no change in the outer splits' 1.5-1.6 s: scoring already uses
both cores, and the two contended).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
from benchmarks.common import BenchmarkError

CONFIG = Path(models.__file__).resolve().parent / "experiments" / "triage_peer.yaml"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "triage-peer-10k"
AGENCY = "triage_peer"
# triage 6.0.0 on the same data and machine kind (data/triage-peer-10k/README.md)
TRIAGE_SECONDS_QUIET = 89.7
TRIAGE_SECONDS_LOADED = 146.5
TRIAGE_PRECISION_AT_10 = 0.705
# issue 19: ews train end to end at least this many times faster than triage in the same run,
# keyed by triage's profile (True: its README profile, training-set predictions written too)
TARGETS = {True: 10.0, False: 5.0}
PROFILES = {True: "README profile (training-set predictions too)", False: "test predictions only"}

Load = tuple[float, float, float]


def load_average() -> Load:
    """The 1, 5 and 15-minute load averages now, rounded (the machine's other work, which
    the wall times below also measure)."""
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _load(before: Load | None, after: Load | None) -> str:
    def f(x: Load | None) -> str:
        return "?" if x is None else ", ".join(f"{v:g}" for v in x)

    return f"load average {f(before)} before, {f(after)} after"


def triage_forest_jobs(config: Path | None = None) -> int:
    """The jobs triage's forests run with: the ``n_jobs`` of the random forest in its grid
    (``benchmarks/triage/experiment.yaml``), else scikit-learn's default, one job (triage
    passes its grid to scikit-learn as written)."""
    import yaml

    path = config or Path(__file__).resolve().parent / "triage" / "experiment.yaml"
    grid = (yaml.safe_load(path.read_text()) or {}).get("grid_config") or {}
    forest = grid.get("sklearn.ensemble.RandomForestClassifier") or {}
    jobs = forest.get("n_jobs") or [None]
    values = [j for j in (jobs if isinstance(jobs, list) else [jobs]) if j is not None]
    if not values:
        return 1
    return max(os.cpu_count() or 1 if int(j) < 0 else int(j) for j in values)


@dataclass
class TriagePeerRun:
    """What one run measured: wall seconds of each command, the experiment's own step
    times, and its records (precision@10%, ROC AUC per test date and model)."""

    ingest_seconds: float
    store_seconds: float
    train_seconds: float
    train_cpu_seconds: float
    steps: dict[str, float]
    cpu_steps: dict[str, float]
    records: list[dict[str, Any]]
    predictions: int
    registered: int
    threads: int
    load_before: Load
    load_after: Load | None = None
    loads: dict[str, tuple[Load, Load]] = field(default_factory=dict)  # ingest, store
    config: Path = CONFIG  # the ews experiment run (its grid is printed beside triage's)
    # every timed ``ews train`` of the run, in order: (wall s, CPU s, load before, after);
    # the figures above are those of the median one
    train_runs: list[tuple[float, float, Load, Load]] = field(default_factory=list)

    def models(self) -> list[dict[str, Any]]:
        """One row per test date and model: precision@10%, recall@10%, ROC AUC."""
        rows = []
        for r in self.records:
            if r["kind"] != "model":
                continue
            m = r.get("metrics") or {}
            rows.append(
                {
                    "test_date": r["test_date"],
                    "model": r["method"],
                    "n": r.get("n_test"),
                    "precision@10%": m.get("precision@10%"),
                    "recall@10%": m.get("recall@10%"),
                    "roc_auc": r.get("auc"),
                }
            )
        return rows

    def means(self) -> dict[str, dict[str, float]]:
        """Per model, the mean over the test dates of precision@10% and ROC AUC."""
        out: dict[str, list[dict[str, Any]]] = {}
        for row in self.models():
            out.setdefault(row["model"], []).append(row)
        return {
            name: {
                key: sum(float(r[key]) for r in rows) / len(rows)
                for key in ("precision@10%", "roc_auc")
            }
            for name, rows in out.items()
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "ews_train_seconds": round(self.train_seconds, 2),
            "ews_train_runs": [
                {
                    "seconds": round(wall, 2),
                    "cpu_seconds": round(cpu, 2),
                    "load_average_before": list(before),
                    "load_average_after": list(after),
                }
                for wall, cpu, before, after in self.train_runs
            ],
            "ews_train_cpu_seconds": round(self.train_cpu_seconds, 2),
            "steps_cpu_seconds": self.cpu_steps,
            "ingest_seconds": round(self.ingest_seconds, 2),
            "mlflow_store_seconds": round(self.store_seconds, 2),
            "steps_seconds": self.steps,
            "threads": self.threads,
            "load_average_before": list(self.load_before),
            "load_average_after": list(self.load_after) if self.load_after else None,
            "load_average_ingest_store": {
                k: [list(a), list(b)] for k, (a, b) in self.loads.items()
            },
            "predictions_written": self.predictions,
            "models_registered": self.registered,
            "results": self.models(),
            "mean": self.means(),
            "triage": {
                "seconds_quiet": TRIAGE_SECONDS_QUIET,
                "seconds_loaded": TRIAGE_SECONDS_LOADED,
                "precision@10%": TRIAGE_PRECISION_AT_10,
            },
        }


def _ews(*args: str, env: dict[str, str]) -> tuple[float, float]:
    """Run ``ews ARGS`` as its own process; (wall seconds, CPU seconds of the process, all
    threads). Raises with its output on failure."""
    return _python("from ews.cli import main; main()", *args, env=env)


def _python(code: str, *args: str, env: dict[str, str]) -> tuple[float, float]:
    """Run ``python -c CODE ARGS`` as its own process; (wall seconds, CPU seconds of the
    process and its children, all threads). Raises with its output on failure."""
    import resource

    command = [sys.executable, "-c", code, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(command[2:])} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, cpu


def run_triage_peer(
    data: Path,
    *,
    threads: int | None = None,
    home: Path | None = None,
    config: Path = CONFIG,
    repeat: int = 1,
    between: Callable[[int], None] | None = None,
) -> TriagePeerRun:
    """Ingest ``data`` into a fresh workspace (``home``, default a temporary folder), create
    its MLflow store, and time ``ews train --config CONFIG`` end to end from the command line
    (``EWS_THREADS=threads``, default every core, one OpenMP thread), each command with the
    load average before and after it.

    ``repeat``: how many times ``ews train`` is timed, in the same workspace (as a data
    scientist trains again; the first run's results are in ``run``, the others' in ``run-2``
    ...); ``between(i)`` is called after the i-th (not after the last), where the caller
    times its baseline, so that the runs are spread over the benchmark. The figures kept are
    those of the run of median wall time; every run's time is kept (``train_runs``), and the
    runs must produce the same records (else :class:`BenchmarkError`)."""
    if repeat < 1:
        raise BenchmarkError(f"repeat: at least one run, got {repeat}")
    threads = threads or os.cpu_count() or 1
    if not Path(data).is_dir():
        raise BenchmarkError(f"{data}: not a folder (expected the triage-peer-10k package)")
    tmp = tempfile.TemporaryDirectory(prefix="ews-triage-peer-") if home is None else None
    root = Path(tmp.name) if tmp is not None else Path(home or ".")
    try:
        env = {
            **os.environ,
            "EWS_HOME": str(root / "ews-home"),
            "EWS_THREADS": str(threads),
            "OMP_NUM_THREADS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env.pop("EWS_MLFLOW_URI", None)
        env.pop("EWS_DATABASE_URL", None)
        loads: dict[str, tuple[Load, Load]] = {}
        start = load_average()
        ingest, _ = _ews("ingest", str(data), "--agency", AGENCY, env=env)
        ingested = load_average()
        # the workspace's MLflow store, created once per workspace as triage's database is
        store, _ = _python("from models.registry import set_experiment; set_experiment()", env=env)
        load = load_average()
        loads["ingest"], loads["store"] = (start, ingested), (ingested, load)
        import pyarrow.parquet as pq

        runs: list[tuple[float, float, Load, Load, dict[str, Any], int]] = []
        for i in range(1, repeat + 1):
            out = root / ("run" if i == 1 else f"run-{i}")
            before = load_average() if i > 1 else load
            train, train_cpu = _ews(
                "train", "--config", str(config), "--agency", AGENCY, "--out", str(out), env=env
            )
            after = load_average()
            results = json.loads((out / "results.json").read_text())
            n_pred = pq.read_metadata(out / "predictions.parquet").num_rows
            runs.append((train, train_cpu, before, after, results, n_pred))
            if runs[0][4]["records"] != results["records"]:
                raise BenchmarkError(
                    f"ews train run {i} of {repeat} gave other records than run 1: the same "
                    "experiment on the same data must give the same figures"
                )
            if between is not None and i < repeat:
                between(i)
    finally:
        if tmp is not None:
            tmp.cleanup()
    # the median run (of an even count, the slower of the middle two)
    train, train_cpu, before, after, results, n_pred = sorted(runs, key=lambda r: r[0])[
        len(runs) // 2
    ]
    return TriagePeerRun(
        ingest_seconds=ingest,
        store_seconds=store,
        train_seconds=train,
        train_cpu_seconds=train_cpu,
        steps=results.get("timings", {}),
        cpu_steps=results.get("cpu_timings", {}),
        records=results["records"],
        predictions=n_pred,
        registered=len(results.get("registered", [])),
        threads=threads,
        load_before=before,
        load_after=after,
        loads=loads,
        config=Path(config),
        train_runs=[r[:4] for r in runs],
    )


TRIAGE_SCRIPT = Path(__file__).resolve().parent / "triage" / "run_triage.sh"
TRIAGE_CONFIG = Path(__file__).resolve().parent / "triage" / "experiment.yaml"


def _params(params: dict[str, Any]) -> str:
    def values(v: Any) -> str:
        return "/".join(map(str, v)) if isinstance(v, list) else str(v)

    return ", ".join(f"{k} {values(v)}" for k, v in sorted(params.items()))


def learner_lines(config: Path = CONFIG, triage_config: Path = TRIAGE_CONFIG) -> list[str]:
    """Which learners each side fitted, read from the two configs: the ews grid (estimator
    kind and parameters per family) and triage's ``grid_config`` (scikit-learn class and
    parameters), so that a difference between them is printed, not hidden."""
    import yaml

    ews = yaml.safe_load(Path(config).read_text()) or {}
    triage = (yaml.safe_load(Path(triage_config).read_text()) or {}).get("grid_config") or {}
    return [
        "learners: ews "
        + "; ".join(
            f"{m['estimator']} ({_params(m.get('params') or {})})" for m in ews.get("grid") or []
        )
        + " (models/experiments/triage_peer.yaml: scikit-learn estimators; forests of one"
        " family differing only in max_depth are fitted once, the shallower cut from it)",
        "          triage "
        + "; ".join(f"{cls.rsplit('.', 1)[-1]} ({_params(p or {})})" for cls, p in triage.items())
        + " (benchmarks/triage/experiment.yaml)",
    ]


@dataclass
class TriageRun:
    """triage itself, run by ``benchmarks/triage/run_triage.sh`` in the same session: wall
    seconds end to end, with (``replace``, as in the README's figure) or without its
    training-set predictions, and precision@10% per model (mean over the test dates)."""

    replace: bool
    seconds: float
    precision: dict[str, float]
    phases: str
    load_before: Load | None = None
    load_after: Load | None = None
    forest_jobs: int = 1  # the n_jobs triage's forests ran with (triage_forest_jobs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "replace": self.replace,
            "seconds": self.seconds,
            "precision@10%": self.precision,
            "phases": self.phases,
            "load_average_before": list(self.load_before) if self.load_before else None,
            "load_average_after": list(self.load_after) if self.load_after else None,
            "forest_n_jobs": self.forest_jobs,
        }


def run_triage(python: Path, *, replace: bool, database: str = "triage_peer") -> TriageRun:
    """Time triage's own run of the experiment (``benchmarks/triage/README.md`` says how to
    install it and load the data once) with ``python``, a Python that has triage 6.0.0."""
    env = {
        **os.environ,
        "TRIAGE_PYTHON": str(python),
        "TRIAGE_REPLACE": "1" if replace else "0",
        "TRIAGE_DB": database,
    }
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="triage-peer-") as work:
        env["TRIAGE_WORK"] = work
        done = subprocess.run(
            ["bash", str(TRIAGE_SCRIPT)], env=env, capture_output=True, text=True, check=False
        )
    after = load_average()
    out = done.stdout
    wall = [line.split()[1] for line in out.splitlines() if line.startswith("WALL_SECONDS ")]
    if done.returncode != 0 or not wall:
        raise BenchmarkError(f"triage's run failed:\n{out[-3000:]}\n{done.stderr[-2000:]}")
    return TriageRun(
        replace=replace,
        seconds=float(wall[0]),
        precision=_triage_precision(out),
        phases=next((ln for ln in out.splitlines() if ln.startswith("PHASES ")), ""),
        load_before=before,
        load_after=after,
        forest_jobs=triage_forest_jobs(),
    )


def _triage_precision(out: str) -> dict[str, float]:
    """Model -> mean precision@10% from the summary table run_triage.sh prints
    (``mg | model | hyperparameters | test_dates | precision | recall | auc``)."""
    rows: dict[str, float] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 7 and cells[0].isdigit() and cells[3].isdigit():
            rows[f"{cells[1]} {cells[2]}"] = float(cells[4])
    return rows


@dataclass
class Target:
    """One speed target of issue 19: ``ews train`` at least ``target`` times faster than
    triage's ``profile``, both timed in the same run; ``met`` is decided on the measured
    figures."""

    replace: bool
    triage_seconds: float
    ews_seconds: float
    target: float

    @property
    def ratio(self) -> float:
        return self.triage_seconds / self.ews_seconds if self.ews_seconds > 0 else float("nan")

    @property
    def met(self) -> bool:
        return self.ratio >= self.target  # NaN (no ews time) is never met

    def line(self) -> str:
        return (
            f"target: ews train at least {self.target:g}x faster than triage's "
            f"{PROFILES[self.replace]}: {self.triage_seconds:.1f} s / {self.ews_seconds:.1f} s "
            f"= {self.ratio:.1f}x -> {'met' if self.met else 'NOT MET'}"
        )


def speed_targets(run: TriagePeerRun, triage: Sequence[TriageRun]) -> list[Target]:
    """The targets judged in this run: one per triage profile timed in it (none without
    ``--triage-python``: a figure of another run is no baseline)."""
    return [
        Target(t.replace, t.seconds, run.train_seconds, TARGETS[t.replace])
        for t in sorted(triage, key=lambda t: not t.replace)
    ]


def format_triage_peer(run: TriagePeerRun, triage: Sequence[TriageRun] = ()) -> str:
    """The printed report: each time with the load average before and after it, the same
    run's baseline (triage's two profiles) and the targets judged on them, step times,
    precision@10% per model against triage's."""
    cores = os.cpu_count() or 1
    lines = [
        f"ews train, end to end from the command line: {run.train_seconds:6.1f} s; "
        f"{_load(run.load_before, run.load_after)}",
    ]
    if len(run.train_runs) > 1:
        lines.append(
            f"  the median of {len(run.train_runs)} runs in the same workspace, spread over the "
            "benchmark (the same records in each): "
            + "; ".join(
                f"{wall:.1f} s (CPU {cpu:.1f} s, {_load(before, after)})"
                for wall, cpu, before, after in run.train_runs
            )
        )
    lines += [
        f"  EWS_THREADS={run.threads} ({cores} cores here); CPU {run.train_cpu_seconds:.1f} s "
        "(all threads and child processes)",
        f"  {run.predictions} test predictions written, {run.registered} models registered",
        f"not in triage's figure: ews ingest {run.ingest_seconds:.1f} s"
        + (f" ({_load(*run.loads['ingest'])})" if "ingest" in run.loads else "")
        + f", MLflow store creation {run.store_seconds:.1f} s"
        + (f" ({_load(*run.loads['store'])})" if "store" in run.loads else ""),
    ]
    for t in triage:
        lines.append(
            f"triage 6.0.0 in this run, {PROFILES[t.replace]}: {t.seconds:6.1f} s; "
            f"{_load(t.load_before, t.load_after)}"
        )
        if t.phases:
            lines.append(f"  {t.phases}")
    targets = speed_targets(run, triage)
    if targets:
        by = {t.replace: t for t in triage}
        lines.append(
            "baseline (this run): triage 6.0.0 "
            + ", ".join(f"{PROFILES[k]} {by[k].seconds:.1f} s" for k in (True, False) if k in by)
            + f"; threads: ews EWS_THREADS={run.threads}, triage's forests n_jobs="
            + ",".join(sorted({str(t.forest_jobs) for t in triage}))
            + " (benchmarks/triage/experiment.yaml; unset there: scikit-learn's one job)"
        )
        lines += [t.line() for t in targets]
    else:
        speed = TRIAGE_SECONDS_QUIET / run.train_seconds if run.train_seconds else float("nan")
        lines.append(
            f"baseline: triage not timed in this run (--triage-python); its reference figure, "
            f"{TRIAGE_SECONDS_QUIET} s on a quiet machine of another session, is {speed:.1f}x "
            "ews's time; the targets (10x, 5x) are judged only against the same run"
        )
    lines += learner_lines(run.config)
    lines += [
        "",
        "steps, wall s: "
        + ", ".join(
            f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}" for k, v in run.steps.items()
        ),
        "steps, CPU s: "
        + ", ".join(
            f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}" for k, v in run.cpu_steps.items()
        ),
        "",
        f"{'test date':<11} {'model':<54} {'n':>6} {'p@10%':>6} {'r@10%':>6} {'AUC':>6}",
    ]

    def f(x: Any) -> str:
        return "     -" if x is None else f"{x:6.3f}"

    for r in run.models():
        lines.append(
            f"{r['test_date']:<11} {r['model'][:54]:<54} {r['n'] or '':>6} "
            f"{f(r['precision@10%'])} {f(r['recall@10%'])} {f(r['roc_auc'])}"
        )
    for name, m in run.means().items():
        lines.append(
            f"{'mean':<11} {name[:54]:<54} {'':>6} {f(m['precision@10%'])} {'':>6} "
            f"{f(m['roc_auc'])}"
        )
    lines.append(f"(triage: precision@10% about {TRIAGE_PRECISION_AT_10}, ROC AUC 0.74-0.75)")
    for t in triage[:1]:
        for name, value in t.precision.items():
            lines.append(f"{'triage':<11} {name[:54]:<54} {'':>6} {value:6.3f}")
    lines.append(accuracy_line(run, triage))
    return "\n".join(lines)


def accuracy_line(run: TriagePeerRun, triage: Sequence[TriageRun] = ()) -> str:
    """precision@10% (mean of the test dates) of ews's models against triage's reference
    0.705 and, when timed in this run, triage's own models."""
    means = [m["precision@10%"] for m in run.means().values()]
    if not means:
        return "accuracy: no ews model was evaluated"
    same = [v for t in triage[:1] for v in t.precision.values()]
    line = (
        f"accuracy: ews precision@10% {min(means):.3f}-{max(means):.3f} over its "
        f"{len(means)} models (best {max(means):.3f}, {max(means) - TRIAGE_PRECISION_AT_10:+.3f} "
        f"against triage's {TRIAGE_PRECISION_AT_10})"
    )
    if same:
        line += f"; triage in this run {min(same):.3f}-{max(same):.3f} (best {max(same):.3f})"
    return line


def main(argv: list[str]) -> None:
    data = Path(argv[0]) if argv else DEFAULT_DATA
    print(format_triage_peer(run_triage_peer(data)))


if __name__ == "__main__":
    main(sys.argv[1:])
