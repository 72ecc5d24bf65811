#!/usr/bin/env python
"""Run the triage 6.0.0 experiment (experiment.yaml) end to end through
triage's Python API (SingleThreadedExperiment, as `triage experiment` does
with its default single-process options), after checking triage's own
Timechop splits against the README.  Measuring setup only.

Usage: python run_experiment.py CONFIG PROJECT_PATH
Env:   DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/triage_peer)
"""

import datetime as dt
import logging
import os
import sys
import time

import yaml
from dateutil.relativedelta import relativedelta
from triage.component.catwalk.predictors import Predictor
from triage.experiments import SingleThreadedExperiment
from triage.util.db import create_engine  # triage's SerializableDbEngine, as the CLI uses

CONFIG, PROJECT = sys.argv[1], sys.argv[2]
DB_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/triage_peer")
REPLACE = os.environ.get("TRIAGE_REPLACE", "1") == "1"
SPLIT_LOG = os.path.join(os.path.dirname(os.path.abspath(PROJECT)), "timechop_splits.log")

# triage configures its own (coloredlogs) logging to stdout at import time
log = logging.getLogger("run_experiment")


def expected_splits():
    """README: test as-of 2019..2022-01-01; train as-of every 6 months over up
    to 3 years, labels from 2018-01-01 on, 1-year label windows ending by the
    test date."""
    out = {}
    for year in (2019, 2020, 2021, 2022):
        test = dt.datetime(year, 1, 1)
        last = test - relativedelta(years=1)
        first = max(dt.datetime(2018, 1, 1), last - relativedelta(years=3))
        dates: list[dt.datetime] = []
        d = last
        while d >= first:
            dates.insert(0, d)
            d -= relativedelta(months=6)
        out[test] = dates
    return out


def check_splits(experiment):
    splits = experiment.split_definitions  # triage's Timechop output
    lines = [f"triage Timechop: {len(splits)} splits"]
    got = {}
    for i, s in enumerate(splits):
        train = list(s["train_matrix"]["as_of_times"])
        tl = s["train_matrix"]["training_label_timespan"]
        for tm in s["test_matrices"]:
            tests = list(tm["as_of_times"])
            assert len(tests) == 1, tests
            got[tests[0]] = train
            lines.append(
                f"split {i}: test as-of {tests[0]:%Y-%m-%d} (label {tm['test_label_timespan']}); "
                f"train as-of ({len(train)}) {', '.join(f'{d:%Y-%m-%d}' for d in train)} "
                f"(label {tl}; last train label window ends "
                f"{max(train) + relativedelta(years=1):%Y-%m-%d}; "
                f"matrix_info_end_time {s['train_matrix']['matrix_info_end_time']:%Y-%m-%d})"
            )
    exp = expected_splits()
    ok = got == exp
    lines.append("matches README expectation: " + ("YES" if ok else f"NO, expected {exp}"))
    text = "\n".join(lines)
    with open(SPLIT_LOG, "w") as f:
        f.write(text + "\n")
    print(text, flush=True)
    if not ok:
        raise SystemExit("temporal splits differ from the README")


# instrumentation: wall time spent writing predictions (triage's own method)
_pred_secs = [0.0]
_orig_write = Predictor._write_predictions_to_db


def _timed_write(self, *a, **kw):
    t = time.perf_counter()
    try:
        return _orig_write(self, *a, **kw)
    finally:
        _pred_secs[0] += time.perf_counter() - t


Predictor._write_predictions_to_db = _timed_write


def main():
    t0 = time.perf_counter()
    with open(CONFIG) as f:
        config = yaml.full_load(f)
    engine = create_engine(DB_URL)
    experiment = SingleThreadedExperiment(
        config=config,
        db_engine=engine,
        project_path=PROJECT,
        # the keyword arguments `triage experiment CONFIG --project-path P
        # [--replace]` passes (validation on, CSV matrices, subquery from_objs
        # materialized, predictions saved).  REPLACE=1 (`--replace`) makes
        # triage also predict on every train matrix and write those
        # predictions (469,280 rows) -- the profile the README's timing has;
        # REPLACE=0 (CLI default) skips train predictions when no
        # training_metric_groups are configured.
        replace=REPLACE,
        materialize_subquery_fromobjs=True,
        features_ignore_cohort=False,
        save_predictions=True,
        skip_validation=False,
        profile=False,
    )
    check_splits(experiment)

    phases = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[name] = time.perf_counter() - t

        return wrapper

    experiment.generate_matrices = timed("features_and_matrices", experiment.generate_matrices)
    experiment.train_and_test_models = timed("train_and_test", experiment.train_and_test_models)
    experiment.run()
    total = time.perf_counter() - t0
    print(f"MODE replace={REPLACE}", flush=True)
    print(
        f"PHASES setup+validate={total - sum(phases.values()):.1f}s "
        + " ".join(f"{k}={v:.1f}s" for k, v in phases.items())
        + f" (writing predictions {_pred_secs[0]:.1f}s) python_total={total:.1f}s",
        flush=True,
    )


if __name__ == "__main__":
    main()
