"""The fit cache and the parallel fits of a run (models.fitting): a fit is reused only where
everything that defines it is identical, and a run's figures are the same with the cache on
or off and with one or two threads."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _models_agency import SMALL_GRID, make_agency, small_config

import models.fitting
from models import steps
from models.experiment import ExperimentConfig, run_experiment
from models.fitting import Fitter, candidate_key, train_key
from models.grid import expand_grid
from models.splitter import Split

# training dates from 2008 on (no history limit): the inner split of 2015 that validates on
# 2014 trains on the rows of the outer split tested at 2014, and the one validating on 2013
# is the inner split of 2014 validating on 2013 (its validation labels known later)
GRID = [
    *SMALL_GRID,
    {
        "name": "deep",
        "estimator": "random_forest",
        "params": {"n_estimators": 20, "max_depth": [3, 6]},
    },
    # two depths fitted in one bundle, sharing their split and binning (early stopping on,
    # as it is by default on the real agencies' 10,000+ training rows)
    {
        "name": "hgb",
        "estimator": "hist_gradient_boosting",
        "params": {"max_iter": 15, "max_depth": [2, 3], "early_stopping": [True]},
    },
]


def _config(**overrides: Any) -> ExperimentConfig:
    splitter = {
        "test_dates": ["2014-01-01", "2015-01-01"],
        "label_window": "1y",
        "train_history": None,
        "first_train_date": "2008-01-01",
        "train_every": "1y",
        "inner_splits": 2,
    }
    return ExperimentConfig.model_validate(
        small_config(
            **{"splitter": splitter, "grid": GRID, "rules": ["cmpd", "best_single"], **overrides}
        )
    )


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_agency(tmp_path_factory.mktemp("fitting") / "pkg", officers=160)


@pytest.fixture(scope="module")
def built(agency: Path) -> tuple[Any, Any, Any, Any]:
    cfg = _config()
    checked = steps.check_config(cfg, agency)
    plan = steps.plan_splits(cfg, agency, list(checked.labels), deploy=True)
    feats = steps.build_features(agency, plan, checked.spec, checked.cohort)
    labels = steps.build_labels(agency, plan, checked.labels, checked.cohort)
    return checked, plan, feats, labels


def test_the_key_holds_every_thing_that_defines_a_fit() -> None:
    sp = Split(
        test_as_of=date(2014, 1, 1),
        train_as_of=[date(2011, 1, 1), date(2012, 1, 1)],
        label_known_by=date(2014, 1, 1),
        train_label_end=date(2013, 1, 1),
        test_label_end=date(2015, 1, 1),
    )
    # evaluated elsewhere, on labels known later: the same training rows, the same key
    elsewhere = dataclasses.replace(
        sp, test_as_of=date(2013, 6, 1), test_label_known_by=date(2015, 1, 1)
    )
    assert train_key("sustained", elsewhere) == train_key("sustained", sp)
    assert train_key("other", sp) != train_key("sustained", sp)
    later = dataclasses.replace(sp, label_known_by=date(2015, 1, 1))
    assert train_key("sustained", later) != train_key("sustained", sp)
    fewer = dataclasses.replace(sp, train_as_of=[date(2012, 1, 1)])
    assert train_key("sustained", fewer) != train_key("sustained", sp)
    no_maturity = dataclasses.replace(sp, label_known_by=None)
    assert train_key("sustained", no_maturity) != train_key("sustained", sp)

    def one(seed: int = 0, **model: Any) -> str:
        base = {"name": "m", "estimator": "random_forest", "params": {"max_depth": [4]}}
        (cand,) = expand_grid([{**base, **model}], seed=seed)
        return candidate_key(cand)

    assert one() == one()
    assert one(seed=1) != one()
    assert one(calibration="sigmoid") != one()
    assert one(calibration="sigmoid", calibration_cv=4) != one(calibration="sigmoid")
    assert one(params={"max_depth": [5]}) != one()
    assert one(estimator="extra_trees") != one()


def test_a_training_set_is_fitted_once_and_only_its_own_fits_are_reused(built: Any) -> None:
    checked, plan, feats, labels = built
    cands = checked.candidates
    seen: list[str] = []
    fitter = Fitter(feats, labels, cands, threads=1, on_fit=seen.append)
    splits = plan.all_splits("sustained")
    keys = [train_key("sustained", sp) for sp in splits]
    assert len(set(keys)) < len(keys)  # the plan overlaps, so the cache has work
    got: dict[Any, dict[str, Any]] = {}
    for sp, key in zip(splits, keys, strict=True):
        _, models = fitter.models("sustained", sp)
        assert list(models) == [c.name for c in cands]
        if key in got:  # the same training set: the very same fitted models
            assert all(models[n] is got[key][n] for n in models)
        else:  # another training set is never served another's models
            for other in got.values():
                assert all(models[n] is not other[n] for n in models)
            got[key] = models
    assert fitter.n_fitted == len(seen) == len(cands) * len(set(keys))
    assert fitter.n_reused == len(cands) * (len(keys) - len(set(keys)))
    # the same training dates with labels known at another date: fitted anew
    sp = plan.splits["sustained"][-1]
    _, again = fitter.models("sustained", sp)
    later = dataclasses.replace(sp, label_known_by=date(2016, 1, 1))
    _, fresh = fitter.models("sustained", later)
    assert all(fresh[n] is not again[n] for n in fresh)
    assert fitter.n_fitted == len(cands) * (len(set(keys)) + 1)


def test_a_cached_model_predicts_like_a_fresh_fit_and_leaves_after_its_last_use(
    built: Any,
) -> None:
    checked, plan, feats, labels = built
    cands = checked.candidates
    fitter = Fitter(feats, labels, cands, threads=1, uses=Fitter.plan_uses(plan))
    fresh = Fitter(feats, labels, cands, threads=1, cache=False)
    for sp in plan.all_splits("sustained"):
        entry, cached = fitter.models("sustained", sp)
        _, refit = fresh.models("sustained", sp)
        if sp is plan.deploy["sustained"]:  # nothing is evaluated at its date
            continue
        rows = labels.get("sustained", [sp.test_as_of], sp.test_label_known_by)
        test = steps.join(feats.frame, rows, [sp.test_as_of])
        X = steps.matrix(test, entry.columns)
        for name in cached:
            a = cached[name].predict_proba(X)[:, 1]
            b = refit[name].predict_proba(X)[:, 1]
            assert (a == b).all(), (sp.test_as_of, name)
    assert fitter.fitted == {} and fitter.uses == {}
    assert fresh.fitted == {}


def _run(
    agency: Path, monkeypatch: pytest.MonkeyPatch, threads: str, cache: str, **overrides: Any
) -> Any:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_THREADS", threads)
    monkeypatch.setenv("EWS_FIT_CACHE", cache)
    get_settings.cache_clear()
    try:
        lines: list[str] = []
        result = run_experiment(_config(**overrides), agency, tracking=False, progress=lines.append)
    finally:
        get_settings.cache_clear()
    return result, lines


def test_figures_are_the_same_with_the_cache_off_and_with_two_threads(
    agency: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.fitting

    # this agency is small enough to fit in-process; workers all the same, to compare
    monkeypatch.setattr(models.fitting, "PARALLEL_MIN_ROWS", 0)
    kinds = models.fitting.THREAD_KINDS
    monkeypatch.setattr(models.fitting, "THREAD_KINDS", frozenset())
    base, lines = _run(agency, monkeypatch, "1", "1")
    assert any(r["selected"] for r in base.records)
    # every fit counted once: the progress reaches its total exactly
    last = [line for line in lines if "fits, about" in line][-1]
    done, total = last.split("; ")[-1].split(" fits")[0].split("/")
    assert done == total
    for threads, cache in (("1", "0"), ("2", "1"), ("2", "0")):
        other, other_lines = _run(agency, monkeypatch, threads, cache)
        assert json.dumps(other.records) == json.dumps(base.records), (threads, cache)
        assert json.dumps(other.selection) == json.dumps(base.selection), (threads, cache)
        pd.testing.assert_frame_equal(other.predictions, base.predictions)
        last = [line for line in other_lines if "fits, about" in line][-1]
        n = last.split("; ")[-1].split(" fits")[0].split("/")
        assert n[0] == n[1]
        if cache == "0":  # without the cache every split is fitted
            assert int(n[1]) > int(total)
    # forests and logistic regressions only: fitted in this process, forests on two threads,
    # no worker started, and the same figures as the workers gave
    no_hgb = [g for g in GRID if g["estimator"] != "hist_gradient_boosting"]
    in_workers, _ = _run(agency, monkeypatch, "2", "1", grid=no_hgb)
    monkeypatch.setattr(models.fitting, "THREAD_KINDS", kinds)
    started: list[int] = []
    real = models.fitting.Fitter._submit
    monkeypatch.setattr(
        models.fitting.Fitter,
        "_submit",
        lambda self, *a, **k: (started.append(1), real(self, *a, **k))[1],
    )
    for _ in range(3):  # the scores to the last bit, every time (forests predict on one thread)
        threaded, _ = _run(agency, monkeypatch, "2", "1", grid=no_hgb)
        assert started == []
        assert json.dumps(threaded.records) == json.dumps(in_workers.records)
        pd.testing.assert_frame_equal(
            threaded.predictions, in_workers.predictions, check_exact=True
        )


def test_a_small_batch_is_fitted_in_process(built: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from models import fitting

    checked, plan, feats, labels = built
    fitter = Fitter(feats, labels, checked.candidates, threads=2)
    need = {
        train_key("sustained", sp): ("sustained", sp, [[]], None)
        for sp in plan.all_splits("sustained")
    }
    assert fitter._small(need)  # 160 officers: far under the rows that pay for workers
    days = [[pd.Timestamp(d) for d in k[1]] for k in need]
    rows = sum(len(feats.frame[feats.frame["as_of_date"].isin(ds)]) for ds in days)
    monkeypatch.setattr(fitting, "PARALLEL_MIN_ROWS", rows)
    assert not fitter._small(need)
    monkeypatch.setattr(fitting, "PARALLEL_MIN_ROWS", rows + 1)
    assert fitter._small(need)


def test_the_refit_is_counted_in_the_progress(
    agency: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.experiment

    monkeypatch.setattr(models.experiment, "register", lambda result, **kw: None)
    lines: list[str] = []
    result = run_experiment(_config(), agency, tracking=True, progress=lines.append)
    assert result.deployment
    (refit,) = [line for line in lines if "refitted" in line]
    done, total = refit.split("; ")[-1].split(" fits")[0].split("/")
    assert done == total


def test_only_forests_and_logistic_regressions_skip_the_workers() -> None:
    def need(*models: dict[str, Any]) -> dict[Any, Any]:
        groups = [[c] for c in expand_grid(list(models))]
        return {("sustained", (date(2014, 1, 1),), None): ("sustained", None, groups, None)}

    lr = {"name": "lr", "estimator": "logistic_regression", "params": {"C": [1.0]}}
    rf = {"name": "rf", "estimator": "random_forest", "params": {"n_estimators": 5}}
    hgb = {"name": "hgb", "estimator": "hist_gradient_boosting", "params": {"max_iter": 5}}
    assert Fitter._threads_suffice(need(lr, rf))
    assert not Fitter._threads_suffice(need(lr, rf, hgb))  # OpenMP: one thread per worker
    assert not Fitter._threads_suffice(need({**rf, "calibration": "sigmoid"}))


def _frames(n: int, seed: int) -> tuple[pd.DataFrame, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)])
    X.iloc[::13, 2] = np.nan  # missing values get their own bin
    y = (X["f0"] + rng.normal(size=n) > 1.0).to_numpy().astype(int)
    return X, y


def test_hgb_depths_sharing_split_and_binning_are_the_models_fitted_alone() -> None:
    import pickle

    import numpy as np

    from models.fitting import _fit_bundle, bundles
    from models.shared_binning import shared_hgb_binning

    grid = [
        {
            "name": "hgb",
            "estimator": "hist_gradient_boosting",
            "params": {"max_iter": 30, "max_depth": [2, 4], "min_samples_leaf": 20},
        }
    ]
    cands = expand_grid(grid, seed=3)
    X, y = _frames(12_000, 0)  # over 10,000 rows: early stopping (and its split) is on
    alone = [c.build(n_jobs=1).fit(X, y) for c in cands]
    assert all(m.do_early_stopping_ for m in alone)
    with shared_hgb_binning() as memo:
        shared = [c.build(n_jobs=1).fit(X, y) for c in cands]
    # the split, the training and the validation binning of every fit after the first
    assert memo is not None and memo.hits == 3 * (len(cands) - 1)
    test, _ = _frames(500, 1)
    for a, b in zip(alone, shared, strict=True):
        assert (a.predict_proba(test) == b.predict_proba(test)).all()
        assert pickle.dumps(a) == pickle.dumps(b)  # the same fitted state, attribute by attribute
    # the bundle the fitter sends to a worker: both depths in one task, the same models
    (bundle,) = bundles([[c] for c in cands])
    assert [g[0].name for g in bundle] == [c.name for c in cands]
    fitted = _fit_bundle(bundle, X, y, 1)
    for a, (got, _, _) in zip(alone, fitted, strict=True):
        assert pickle.dumps(next(iter(got.values()))) == pickle.dumps(a)
    # other rows (or another seed) never get the first fit's binning
    X2, y2 = _frames(12_000, 5)
    with shared_hgb_binning() as memo:
        first = cands[0].build(n_jobs=1).fit(X, y)
        other = cands[1].build(n_jobs=1).fit(X2, y2)
        (reseeded,) = expand_grid(
            [{**grid[0], "params": {**grid[0]["params"], "max_depth": [4]}}], seed=4
        )
        again = reseeded.build(n_jobs=1).fit(X, y)
    assert memo.hits == 0
    assert pickle.dumps(first) == pickle.dumps(alone[0])
    assert pickle.dumps(other) == pickle.dumps(cands[1].build(n_jobs=1).fit(X2, y2))
    assert np.array_equal(
        again.predict_proba(test), reseeded.build(n_jobs=1).fit(X, y).predict_proba(test)
    )


def test_fits_started_ahead_run_in_workers_and_give_the_in_process_models(
    built: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    import models.fitting

    monkeypatch.setattr(models.fitting, "PARALLEL_MIN_ROWS", 0)
    checked, plan, feats, labels = built
    cands = checked.candidates
    jobs = [(label, sp) for label in plan.splits for sp in plan.all_splits(label)]
    ticks: list[str] = []
    ahead = Fitter(feats, labels, cands, threads=2, on_fit=ticks.append)
    ahead.start(jobs)
    assert ahead._pending  # queued, not waited for
    base = ahead._base
    assert base is not None and base.exists()
    here = Fitter(feats, labels, cands, threads=1)
    for label, sp in jobs:
        entry, got = ahead.models(label, sp)
        _, want = here.models(label, sp)
        if sp is plan.deploy.get(label):
            continue
        rows = labels.get(label, [sp.test_as_of], sp.test_label_known_by)
        test = steps.join(feats.frame, rows, [sp.test_as_of])
        X = steps.matrix(test, entry.columns)
        for name in want:
            assert (got[name].predict_proba(X) == want[name].predict_proba(X)).all(), name
    assert not ahead._pending and not ahead._tasks
    n_sets = len({train_key(label, sp) for label, sp in jobs})
    assert ahead.n_fitted == len(ticks) == len(cands) * n_sets
    # one log entry per fit group, every one fitted in a worker
    assert len(ahead.log) == len(models.fitting.fit_groups(cands)) * n_sets
    assert all(e["pid"] != os.getpid() and e["cpu_s"] > 0 for e in ahead.log)
    log = tmp_path / "fits.jsonl"
    monkeypatch.setenv("EWS_FIT_LOG", str(log))
    ahead.close()
    assert not base.exists()
    assert len(log.read_text().splitlines()) == len(models.fitting.fit_groups(cands)) * n_sets


def test_the_queue_goes_label_by_label_the_costliest_fits_first(built: Any) -> None:
    checked, plan, feats, labels = built
    fitter = Fitter(feats, labels, checked.candidates, threads=2)
    jobs = [(label, sp) for label in plan.splits for sp in plan.all_splits(label)]
    need = fitter._need([(lb, sp, fitter.candidates, None) for lb, sp in jobs], fitter.fitted)
    order = fitter._schedule(need)
    assert len(order) == sum(len(models.fitting.bundles(v[2])) for v in need.values())
    seen = [key[0] for key, _ in order]
    assert seen == sorted(seen, key=list(plan.splits).index)  # label by label, in run order
    first = [(key, bundle) for key, bundle in order if key[0] == seen[0]]
    # the random forests (the costliest per row) of the largest set open the queue
    assert first[0][1][0][0].estimator == "random_forest"
    assert len(first[0][0][1]) == max(len(key[1]) for key, _ in first)


def test_a_set_dropped_while_its_fits_run_is_still_collected(
    built: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.fitting

    monkeypatch.setattr(models.fitting, "PARALLEL_MIN_ROWS", 0)
    checked, plan, feats, labels = built
    (sp, *_) = plan.splits["sustained"]
    key = train_key("sustained", sp)
    ticks: list[str] = []
    fitter = Fitter(
        feats, labels, checked.candidates, threads=2, uses={key: 1}, on_fit=ticks.append
    )
    try:
        fitter.start([("sustained", sp)])
        assert key in fitter._pending
        fitter.skip("sustained", sp, checked.candidates)  # its one use: dropped from the cache
        assert key not in fitter.fitted
        fitter._wait()
        assert not fitter._pending and len(ticks) == len(checked.candidates)
    finally:
        fitter.close()


def test_a_batch_waited_for_leaves_no_pool_or_matrices_behind(
    built: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.fitting

    monkeypatch.setattr(models.fitting, "PARALLEL_MIN_ROWS", 0)
    checked, plan, feats, labels = built
    fitter = Fitter(feats, labels, checked.candidates, threads=2, cache=False)
    sp = plan.splits["sustained"][-1]
    _, got = fitter.models("sustained", sp)
    assert list(got) == [c.name for c in checked.candidates]
    assert len(fitter.log) == len(models.fitting.fit_groups(checked.candidates))
    # fitted in joblib's shared workers: nothing of this fitter's own is left to close
    assert fitter._base is None and fitter._executor is None and not fitter._tasks
