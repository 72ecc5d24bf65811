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
        small_config(splitter=splitter, grid=GRID, rules=["cmpd", "best_single"], **overrides)
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


def _run(agency: Path, monkeypatch: pytest.MonkeyPatch, threads: str, cache: str) -> Any:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_THREADS", threads)
    monkeypatch.setenv("EWS_FIT_CACHE", cache)
    get_settings.cache_clear()
    try:
        lines: list[str] = []
        result = run_experiment(_config(), agency, tracking=False, progress=lines.append)
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
    monkeypatch.setattr(models.fitting, "THREAD_KINDS", kinds)
    started: list[int] = []
    real = models.fitting.Fitter._fit_parallel
    monkeypatch.setattr(
        models.fitting.Fitter,
        "_fit_parallel",
        lambda self, *a, **k: (started.append(1), real(self, *a, **k))[1],
    )
    for _ in range(3):  # the scores to the last bit, every time (forests predict on one thread)
        threaded, _ = _run(agency, monkeypatch, "2", "1")
        assert started == []
        assert json.dumps(threaded.records) == json.dumps(base.records)
        pd.testing.assert_frame_equal(threaded.predictions, base.predictions, check_exact=True)


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

    monkeypatch.setattr(models.experiment, "register", lambda result: None)
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
