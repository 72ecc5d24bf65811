"""A stopped `ews train` keeps what it finished: each unit of work (a choice, an outer split,
the deployment refit) is checkpointed as it completes, `--resume` reads it back instead of
doing it again, and the results equal an uninterrupted run's. Progress never goes silent
(the heartbeat) and its time left counts the deployment refit."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from _models_agency import make_agency, shared_mlflow_uri, small_config
from typer.testing import CliRunner

from ews.cli import app
from models import checkpoint as ckpt_mod
from models import experiment as exp
from models import steps
from models.checkpoint import Checkpoint, CheckpointError
from models.config import _json_safe
from models.experiment import ExperimentConfig, run_experiment

runner = CliRunner()
TESTS = ["2014-01-01", "2015-01-01"]


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_agency(tmp_path_factory.mktemp("resume") / "pkg", officers=160)


@pytest.fixture(scope="module")
def features(agency: Path) -> pd.DataFrame:
    from features.build import build_features

    return build_features(agency, [date(y, 1, 1) for y in range(2007, 2018)])


def _config_dict(**overrides: Any) -> dict[str, Any]:
    """The small experiment: two test dates, one validation split each, three candidates."""
    base = small_config(rules=["cmpd", "best_single"])
    base["splitter"] = {**base["splitter"], "test_dates": TESTS, "inner_splits": 1}  # type: ignore[dict-item]
    return {**base, **overrides}


def _config(**overrides: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(_config_dict(**overrides))


class Stop:
    """Interrupts a run (KeyboardInterrupt, as Ctrl-C does) right after its ``after``-th
    checkpointed unit is written; counts the units written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int | None) -> None:
        self.saved: list[tuple[str, ...]] = []
        self.after = after
        real = Checkpoint.save

        def save(ck: Checkpoint, kind: str, *key: str, **parts: Any) -> None:
            real(ck, kind, *key, **parts)
            self.saved.append((kind, *key))
            if self.after is not None and len(self.saved) == self.after:
                raise KeyboardInterrupt

        monkeypatch.setattr(Checkpoint, "save", save)


