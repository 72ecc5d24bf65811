"""The experiment: honest dates, label maturity, selection blind to the test dates."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _models_agency import make_agency, small_config

from models import experiment as exp
from models.experiment import ExperimentConfig, ExperimentError, load_config, run_experiment

WINDOW_YEARS = 1


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_agency(tmp_path_factory.mktemp("agency") / "pkg")


@pytest.fixture(scope="module")
def features(agency: Path) -> pd.DataFrame:
    """Features for every as-of date the small config needs, built once for the module."""
    from features.build import build_features

    return build_features(agency, [date(y, 1, 1) for y in range(2007, 2016)])


def _config(**overrides: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(small_config(**overrides))


class LabelSpy:
    """Wraps features.labels.build_label_sets (the one call an experiment makes per label, for
    all its knowledge cutoffs) and records each cutoff's dates; ``tamper`` may change the
    frame of each cutoff. A spy that the experiment no longer calls records nothing, and the
    tests below then fail: they check that calls were seen."""

    def __init__(self, monkeypatch: Any, tamper: Any = None) -> None:
        import features.labels

        self.calls: list[tuple[list[date], date | None]] = []
        real = features.labels.build_label_sets

        def spy(source: Any, requests: Any, label: Any, **kw: Any) -> Any:
            requests = {kb: list(dates) for kb, dates in requests.items()}
            self.calls += [(dates, kb) for kb, dates in requests.items()]
            out = real(source, requests, label, **kw)
            if tamper is None:
                return out
            return {kb: tamper(frame, requests[kb], kb) for kb, frame in out.items()}

        monkeypatch.setattr(features.labels, "build_label_sets", spy)


def _add_years(d: date, years: int) -> date:
    return d.replace(year=d.year + years)


@pytest.fixture(scope="module")
def base_run(agency: Path, features: pd.DataFrame) -> tuple[exp.ExperimentResult, LabelSpy]:
    """The small experiment, run once for the module, with its label calls recorded."""
    with pytest.MonkeyPatch.context() as mp:
        spy = LabelSpy(mp)
        result = run_experiment(
            _config(), agency, tracking=False, progress=False, features=features
        )
    return result, spy


def test_no_label_reaches_past_its_cutoff(base_run: tuple[exp.ExperimentResult, LabelSpy]):
    result, spy = base_run
    tests = [date(2014, 1, 1), date(2015, 1, 1)]
    assert [s["test_as_of"] for s in result.splits] == [t.isoformat() for t in tests]
    # Labels without a cutoff are read only for the outer test dates.
    open_dates = {d for dates, known_by in spy.calls if known_by is None for d in dates}
    assert open_dates == set(tests)
    # Every other label (training or validation) has its whole window known by its cutoff,
    # and no cutoff is later than the test date it serves.
    for dates, known_by in spy.calls:
        if known_by is None:
            continue
        assert known_by in tests or known_by < tests[-1]
        for d in dates:
            assert _add_years(d, WINDOW_YEARS) <= known_by, (d, known_by)
    # The rows each split actually trained on: label windows end by the test date.
    models = [r for r in result.records if r["kind"] == "model"]
    assert models
    for rec in models:
        test = date.fromisoformat(rec["test_date"])
        used = [date.fromisoformat(d) for d in rec["train_dates_used"]]
        assert used and max(_add_years(d, WINDOW_YEARS) for d in used) <= test
        assert rec["train_labels_known_by"] == rec["test_date"]
    for sel in result.selection:
        test = date.fromisoformat(sel["test_date"])
        for inner in sel["inner_splits"]:
            v = date.fromisoformat(inner["validation_date"])
            assert _add_years(v, WINDOW_YEARS) <= test
            assert inner["validation_labels_known_by"] == sel["test_date"]
    # One selected model per label and split, and the records carry the required keys.
    for test in tests:
        chosen = [r for r in models if r["selected"] and r["test_date"] == test.isoformat()]
        assert len(chosen) == 1
    required = {"test_date", "label", "method", "kind", "selected", "flagged", "tp", "fp"}
    required |= {"precision", "recall", "auc", "vs_rules"}
    assert all(required <= set(r) for r in result.records)
    rules = {r["method"] for r in result.records if r["kind"] == "rule"}
    assert rules == {"cmpd", "miami_dade", "iapro_top_percentile", "best_single"}
    vs = models[0]["vs_rules"]["cmpd"]
    assert vs["flagged"] == next(
        r["flagged"]
        for r in result.records
        if r["method"] == "cmpd" and r["test_date"] == models[0]["test_date"]
    )


def test_label_maturity_removes_findings_not_yet_known(
    agency: Path, features: pd.DataFrame, base_run: Any, monkeypatch: pytest.MonkeyPatch
):
    mature, on = base_run
    off_spy = LabelSpy(monkeypatch)
    cfg = small_config()
    cfg["splitter"] = {**cfg["splitter"], "label_maturity": False}  # type: ignore[dict-item]
    leaky = run_experiment(
        ExperimentConfig.model_validate(cfg),
        agency,
        tracking=False,
        progress=False,
        features=features,
    )
    # Without maturity, training labels use findings from after the test date.
    assert any(k is None and date(2013, 1, 1) in d for d, k in off_spy.calls)
    assert not any(k is None and date(2013, 1, 1) in d for d, k in on.calls)

    def prevalence(result: exp.ExperimentResult) -> dict[str, float]:
        return {
            r["test_date"]: r["train_prevalence"] for r in result.records if r["kind"] == "model"
        }

    p_on, p_off = prevalence(mature), prevalence(leaky)
    # Findings arrive 30-700 days after the report: some sustained findings of the latest
    # training windows are still pending at the test date, so mature labels have fewer ones.
    for test_date in p_on:
        assert p_on[test_date] < p_off[test_date]


def test_selection_ignores_test_outcomes(
    agency: Path, features: pd.DataFrame, base_run: Any, monkeypatch: pytest.MonkeyPatch
):
    base = base_run[0]

    def scramble(out: pd.DataFrame, dates: list[date], known_by: date | None) -> pd.DataFrame:
        if known_by is None:  # outer test labels only: invert them
            out = out.copy()
            out["label"] = 1 - out["label"]
        return out

    LabelSpy(monkeypatch, tamper=scramble)
    scrambled = run_experiment(_config(), agency, tracking=False, progress=False, features=features)
    assert [s["chosen"] for s in scrambled.selection] == [s["chosen"] for s in base.selection]
    assert [s["scores"] for s in scrambled.selection] == [s["scores"] for s in base.selection]
    prec = {(r["test_date"], r["method"]): r["precision"] for r in base.records}
    changed = [
        r for r in scrambled.records if r["precision"] != prec[(r["test_date"], r["method"])]
    ]
    assert changed  # the test outcomes did change, the choice did not


def test_models_beat_chance_on_a_real_signal(base_run: Any):
    result = base_run[0]
    for rec in result.records:
        if rec["kind"] == "model":
            assert rec["auc"] > 0.65
            assert rec["precision"] > rec["test_prevalence"]
    champ = result.champions["sustained"]
    # Without registration nothing is refit: the champion is the latest split's choice.
    assert result.deployment == []
    assert champ.train_dates[-1] == date(2014, 1, 1)
    assert list(champ.background.columns) == champ.feature_columns
    assert "race" not in champ.feature_columns and "sex" not in champ.feature_columns
    chosen = [s for s in result.selection if s["test_date"] == "2015-01-01"][0]["chosen"]
    assert champ.candidate["name"] == chosen


def test_protected_attributes_are_refused(agency: Path, features: pd.DataFrame):
    bad = features.assign(race_b=np.zeros(len(features)))
    with pytest.raises(ExperimentError, match="protected"):
        run_experiment(_config(), agency, tracking=False, progress=False, features=bad)


def test_config_validation(tmp_path: Path, agency: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("grid: []\nsplitter: {label_window: 1y, bogus: 3}\n")
    with pytest.raises(ExperimentError) as err:
        load_config(path)
    assert "grid" in str(err.value) and "splitter.bogus" in str(err.value)
    cfg = _config(
        labels=[{"name": "long", "window": "2y", "any_of": [{"event_type": "complaint"}]}]
    )
    with pytest.raises(ExperimentError, match="beyond the splitter's label_window"):
        run_experiment(cfg, agency, tracking=False, progress=False)
    with pytest.raises(ExperimentError, match="rules"):
        run_experiment(_config(rules=["nope"]), agency, tracking=False, progress=False)
    # The default config validates, and its hash names its content.
    default = load_config()
    assert default.hash == load_config().hash
    assert default.hash != load_config(seed=1).hash


def test_the_heap_is_frozen_during_the_run_and_unfrozen_after(
    agency: Path, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config check (its imports) runs with the cyclic collector paused; what is alive
    once the config is checked is out of the collector's reach while the run works (the
    progress lines see it frozen), and back in it when the run returns or fails."""
    import gc

    from models import steps

    gc.unfreeze()  # from nothing frozen (a service test on this worker may have frozen some)
    before = gc.get_freeze_count()
    seen: list[tuple[str, int]] = []
    collecting: list[bool] = []
    check = steps.check_config

    def checking(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        return check(*args, **kwargs)

    monkeypatch.setattr(steps, "check_config", checking)

    def say(line: str) -> None:
        seen.append((line, gc.get_freeze_count()))

    run_experiment(_config(), agency, tracking=False, progress=say, features=features)
    assert collecting == [False] and gc.isenabled()
    assert gc.get_freeze_count() == before
    frozen = [n for line, n in seen if "evaluated" in line]
    assert frozen and all(n > before for n in frozen)

    class Stop(Exception):
        pass

    def stop(line: str) -> None:
        if "building labels" in line:
            raise Stop

    with pytest.raises(Stop):
        run_experiment(_config(), agency, tracking=False, progress=stop, features=features)
    assert gc.get_freeze_count() == before


def test_auto_test_dates(agency: Path):
    # The synthetic data end 2016-12-31: the latest January 1 with a whole year after it in
    # the data is 2015-12-31 + ... -> 2015-01-01 (2016-01-01 + 1y = 2017-01-01 > end).
    assert exp.auto_test_dates(agency, "1y", 2) == [date(2014, 1, 1), date(2015, 1, 1)]


def test_label_lag_applies_per_label(agency: Path, features: pd.DataFrame):
    cfg = _config(
        labels=["sustained", "any_complaint"],
        splitter={**small_config()["splitter"], "label_lag": {"sustained": "1y"}},  # type: ignore[dict-item]
    )
    result = run_experiment(cfg, agency, tracking=False, progress=False, features=features)
    for rec in (r for r in result.records if r["kind"] == "model"):
        test = date.fromisoformat(rec["test_date"])
        used = [date.fromisoformat(d) for d in rec["train_dates_used"]]
        lag = 1 if rec["label"] == "sustained" else 0
        # t + 1y window + lag <= T, and the latest such date is used
        assert max(used) == date(test.year - 1 - lag, 1, 1), rec["label"]
        assert min(used) == date(test.year - 5, 1, 1)
        assert rec["train_labels_known_by"] == rec["test_date"]  # maturity unchanged
    for sel in result.selection:
        test = date.fromisoformat(sel["test_date"])
        lag = 1 if sel["label"] == "sustained" else 0
        assert sel["label_lag"] == ("1y" if lag else None)
        for inner in sel["inner_splits"]:
            v = date.fromisoformat(inner["validation_date"])
            assert v.year <= test.year - 1 - lag
            assert all(date.fromisoformat(d).year <= v.year - 1 - lag for d in inner["train_as_of"])
    bad = _config(splitter={**small_config()["splitter"], "label_lag": {"nope": "1y"}})  # type: ignore[dict-item]
    with pytest.raises(ExperimentError, match="unknown labels nope"):
        run_experiment(bad, agency, tracking=False, progress=False, features=features)
