"""The features and labels a run builds in a helper process while it checks its config
(models.prebuild): used only when built from exactly the run's own plan, spec, cohort and
labels, giving the same results as a run that builds them itself; any failure or mismatch
leaves the run to build them as before; the helper never outlives the run."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _models_agency import make_agency, small_config

from models import prebuild
from models.experiment import ExperimentConfig, ExperimentError, run_experiment
from models.prebuild import Prebuild

TRIAGE_SPEC = Path(__file__).resolve().parents[1] / "models" / "specs" / "triage_peer.yaml"


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_agency(tmp_path_factory.mktemp("agency") / "pkg")


def _config(**overrides: Any) -> ExperimentConfig:
    """The small experiment without its selection and bootstrap (what they do is not this
    file's subject)."""
    cfg = small_config(n_boot=0, **overrides)
    cfg["splitter"] = {**cfg["splitter"], "inner_splits": 0}  # type: ignore[dict-item]
    return ExperimentConfig.model_validate(cfg)


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper is not forked beside other threads (pytest-xdist runs one to talk to its
    controller): seen from the helper's check, this process has only its own."""
    monkeypatch.setattr(prebuild.threading, "active_count", lambda: 1)


class Taken:
    """Records what each :meth:`Prebuild.take` of the runs gave (True: the helper's work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[bool] = []
        real = Prebuild.take

        def take(early: Prebuild, plan: Any, checked: Any) -> Any:
            got = real(early, plan, checked)
            self.seen.append(got is not None)
            return got

        monkeypatch.setattr(Prebuild, "take", take)


def _helpers() -> list[Any]:
    return [p for p in multiprocessing.active_children() if p.name == "ews-prebuild"]


def _same(a: Any, b: Any) -> None:
    assert a.records == b.records
    assert a.feature_columns == b.feature_columns
    pd.testing.assert_frame_equal(a.predictions, b.predictions)


@pytest.fixture(scope="module")
def built_here(agency: Path) -> Any:
    """The small experiment with features and labels built by the run itself (no helper)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Prebuild, "start", classmethod(lambda cls, *a, **k: None))
        return run_experiment(_config(), agency, tracking=False, progress=False)


def test_the_run_takes_the_helpers_work_and_gets_the_same_results(
    agency: Path, built_here: Any, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = Taken(monkeypatch)
    lines: list[str] = []
    result = run_experiment(_config(), agency, tracking=False, progress=lines.append)
    assert taken.seen == [True]
    assert any("begun in a helper process during the config check" in line for line in lines)
    _same(result, built_here)
    assert _helpers() == []


def test_work_built_from_another_plan_is_not_used(
    agency: Path, built_here: Any, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper runs the code forked from this process: one that plans another date (a
    change of the planning code between the two, say) is caught by the comparison."""
    real = prebuild._build

    def other_plan(*args: Any) -> Any:
        built = real(*args)
        built.dates = built.dates[1:]
        return built

    monkeypatch.setattr(prebuild, "_build", other_plan)
    taken = Taken(monkeypatch)
    result = run_experiment(_config(), agency, tracking=False, progress=False)
    assert taken.seen == [False]
    _same(result, built_here)


@pytest.mark.parametrize("what", ["spec_hash", "cohort", "labels", "label_requests"])
def test_work_built_from_another_spec_cohort_or_labels_is_not_used(
    agency: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    real = prebuild._build

    def changed(*args: Any) -> Any:
        built = real(*args)
        setattr(built, what, {"another": 1})
        return built

    monkeypatch.setattr(prebuild, "_build", changed)
    taken = Taken(monkeypatch)
    run_experiment(_config(), agency, tracking=False, progress=False)
    assert taken.seen == [False]


def test_a_failing_helper_leaves_the_work_to_the_run(
    agency: Path, built_here: Any, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any) -> Any:
        raise RuntimeError("the helper's own trouble")

    monkeypatch.setattr(prebuild, "_build", fails)
    taken = Taken(monkeypatch)
    result = run_experiment(_config(), agency, tracking=False, progress=False)
    assert taken.seen == [False]
    _same(result, built_here)


def test_a_refused_config_stops_the_helper(
    agency: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Prebuild] = []
    real = Prebuild.start.__func__  # type: ignore[attr-defined]

    def start(cls: type[Prebuild], *args: Any) -> Prebuild | None:
        early = real(cls, *args)
        started.append(early)
        return early

    monkeypatch.setattr(Prebuild, "start", classmethod(start))
    # the rule needs columns the triage spec does not build
    cfg = _config(feature_spec=str(TRIAGE_SPEC), rules=["cmpd"])
    with pytest.raises(ExperimentError, match="refused before any work"):
        run_experiment(cfg, agency, tracking=False, progress=False)
    assert started and started[0] is not None
    assert not started[0].process.is_alive()
    assert _helpers() == []


def test_no_helper_beside_other_threads(agency: Path) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert Prebuild.start(_config(), agency, False) is None
    finally:
        stop.set()
        other.join()


def test_no_helper_for_a_run_given_its_features(
    agency: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.build import build_features

    frame = build_features(agency, _planned_dates(agency))
    taken = Taken(monkeypatch)
    run_experiment(_config(), agency, tracking=False, progress=False, features=frame)
    assert taken.seen == []


def _planned_dates(agency: Path) -> list[Any]:
    from models import steps

    cfg = _config()
    labels = list(cfg.label_names())
    return steps.plan_splits(cfg, agency, labels, deploy=False).feature_dates()


def test_what_the_helper_sends_arrives_whole_and_writable(tmp_path: Path) -> None:
    """The frames' arrays travel through a file mapped by the run (out of the pickle): they
    arrive equal, with their dtypes, and writable like frames built in the run, without
    changing what the helper holds."""
    import os

    import numpy as np

    from models.steps import Features, Labels

    frame = pd.DataFrame(
        {
            "officer_id": [f"O{i}" for i in range(1000)],
            "as_of_date": pd.to_datetime(["2020-01-01"] * 1000),
            "complaint_1y_count": np.arange(1000, dtype=float),
            "flag": np.arange(1000) % 2 == 0,
        }
    )
    labels = frame[["officer_id", "as_of_date"]]
    built = prebuild._Built(
        dates=[],
        label_requests={},
        spec_hash="h",
        cohort=None,
        labels={},
        features=Features(frame=frame, columns=["complaint_1y_count"], left_out=[]),
        label_frames=Labels(frames={("x", None): labels}),
    )
    memory = os.open(tmp_path / "arrays", os.O_RDWR | os.O_CREAT)
    ours, theirs = multiprocessing.Pipe(duplex=False)
    try:
        for part in prebuild._send(built, memory):
            theirs.send_bytes(part)
        assert os.fstat(memory).st_size > 8 * 1000  # the arrays went to the file
        got = prebuild._receive(ours, memory)
        assert got is not None
        pd.testing.assert_frame_equal(got.features.frame, frame)
        pd.testing.assert_frame_equal(got.label_frames.frames[("x", None)], labels)
        got.features.frame.loc[0, "complaint_1y_count"] = -1.0  # writable
        assert frame.loc[0, "complaint_1y_count"] == 0.0
        theirs.send_bytes(b"")  # what a failed helper sends
        assert prebuild._receive(ours, memory) is None
    finally:
        os.close(memory)