class Fits:
    """Counts the candidate fits a run makes (outer and inner splits, and the refit)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.splits: list[str] = []
        real = steps.fit_candidates

        def spy(split: Any, *args: Any, **kw: Any) -> Any:
            self.splits.append(split.test_as_of.isoformat())
            return real(split, *args, **kw)

        monkeypatch.setattr(steps, "fit_candidates", spy)


def _run(
    agency: Path,
    features: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    cfg: ExperimentConfig | None = None,
    **kw: Any,
) -> exp.ExperimentResult:
    """The experiment with a deployment refit (tracking on), its registration left out
    (the CLI test registers for real): what is registered is ``result.champions``."""
    from models import registry

    monkeypatch.setattr(exp, "register", lambda result, **kw: {})
    monkeypatch.setattr(registry, "warm_up", lambda: None)
    return run_experiment(cfg or _config(), agency, tracking=True, features=features, **kw)


@pytest.fixture(scope="module")
def whole(agency: Path, features: pd.DataFrame) -> exp.ExperimentResult:
    """The uninterrupted run, without a checkpoint."""
    with pytest.MonkeyPatch.context() as mp:
        return _run(agency, features, mp, progress=False)


def _same(a: exp.ExperimentResult, b: exp.ExperimentResult) -> None:
    """Two results are the same run's: records, choices, deployment, predictions, notes, and
    the champion (its config, dates and fitted model's scores)."""
    da, db = a.to_dict(), b.to_dict()
    for key in ("records", "selection", "deployment", "splits", "notes", "gates", "champions"):
        assert da[key] == db[key], key
    assert a.predictions is not None and b.predictions is not None
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
    assert a.champions.keys() == b.champions.keys() == {"sustained"}
    ca, cb = a.champions["sustained"], b.champions["sustained"]
    assert ca.test_metrics == cb.test_metrics and ca.rules.keys() == cb.rules.keys()
    pd.testing.assert_frame_equal(ca.background, cb.background)
    np.testing.assert_array_equal(
        ca.model.predict_proba(ca.background), cb.model.predict_proba(ca.background)
    )


@pytest.mark.parametrize(
    ("after", "fitted_again"),
    [
        # choices 2014 and 2015 and the deployment's, split 2014 written; split 2015 not
        (4, ["2015-01-01"]),
        # every unit written (stopped while registering): nothing is fitted again
        (6, []),
    ],
)
def test_a_resumed_run_equals_an_uninterrupted_one(
    agency: Path,
    features: pd.DataFrame,
    whole: exp.ExperimentResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    after: int,
    fitted_again: list[str],
) -> None:
    folder = tmp_path / "checkpoint"
    stop = Stop(monkeypatch, after)
    with pytest.raises(KeyboardInterrupt):
        _run(agency, features, monkeypatch, progress=False, checkpoint=folder)
    kinds = [unit[0] for unit in stop.saved]
    assert kinds == ["choice", "choice", "deploy-choice", "split", "split", "refit"][:after]
    assert ckpt_mod.summary(folder) == after

    stop.saved.clear()
    fits = Fits(monkeypatch)
    lines: list[str] = []
    resumed = _run(
        agency, features, monkeypatch, progress=lines.append, checkpoint=folder, resume=True
    )
    _same(resumed, whole)
    # only the unfinished work was done, and written in its turn
    assert fits.splits == fitted_again
    assert len(stop.saved) == 6 - after
    text = "\n".join(lines)
    splits_done = 1 if after == 4 else 2
    assert (
        f"resuming from {folder}: {splits_done} of 2 splits, 3 of 3 choices, "
        f"{int(after == 6)} of 1 deployment refits done, skipping them" in text
    )
    assert resumed.resumed == {"checkpoint": str(folder), "units_read_back": after}
    assert "resumed" not in whole.to_dict()


def test_a_checkpoint_is_not_reused_without_resume_or_by_another_run(
    agency: Path, features: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkpoint"
    Stop(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _run(agency, features, monkeypatch, progress=False, checkpoint=folder)
    fits = Fits(monkeypatch)
    with pytest.raises(CheckpointError, match="add --resume to continue it, or give a new --out"):
        _run(agency, features, monkeypatch, progress=False, checkpoint=folder)
    other = _config(seed=_config().seed + 1)
    with pytest.raises(CheckpointError, match="holds the checkpoint of another run .config hash"):
        run_experiment(other, agency, tracking=False, progress=False, checkpoint=folder)
    with pytest.raises(CheckpointError, match=f"config hash {_config().hash} there, {other.hash}"):
        run_experiment(
            other,
            agency,
            tracking=False,
            progress=False,
            features=features,
            checkpoint=folder,
            resume=True,
        )
    # another feature frame is another run too
    with pytest.raises(CheckpointError, match="feature rows"):
        _run(
            agency,
            features.iloc[::-1],
            monkeypatch,
            progress=False,
            checkpoint=folder,
            resume=True,
        )
    assert fits.splits == []  # refused before any fit
    assert ckpt_mod.summary(folder) == 1  # and left as it was


def test_a_unit_that_cannot_be_read_back_is_done_again(
    agency: Path,
    features: pd.DataFrame,
    whole: exp.ExperimentResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "checkpoint"
    Stop(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        _run(agency, features, monkeypatch, progress=False, checkpoint=folder)
    (pickled,) = folder.glob("split-*2015-01-01*.pkl")  # the champion's split's models
    pickled.write_bytes(pickled.read_bytes()[:100])  # cut short (a disk full, say)
    fits = Fits(monkeypatch)
    lines: list[str] = []
    resumed = _run(
        agency, features, monkeypatch, progress=lines.append, checkpoint=folder, resume=True
    )
    assert fits.splits == ["2015-01-01"]
    assert any("split sustained 2015-01-01 cannot be read back, doing it again" in x for x in lines)
    _same(resumed, whole)


def test_checkpoint_files_are_whole_or_absent(tmp_path: Path) -> None:
    """A unit's JSON is written last, through a temporary file renamed into place: a write
    cut short leaves no unit and no temporary file."""
    fp = {"config_hash": "a"}
    ck = Checkpoint.open(tmp_path, fp, resume=False)
    frame = pd.DataFrame({"x": [1.0, 2.0]})

    class Boom:
        def __reduce__(self) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ck.save("split", "l", "d", data={"n": 1}, frame=frame, objects=Boom())
    assert not ck.has("split", "l", "d") and ck.load("split", "l", "d") is None
    assert not list(tmp_path.glob(".*.tmp"))
    ck.save("split", "l", "d", data={"n": float("nan")}, frame=frame, objects=[1, 2])
    again = Checkpoint.open(tmp_path, fp, resume=True)
    unit = again.load("split", "l", "d")
    assert unit is not None and unit.data == {"n": None} and unit.objects == [1, 2]
    assert unit.frame is not None
    pd.testing.assert_frame_equal(unit.frame, frame)
    assert again.found == 1 and again.loaded == 1
    # the run's identity: kept in the manifest, the same when resumed, another for a new run
    assert again.identity == ck.identity and again.run == ck.run
    assert Checkpoint.open(tmp_path / "other", fp, resume=False).identity != ck.identity
    assert again.peek("split") == [{"n": None}] and again.loaded == 1  # peeked, not read back


def test_a_stop_while_the_checkpoint_is_removed_leaves_no_part_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing a finished run's checkpoint deletes file after file; a stop in the middle
    used to leave some units without their manifest, which the next run of the same
    experiment found and read back as its own. Now the checkpoint is renamed away first:
    the next run finds none, starts a checkpoint of its own, and deletes the leftover."""
    import shutil

    fp = {"config_hash": "a"}
    folder = tmp_path / "checkpoint"
    ck = Checkpoint.open(folder, fp, resume=False)
    for i in range(3):
        ck.save("split", "l", str(i), data={"n": i})
    rmtree = shutil.rmtree

    def stopped(path: Any, *args: Any, **kwargs: Any) -> None:  # the manifest goes first
        (Path(path) / ckpt_mod.MANIFEST).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", stopped)
    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.remove(folder)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    assert not folder.exists()
    assert len(list(tmp_path.glob(".checkpoint.removing-*"))) == 1
    fresh = Checkpoint.open(folder, fp, resume=True)
    assert fresh.found == 0 and not fresh.has("split", "l", "0")
    # the leftover is deleted; what finished is noted (see the next test)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.finished.json"]
    ckpt_mod.remove(folder)  # nothing there: nothing to do


def test_resume_of_a_finished_run_is_refused_and_a_new_run_is_not(tmp_path: Path) -> None:
    """Removing a finished run's checkpoint notes its fingerprint: --resume of that run
    (same fingerprint, its results there) is refused with what to do; a run without
    --resume, another fingerprint, or a folder without the results start as usual."""
    fp = {"config_hash": "a"}
    folder = tmp_path / "checkpoint"
    Checkpoint.open(folder, fp, resume=False).save("split", "l", "0", data={"n": 0})
    (tmp_path / "results.json").write_text("{}")
    ckpt_mod.remove(folder)
    assert not folder.exists() and (tmp_path / "checkpoint.finished.json").is_file()
    with pytest.raises(CheckpointError, match="nothing to resume: this run finished"):
        Checkpoint.open(folder, fp, resume=True)
    assert Checkpoint.open(folder, fp, resume=False).found == 0
    assert Checkpoint.open(folder, {"config_hash": "b"}, resume=True).found == 0
    (tmp_path / "results.json").unlink()
    assert Checkpoint.open(folder, fp, resume=True).found == 0


# --------------------------------------------------------------------------- progress


def test_the_heartbeat_says_what_is_still_being_done() -> None:
    lines: list[str] = []
    clock = exp.Clock(lines.append)
    clock.estimate = lambda: "; about 7 s left"
    with clock.heartbeat(0.2), clock.doing("fitting lr on sustained 2015-01-01"):
        time.sleep(0.75)
    with clock.heartbeat(0.2):  # nothing being done: nothing to say
        time.sleep(0.4)
    beats = [x for x in lines if "still fitting lr on sustained 2015-01-01" in x]
    assert 2 <= len(beats) <= 4 and len(beats) == len(lines)
    assert beats[0].endswith("s so far; about 7 s left")
    # a line said resets the silence: no heartbeat right after it
    clock.note("evaluated")
    assert not clock.beat(0.2)


def test_a_long_fit_is_never_silent_and_time_left_counts_the_refit(
    agency: Path, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = steps.fit_candidates

    def slow(*args: Any, **kw: Any) -> Any:
        time.sleep(0.4)
        return real(*args, **kw)

    monkeypatch.setattr(steps, "fit_candidates", slow)
    import models.fitting

    real_group = models.fitting._fit_group

    def slow_group(*args: Any, **kw: Any) -> Any:  # each fit of a label's batch (a choice's)
        time.sleep(0.4)
        return real_group(*args, **kw)

    monkeypatch.setattr(models.fitting, "_fit_group", slow_group)
    lines: list[str] = []
    _run(agency, features, monkeypatch, progress=lines.append, heartbeat=0.15)
    text = "\n".join(lines)
    # a label's fits run first, in one batch (models.fitting), then each split's work
    assert "still fitting 3 candidates on the training sets of sustained (5 splits" in text
    assert "still fitting 3 candidates on sustained 2015-01-01, " in text
    # 3 candidates x (2 splits x (1 outer + 1 inner) + 1 deployment inner) + 1 refit = 16: after
    # the last split, the refit is still to do, and the time left counts it
    (last,) = [x for x in lines if "sustained 2015-01-01: evaluated" in x]
    assert "; 15/16 fits, about " in last


def test_time_left_weighs_each_fit_by_its_training_rows(
    agency: Path, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: dict[str, Any] = {}
    real = exp._Run.__init__

    def keep(self: Any, *args: Any, **kw: Any) -> None:
        real(self, *args, **kw)
        captured["run"], captured["work"] = self, dict(self.work)

    monkeypatch.setattr(exp._Run, "__init__", keep)
    real_refit = exp._Run.refit

    def refit(self: Any, label: str) -> None:  # the work left when only the refit is
        captured["left"] = (self.total - self.done, self.total_weight - self.done_weight)
        real_refit(self, label)

    monkeypatch.setattr(exp._Run, "refit", refit)
    _run(agency, features, monkeypatch, progress=False)
    run, work = captured["run"], captured["work"]
    plan = run.plan

    def rows(sp: Any) -> int:
        return len(run.labels.get("sustained", sp.train_as_of, sp.label_known_by))

    # a fit costs its training rows: each split's candidates, each choice's validation fits,
    # and the deployment refit (one fit on the deployment split's rows)
    deploy = plan.deploy["sustained"]
    assert work[("refit", "sustained")] == (1, rows(deploy))
    assert captured["left"] == (1, pytest.approx(rows(deploy)))
    for sp in plan.splits["sustained"]:
        day = sp.test_as_of.isoformat()
        assert work[("split", "sustained", day)] == (3, 3 * rows(sp))
        (inner,) = plan.inner["sustained"][sp.test_as_of]
        assert work[("choice", "sustained", day)] == (3, 3 * rows(inner))
    assert sum(f for f, _ in work.values()) == plan.n_fits(3) == 16
    # every unit done: nothing left, and the weight done is the weight planned
    assert run.done == run.total == 16
    assert run.done_weight == pytest.approx(sum(w for _, w in work.values()))
    assert run.remaining().startswith("; 16/16 fits, about 0 s left")


# --------------------------------------------------------------------------- the command


@pytest.fixture
def workspace(ews_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_MLFLOW_URI", shared_mlflow_uri())
    get_settings.cache_clear()
    return ews_home


def test_train_interrupted_then_resumed(
    workspace: Path,
    agency: Path,
    whole: exp.ExperimentResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "--resume" in runner.invoke(app, ["train", "--help"]).output
    r = runner.invoke(app, ["ingest", str(agency), "--agency", "resumetest"])
    assert r.exit_code == 0, r.output
    cfg = tmp_path / "experiment.yaml"
    cfg.write_text(yaml.safe_dump(_config_dict()))
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--out", str(out), "--json"]

    stop = Stop(monkeypatch, 4)  # Ctrl-C after the first split
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert (
        "Traceback" not in stopped.output
        and stopped.exception is None
        or isinstance(stopped.exception, SystemExit)
    )
    assert f"interrupted: 4 finished unit(s) of work are kept in {out / 'checkpoint'}" in (
        stopped.stderr
    )
    assert f"continue with: ews train --config {cfg} --out {out} --json --resume" not in (
        stopped.stderr
    )  # --json is how it prints, not what it computes: not repeated
    assert f"continue with: ews train --config {cfg} --out {out} --resume" in stopped.stderr
    assert not (out / "results.json").exists()

    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "add --resume" in refused.stderr

    stop.saved.clear()
    stop.after = None
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from" in resumed.stderr and "1 of 2 splits" in resumed.stderr
    assert len(stop.saved) == 2  # split 2015 and the refit
    assert not (out / "checkpoint").exists()  # results written: nothing left to resume
    body = json.loads(resumed.stdout)
    assert body["resumed"]["units_read_back"] == 4

    # the results, predictions and registered champion of the same experiment run whole
    # (the library run of the module, on the same package)
    a = json.loads((out / "results.json").read_text())
    b = json.loads(json.dumps(_json_safe(whole.to_dict())))
    for key in ("records", "selection", "deployment", "splits", "notes", "gates"):
        assert a[key] == b[key], key
    assert a["champions"]["sustained"]["candidate"] == b["champions"]["sustained"]["candidate"]
    assert whole.predictions is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out / "predictions.parquet"), whole.predictions)
    from models import registry

    (reg,) = body["registered"]
    loaded = registry.load_model(f"{reg['name']}/{reg['version']}", uri=shared_mlflow_uri())
    champ = whole.champions["sustained"]
    x = champ.background
    assert loaded.background is not None
    pd.testing.assert_frame_equal(loaded.background, x, check_dtype=False)
    np.testing.assert_array_equal(loaded.model.predict_proba(x), champ.model.predict_proba(x))


def test_train_stopped_after_writing_its_results_resumes_without_registering_again(
    workspace: Path, agency: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped once its results are written and its models registered, while it prints
    (or rebuilds the reports), `ews train` keeps its checkpoint: --resume reads everything
    back and registers nothing again (without the checkpoint it would start over and
    register every model anew)."""
    from models import cli as models_cli
    from models import registry

    r = runner.invoke(app, ["ingest", str(agency), "--agency", "resumestop"])
    assert r.exit_code == 0, r.output
    cfg = tmp_path / "experiment.yaml"
    cfg.write_text(yaml.safe_dump(_config_dict()))
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--out", str(out)]
    name = registry.model_name("resumestop", "sustained")

    def versions() -> list[tuple[str, list[str]]]:
        rows = registry.list_models(shared_mlflow_uri())
        return [(r["version"], r["aliases"]) for r in rows if r["name"] == name]

    def stop(*args: Any) -> None:
        raise KeyboardInterrupt

    real = models_cli._train_output
    monkeypatch.setattr(models_cli, "_train_output", stop)
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert "interrupted: the results are written" in stopped.stderr
    assert f"{' '.join(args[1:])} --resume" in stopped.stderr
    assert (out / "results.json").exists() and ckpt_mod.summary(out / "checkpoint") >= 7
    registered = versions()
    assert len(registered) == 1 and registered[0][1] == ["champion"]

    monkeypatch.setattr(models_cli, "_train_output", real)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "1 of 1 models already registered by the stopped run: kept" in resumed.stderr
    assert versions() == registered
    assert not (out / "checkpoint").exists()
    # the run finished: resuming it again says so, and neither runs nor registers anything
    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 2, again.output
    assert f"nothing to resume: this run finished, its results are in {out}" in again.stderr
    assert versions() == registered


def test_with_registry_all_every_fitted_model_survives_a_resume(
    agency: Path, features: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`registry: all` registers every model fitted at every split: those of the splits read
    back come from the checkpoint, fitted as the uninterrupted run fitted them."""
    cfg = _config(registry="all")

    def run(**kw: Any) -> exp.ExperimentResult:
        return _run(agency, features, monkeypatch, cfg, progress=False, **kw)

    whole = run()
    folder = tmp_path / "checkpoint"
    stop = Stop(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=folder)
    stop.after = None
    resumed = run(checkpoint=folder, resume=True)
    _same(resumed, whole)

    def models(r: exp.ExperimentResult) -> list[tuple[str, str, str]]:
        return [(c.label, c.candidate["name"], str(c.as_of)) for c in r.fitted]

    # 2 splits x 3 candidates, the evaluated champion among them (the refit replaced it)
    assert models(resumed) == models(whole) and len(whole.fitted) == 6
    for a, b in zip(resumed.fitted, whole.fitted, strict=True):
        x = b.background
        np.testing.assert_array_equal(a.model.predict_proba(x), b.model.predict_proba(x))


def test_a_run_with_its_fits_queued_in_workers_stops_cleanly_and_resumes_the_same(
    agency: Path,
    features: pd.DataFrame,
    whole: exp.ExperimentResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's queue of fits (models.fitting.Fitter.start) in two worker processes: an
    interrupted run drops its queue and its training matrices, the resumed one queues only
    the sets its units still to do need, and both give the uninterrupted run's result."""
    from ews.settings import get_settings
    from models import fitting

    monkeypatch.setattr(fitting, "PARALLEL_MIN_ROWS", 0)  # this agency would fit in-process
    monkeypatch.setattr(fitting, "THREAD_KINDS", frozenset())  # ... and so would its forests
    monkeypatch.setenv("EWS_THREADS", "2")
    get_settings.cache_clear()
    started: list[list[Any]] = []
    closed: list[Any] = []
    start, close = fitting.Fitter.start, fitting.Fitter.close

    def spy_start(self: fitting.Fitter, jobs: Any) -> None:
        started.append(list(jobs))
        start(self, jobs)

    def spy_close(self: fitting.Fitter) -> None:
        closed.append((self._base, bool(self._tasks)))
        close(self)
        assert self._base is None and not self._tasks and self._executor is None

    monkeypatch.setattr(fitting.Fitter, "start", spy_start)
    monkeypatch.setattr(fitting.Fitter, "close", spy_close)
    try:
        folder = tmp_path / "checkpoint"
        Stop(monkeypatch, 4)
        with pytest.raises(KeyboardInterrupt):
            _run(agency, features, monkeypatch, progress=False, checkpoint=folder)
        ((base, _),) = closed
        assert base is not None and not base.exists()  # its matrices removed
        resumed = _run(
            agency, features, monkeypatch, progress=False, checkpoint=folder, resume=True
        )
    finally:
        get_settings.cache_clear()
    _same(resumed, whole)
    first, again = started
    # resumed: only the last outer split (its training set) is left to fit
    assert [sp.test_as_of.isoformat() for _, sp in again] == ["2015-01-01"]
    assert len(first) > len(again)


# --------------------------------------------------------------------------- registration


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh MLflow store of its own for one test (versions start at 1)."""
    from ews.settings import get_settings

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("EWS_MLFLOW_URI", uri)
    get_settings.cache_clear()
    yield uri
    get_settings.cache_clear()


def _run_registering(
    agency: Path,
    features: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    via: str = "here",
    **kw: Any,
) -> exp.ExperimentResult:
    """The experiment with ``registry: all`` (the refit champion, alias ``champion``, and the
    6 models fitted at the 2 splits), registered for real in EWS_MLFLOW_URI's store: in this
    process (``via="here"``) or in the registering process ``warm_up`` forks."""
    from models import registry

    if via == "here":
        monkeypatch.setattr(registry, "warm_up", lambda: None)
    return run_experiment(_config(registry="all"), agency, tracking=True, features=features, **kw)


def _registry_state(uri: str) -> dict[str, Any]:
    """What an experiment left in a store: per registered model, its versions in order with
    their tags (less those naming the MLflow run or the registration, which differ between
    two stores), its aliases; and the runs it holds (one per registration)."""
    from models import registry

    c = registry.client(uri)
    exp_id = c.get_experiment_by_name(registry.EXPERIMENT_NAME).experiment_id
    runs = c.search_runs([exp_id])  # active runs (a deleted one is not there)
    out: dict[str, Any] = {"runs": len(runs), "models": {}}
    for rm in c.search_registered_models():
        versions = sorted(
            c.search_model_versions(f"name = '{rm.name}'"), key=lambda v: int(v.version)
        )
        # every version registered from the run's one MLflow run, under its own key
        assert {v.run_id for v in versions} == {r.info.run_id for r in runs}
        for v in versions:
            assert v.tags["ews.run_id"] == v.run_id
        out["models"][rm.name] = {
            "versions": [
                (
                    str(v.version),
                    {
                        k: t
                        for k, t in v.tags.items()
                        if k not in ("ews.run_id", "ews.registration")
                    },
                )
                for v in versions
            ],
            "aliases": {a: str(v) for a, v in c.get_registered_model(rm.name).aliases.items()},
        }
    return out


@pytest.fixture(scope="module")
def registered_whole(
    agency: Path, features: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], exp.ExperimentResult]:
    """The registry an uninterrupted `registry: all` run leaves in a store of its own."""
    from ews.settings import get_settings

    uri = f"sqlite:///{tmp_path_factory.mktemp('whole-mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EWS_MLFLOW_URI", uri)
        get_settings.cache_clear()
        try:
            result = _run_registering(
                agency, features, mp, progress=False, checkpoint=tmp_path_factory.mktemp("ck")
            )
            state = _registry_state(uri)
        finally:
            get_settings.cache_clear()
    return state, result


def ckpt_run(folder: Path) -> str:
    """The random part of the identity of the run a checkpoint holds (its manifest's)."""
    return str(json.loads((folder / ckpt_mod.MANIFEST).read_text())["run"])


class StopRegistering:
    """Interrupts registration (KeyboardInterrupt, as Ctrl-C does) where ``at`` says:
    ``("create", k)`` right after MLflow created the k-th model version (k = 0: before the
    first), before anything else is written; ``("upload", 0)`` once the run's model files
    are uploaded, before the run ends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: tuple[str, int]) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.armed = True
        self.created = 0
        where, k = at
        create, upload = MlflowClient.create_model_version, mlflow.log_artifacts

        def create_version(client: Any, *args: Any, **kw: Any) -> Any:
            if self.armed and where == "create" and self.created == k:
                raise KeyboardInterrupt
            mv = create(client, *args, **kw)
            self.created += 1
            if self.armed and where == "create" and self.created == k:
                raise KeyboardInterrupt
            return mv

        def log_artifacts(*args: Any, **kw: Any) -> Any:
            upload(*args, **kw)
            if self.armed and where == "upload":
                raise KeyboardInterrupt

        monkeypatch.setattr(MlflowClient, "create_model_version", create_version)
        monkeypatch.setattr(mlflow, "log_artifacts", log_artifacts)


@pytest.mark.parametrize(
    ("at", "via"),
    [
        (("create", 3), "here"),  # 3 of 7 versions created, the 3rd one's unit not written
        (("create", 1), "here"),  # the champion's version created, not yet its alias
        (("create", 7), "here"),  # every version created, not the alias
        (("create", 0), "here"),  # the run and its files there, no version
        (("upload", 0), "here"),  # the files uploaded, the run not ended
        (("create", 3), "registrar"),  # the same, in the registering process
        (("unit", 2), "here"),  # 2 versions created and their units written
    ],
)
def test_a_run_stopped_while_registering_resumes_to_the_registry_of_an_uninterrupted_one(
    agency: Path,
    features: pd.DataFrame,
    registered_whole: tuple[dict[str, Any], exp.ExperimentResult],
    store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    at: tuple[str, int],
    via: str,
) -> None:
    """Stopped at any point of the registration, a resumed run registers each model exactly
    once: the same versions, with the same tags, the alias on the same version, from one
    MLflow run, as an uninterrupted run; and it says what it kept."""
    from models import registry

    state, whole = registered_whole
    assert state["runs"] == 1
    ((name, model),) = state["models"].items()
    assert len(model["versions"]) == 7 and model["aliases"] == {"champion": "1"}

    folder = tmp_path / "checkpoint"
    where, k = at
    # after the k-th version's unit (6 units of work first), or at a point of MLflow's
    stop: Any = Stop(monkeypatch, 6 + k) if where == "unit" else StopRegistering(monkeypatch, at)
    # stopped in the registering process, the job hears that it ended without answering
    with pytest.raises(KeyboardInterrupt if via == "here" else registry.RegistryError):
        _run_registering(agency, features, monkeypatch, via, progress=False, checkpoint=folder)
    # every unit of work done, and a unit per version created (not the one stopped after
    # its creation, before its unit)
    journalled = k if where == "unit" else max(k - 1, 0)
    units = ckpt_mod.summary(folder)

    stop.armed, stop.after = False, None
    lines: list[str] = []
    resumed = _run_registering(
        agency, features, monkeypatch, via, progress=lines.append, checkpoint=folder, resume=True
    )
    assert _registry_state(store) == state
    assert units == 6 + journalled
    # each version under its own registration key, which names this run's checkpoint
    c = registry.client(store)
    keys = [v.tags.get("ews.registration", "") for v in c.search_model_versions(f"name = '{name}'")]
    assert len(set(keys)) == 7 and all(
        k.split("/")[0].endswith(f"-{ckpt_run(folder)}") for k in keys
    )
    text = "\n".join(lines)
    (resuming,) = [x for x in lines if "resuming from" in x]
    assert "2 of 2 splits, 3 of 3 choices, 1 of 1 deployment refits" in resuming
    assert (f", {journalled} of 7 model registrations done" in resuming) == (journalled > 0)
    if k:  # the versions MLflow had created when it was stopped, found in the registry
        assert (
            f"{k} of 7 models already registered by the stopped run: kept, not registered "
            f"again; {7 - k} registered now" in text
        )
        assert resumed.resumed is not None
        assert resumed.resumed["models_already_registered"] == k
    else:
        assert "already registered" not in text
    # the results name the same versions, and each loads back as the model it names
    regs = [(r["label"], r["candidate"], r["version"]) for r in resumed.to_dict()["registered"]]
    assert regs == [
        (r["label"], r["candidate"], r["version"]) for r in whole.to_dict()["registered"]
    ]
    champ = whole.champions["sustained"]
    x = champ.background
    loaded = registry.load_model(f"{name}@champion", uri=store)
    np.testing.assert_array_equal(loaded.model.predict_proba(x), champ.model.predict_proba(x))
    other = whole.fitted[-1]
    loaded = registry.load_model(f"{name}/7", uri=store, artifacts=False)
    np.testing.assert_array_equal(loaded.model.predict_proba(x), other.model.predict_proba(x))
