"""The MLflow registry: register, alias, load back, promote; every version traceable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _models_agency import shared_mlflow_uri

from models import registry
from models.grid import make_estimator


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "complaint_1y_count": rng.poisson(1.0, 300).astype(float),
            "use_of_force_1y_count": rng.poisson(2.0, 300).astype(float),
        }
    )
    y = (X["complaint_1y_count"] + rng.normal(0, 1, 300) > 1.5).astype(int).to_numpy()
    return X, y


def test_register_load_predict_and_promote(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    uri = shared_mlflow_uri()
    X, y = data
    name = "ews-regtest-sustained"
    m1 = make_estimator("logistic_regression", {"C": 0.5}, seed=3).fit(X, y)
    tags = {
        "ews.agency": "regtest",
        "ews.snapshot_id": "snap-1",
        "ews.spec_hash": "abc123",
        "ews.config_hash": "cfg456",
        "ews.seed": 3,
        "ews.label": "sustained",
        "ews.candidate": "lr[C=0.5]",
    }
    v1 = registry.register_model(
        m1, name, X, tags, config={"seed": 3}, background=X.head(20), uri=uri
    )
    loaded = registry.load_champion(name, uri=uri)
    assert loaded.version == v1 and loaded.aliases == ["champion"]
    assert np.allclose(loaded.model.predict_proba(X), m1.predict_proba(X))
    assert loaded.feature_names == list(X.columns)
    assert loaded.config == {"seed": 3}
    assert loaded.background is not None and loaded.background.shape == (20, 2)
    for key, value in tags.items():
        assert loaded.tags[key] == str(value)
    assert loaded.tags["ews.run_id"] == loaded.run_id

    # A second version takes the champion alias; promote moves it back.
    m2 = make_estimator("random_forest", {"n_estimators": 10}, seed=1).fit(X, y)
    v2 = registry.register_model(m2, name, X, {**tags, "ews.seed": 1}, uri=uri)
    assert int(v2) == int(v1) + 1
    assert registry.resolve(name, uri=uri) == (name, v2)
    registry.promote(name, v1, uri=uri)
    assert registry.resolve(f"{name}@champion", uri=uri) == (name, v1)
    registry.promote(name, v2, alias="challenger", uri=uri)
    back = registry.load_model(f"{name}@challenger", uri=uri, artifacts=False)
    assert np.allclose(back.model.predict_proba(X), m2.predict_proba(X))
    assert registry.resolve(f"{name}/{v2}", uri=uri) == (name, v2)
    rows = [r for r in registry.list_models(uri) if r["name"] == name]
    assert [(r["version"], r["aliases"]) for r in rows] == [
        (v1, ["champion"]),
        (v2, ["challenger"]),
    ]
    assert rows[0]["snapshot_id"] == "snap-1" and rows[0]["seed"] == "3"
    assert registry.resolve("champion", agency="regtest", uri=uri) == (name, v1)


def test_clear_errors() -> None:
    uri = shared_mlflow_uri()
    with pytest.raises(registry.RegistryError, match="no version 99"):
        registry.promote("ews-regtest-none", 99, uri=uri)
    with pytest.raises(registry.RegistryError, match="has no alias"):
        registry.resolve("ews-nothing-here@champion", uri=uri)
    with pytest.raises(registry.RegistryError, match="ews train"):
        registry.resolve("champion", agency="no-such-agency", uri=uri)


def test_model_name_is_safe() -> None:
    assert registry.model_name("Chicago PD", "sustained_or_force") == (
        "ews-Chicago-PD-sustained_or_force"
    )


@pytest.mark.parametrize(("threads", "via"), [("1", "here"), ("2", "here"), ("2", "registrar")])
def test_register_models_writes_each_model_serially_or_in_forked_workers(
    data: tuple[pd.DataFrame, np.ndarray], threads: str, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """register_models saves each model (EWS_THREADS > 1: in forked workers) and every
    version loads back with its own predictions, rules, background and trace tags; after
    warm_up, in the registering process it started (which then ends)."""
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_THREADS", threads)
    get_settings.cache_clear()
    try:
        uri = shared_mlflow_uri()
        X, y = data
        name = f"ews-regtest-batch{threads}{via}-sustained"
        fitted = [
            make_estimator("logistic_regression", {"C": 0.1}, seed=0).fit(X, y),
            make_estimator("random_forest", {"n_estimators": 7, "max_depth": 3}, seed=1).fit(X, y),
            make_estimator("random_forest", {"n_estimators": 5, "max_depth": 6}, seed=2).fit(X, y),
        ]
        entries = [
            registry.ModelEntry(
                model=m,
                name=name,
                example=X,
                tags={"ews.agency": "regtest", "ews.seed": i, "ews.label": "sustained"},
                rules={"rule": i},
                background=X.head(5 + i),
                params={"i": i},
                alias=registry.CHAMPION if i == 0 else None,
            )
            for i, m in enumerate(fitted)
        ]
        registrar = None
        if via == "registrar":
            registry.warm_up(uri)
            registrar = registry._REGISTRAR
            assert registrar is not None and registrar.process.is_alive()
        out = registry.register_models(entries, config={"threads": threads}, uri=uri)
        if registrar is not None:  # it served this request and ended
            assert registry._REGISTRAR is None and registrar.process.exitcode == 0
        assert [o["name"] for o in out] == [name] * 3
        assert len({o["run_id"] for o in out}) == 1
        for i, (m, o) in enumerate(zip(fitted, out, strict=True)):
            back = registry.load_model(f"{name}/{o['version']}", uri=uri)
            assert type(back.model) is type(m)
            assert np.allclose(back.model.predict_proba(X), m.predict_proba(X))
            assert back.rules == {"rule": i}
            assert back.background is not None and len(back.background) == 5 + i
            assert back.tags["ews.seed"] == str(i)
        assert registry.resolve(f"{name}@champion", uri=uri) == (name, out[0]["version"])
    finally:
        get_settings.cache_clear()


def test_soft_vote_registers_and_loads_back(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    """The LR + HGB soft vote is saved with skops like every model and loads back whole."""
    uri = shared_mlflow_uri()
    X, y = data
    name = "ews-regtest-vote"
    model = make_estimator(
        "lr_hgb_vote", {"lr__model__C": 0.5, "hgb__max_iter": 20}, seed=2, n_jobs=1
    ).fit(X, y)
    tags = {"ews.agency": "regtest-vote", "ews.label": "sustained", "ews.candidate": "vote"}
    version = registry.register_model(model, name, X, tags, uri=uri)
    loaded = registry.load_model(f"{name}/{version}", uri=uri, artifacts=False)
    assert type(loaded.model).__name__ == "VotingClassifier"
    assert np.allclose(loaded.model.predict_proba(X), model.predict_proba(X))


def test_trusted_types_come_from_one_member_of_each_kind(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """The types to trust are read from a twin keeping one member of each kind: a forest's
    twin has one tree and names the same types as the whole forest; a vote of unlike
    members keeps them all."""
    import skops.io as sio

    X, y = data
    forest = make_estimator("random_forest", {"n_estimators": 12}, seed=0).fit(X, y)
    twin = registry._twin(forest)
    assert len(twin.estimators_) == 1 and len(forest.estimators_) == 12
    whole = sorted(sio.get_untrusted_types(data=sio.dumps(forest)))
    assert registry._trusted_types(forest) == whole
    vote = make_estimator("lr_hgb_vote", {"hgb__max_iter": 5}, seed=0, n_jobs=1).fit(X, y)
    assert registry._twin(vote) is vote
    assert registry._structure(vote) != registry._structure(vote.estimators_[0])
    assert sorted(sio.get_untrusted_types(data=sio.dumps(vote))) == registry._trusted_types(vote)


def test_a_model_saved_with_types_it_does_not_trust_is_refused_and_removed(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """Saving audits the written file with skops (it is not loaded back): a forest saved
    without trusting its own type is refused as MLflow's own check refuses it, and leaves
    no model file; trusting the types its twin names, it saves and loads back whole."""
    import mlflow.sklearn
    import skops.io as sio
    from mlflow.exceptions import MlflowException

    X, y = data
    forest = make_estimator("random_forest", {"n_estimators": 8}, seed=0).fit(X, y)
    entry = registry.ModelEntry(model=forest, name="", example=X, tags={})
    signature = registry._signature(entry)
    trusted = registry._trusted_types(forest)
    kind = "models.ensembles.PackedRandomForestClassifier"
    assert kind in trusted
    short = [t for t in trusted if t != kind]
    with pytest.raises(MlflowException, match=rf"untrusted types .*: {re.escape(kind)}$"):
        registry._save_job(registry._SaveJob(entry, tmp_path / "short", signature, short))
    assert list((tmp_path / "short" / "model").iterdir()) == []
    # MLflow's own save (its verifying load) refuses the same list
    with pytest.raises(MlflowException, match="untrusted types"):
        mlflow.sklearn.save_model(
            forest, tmp_path / "mlflow", serialization_format="skops", skops_trusted_types=short
        )
    registry._save_job(registry._SaveJob(entry, tmp_path / "whole", signature, trusted))
    saved = tmp_path / "whole" / "model" / "model.skops"
    assert sorted(sio.get_untrusted_types(file=saved)) == trusted
    loaded = mlflow.sklearn.load_model(str(tmp_path / "whole" / "model"))
    assert np.array_equal(loaded.predict_proba(X), forest.predict_proba(X))


def test_the_lean_save_skips_only_the_environment_check_of_our_requirements(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within a save, MLflow's environment check is skipped for our requirements (packages
    this process runs, and its own MLflow) and still run for any other list; after it, both
    MLflow functions are its own again."""
    import mlflow
    import mlflow.sklearn as ms
    import mlflow.utils.environment as env

    before = (ms._save_model, env.warn_dependency_requirement_mismatches)
    ours = [f"mlflow=={mlflow.__version__}", *registry.PIP_REQUIREMENTS]
    with registry._lean_mlflow_save(), caplog.at_level("WARNING"):
        env.warn_dependency_requirement_mismatches(ours)
        assert "mismatches" not in caplog.text
        env.warn_dependency_requirement_mismatches(["ews-no-such-package==1.0"])
        assert "ews-no-such-package" in caplog.text
    assert (ms._save_model, env.warn_dependency_requirement_mismatches) == before


@pytest.mark.parametrize("via", ["here", "registrar"])
def test_a_registration_failure_is_raised_the_same_from_the_registering_process(
    data: tuple[pd.DataFrame, np.ndarray], via: str, tmp_path: Path
) -> None:
    """A store that cannot be opened (its folder is a file) fails registering with the same
    error whether it is registered here or in the process warm_up started; from there the
    error also says where it happened, and the process has ended."""
    X, y = data
    (tmp_path / "not-a-folder").write_text("")
    uri = f"sqlite:///{tmp_path}/not-a-folder/mlflow.db"
    model = make_estimator("logistic_regression", {"C": 0.1}, seed=0).fit(X, y)
    entry = registry.ModelEntry(model=model, name="ews-regtest-nostore", example=X, tags={})
    registrar = None
    if via == "registrar":
        registry.warm_up(uri)
        registrar = registry._REGISTRAR
    with pytest.raises(OSError) as raised:
        registry.register_models([entry], uri=uri)
    assert "not-a-folder" in str(raised.value)
    notes = getattr(raised.value, "__notes__", [])
    assert any("in the registering process" in n for n in notes) == (via == "registrar")
    assert registry._REGISTRAR is None
    if registrar is not None:
        assert not registrar.process.is_alive()


def test_the_registering_process_warms_up_without_collecting_then_freezes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registering process imports MLflow and skops and saves a first model with the
    cyclic collector paused (those objects live as long as the process), then freezes them
    out of later collections' reach and collects again while it saves the job's models."""
    import gc
    import json

    seen = tmp_path / "seen.jsonl"

    def record(when: str) -> None:
        with seen.open("a") as f:
            f.write(json.dumps([when, gc.isenabled(), gc.get_freeze_count()]) + "\n")

    real_warm_save, real_ahead = registry._warm_save, registry._Ahead

    def warm_save() -> None:
        record("warm-up")
        real_warm_save()

    class Ahead(real_ahead):  # type: ignore[misc,valid-type]
        def __init__(self, root: Path | None = None) -> None:
            record("after")
            super().__init__(root)

    monkeypatch.setattr(registry, "_warm_save", warm_save)  # the fork inherits both
    monkeypatch.setattr(registry, "_Ahead", Ahead)
    gc.unfreeze()  # this process: nothing frozen, collecting
    assert gc.isenabled()
    registry.warm_up(shared_mlflow_uri())
    registrar = registry._REGISTRAR
    assert registrar is not None
    registrar.close()  # no request: the process ends once warmed up
    registrar.process.join(60)
    registry._REGISTRAR = None
    (warm, w_on, w_frozen), (after, a_on, a_frozen) = (
        json.loads(line) for line in seen.read_text().splitlines()
    )
    assert (warm, w_on, w_frozen) == ("warm-up", False, 0)
    assert after == "after" and a_on and a_frozen > 100_000  # MLflow's and skops' objects
    assert gc.isenabled() and gc.get_freeze_count() == 0  # this process is as it was


def test_only_types_of_the_trusted_packages_are_trusted(
    data: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The types named trusted for a structure are read from the first model of it seen: a
    lambda that model holds was trusted, for it and every later model of its structure (and
    refused when a plain model came first). Now only types of TRUSTED_PACKAGES are, in
    either order; the audit then refuses the lambda's model."""
    X, y = data

    def fitted(with_lambda: bool) -> object:
        model = make_estimator("logistic_regression", {"C": 0.1}, seed=0).fit(X, y)
        if with_lambda:
            model.scorer_ = lambda v: v
        return model

    for order in ((True, False), (False, True)):
        monkeypatch.setattr(registry, "_TRUSTED", {})
        seen = [registry._trusted_types(fitted(w)) for w in order]
        assert seen[0] == seen[1] == ["numpy.dtype"], (order, seen)


def test_a_model_that_cannot_be_pickled_is_registered_here(
    data: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registering process gets the models pickled; one that cannot be (a lambda in an
    attribute) is registered in this process instead, and fails or succeeds as it would
    there (here: the skops file it writes names the function, a type nobody trusts, even
    when it is the first logistic regression this process registers)."""
    monkeypatch.setattr(registry, "_TRUSTED", {})  # no structure's types read yet
    uri = shared_mlflow_uri()
    X, y = data
    model = make_estimator("logistic_regression", {"C": 0.1}, seed=0).fit(X, y)
    entry = registry.ModelEntry(model=model, name="ews-regtest-unpicklable", example=X, tags={})
    model.scorer_ = lambda v: v
    registry.warm_up(uri)
    registrar = registry._REGISTRAR
    outcomes = []
    for _attempt in range(2):  # once through the registrar's fallback, once here
        try:
            registry.register_models([entry], uri=uri)
            outcomes.append("registered")
        except Exception as exc:  # noqa: BLE001 - compared below
            outcomes.append(f"{type(exc).__name__}: {exc}")
            assert not getattr(exc, "__notes__", [])
    assert outcomes[0] == outcomes[1] and "skops" in outcomes[0] and "<lambda>" in outcomes[0]
    assert registry._REGISTRAR is None
    assert registrar is not None and not registrar.process.is_alive()


def test_registering_again_under_the_same_token_registers_nothing_new(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """Under one token (a run's identity) a registration done again keeps what is there:
    the same versions, the same MLflow run, the alias where it was; another token (another
    run of the same models) registers them again, as it always did; and a registration
    whose job has ended stops before registering anything."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    X, y = data
    name = "ews-regtest-token-sustained"
    fitted = [make_estimator("logistic_regression", {"C": c}, seed=0).fit(X, y) for c in (0.1, 1.0)]
    entries = [
        registry.ModelEntry(
            model=m,
            name=name,
            example=X,
            tags={"ews.label": "sustained", "ews.candidate": f"lr{i}"},
            alias=registry.CHAMPION if i == 1 else None,
        )
        for i, m in enumerate(fitted)
    ]
    first = registry.register_models(entries, uri=uri, token="tok-a")
    assert [o["version"] for o in first] == ["1", "2"] and "kept" not in first[0]
    again = registry.register_models(entries, uri=uri, token="tok-a")
    assert again == [{**o, "kept": "true"} for o in first]
    rows = registry.list_models(uri)
    assert [(r["version"], r["aliases"]) for r in rows] == [("1", []), ("2", ["champion"])]
    other = registry.register_models(entries, uri=uri, token="tok-b")
    assert [o["version"] for o in other] == ["3", "4"]
    assert other[0]["run_id"] != first[0]["run_id"]
    assert registry.resolve(f"{name}@champion", uri=uri) == (name, "4")
    tags = registry.version_tags(name, 3, uri)
    assert tags is not None and tags["ews.registration"].startswith("tok-b/0/")
    # in the registering process, when the job that asked is gone: nothing registered
    with pytest.raises(registry.RegistryError, match="has ended"):
        registry._register_models_here(entries, uri=uri, token="tok-c", asker=-1)
    assert len(registry.list_models(uri)) == 4


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_registering_process_ends_when_its_job_is_killed_before_asking(
    tmp_path: Path,
) -> None:
    """A job killed (SIGKILL: no clean-up) after warm_up started its registering process,
    before it asked it anything: that process ends by itself (it used to wait forever for
    a request, holding the job's end of the pipe itself)."""
    import os
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = (
        "import os, signal, sys\n"
        "from models import registry\n"
        "registry.warm_up(sys.argv[1])\n"
        "print(registry._REGISTRAR.process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = tmp_path / "out.txt"  # a file, not a pipe: the registering process inherits it
    with out.open("w") as fh:
        done = subprocess.run([sys.executable, "-c", job, uri], stdout=fh, timeout=120)
    assert done.returncode == -9
    pid = int(out.read_text().split()[0])

    def running() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"  # a zombie has ended (its new parent may not reap it)

    deadline = time.monotonic() + 90  # its warm-up (imports, the store's creation) first
    while running() and time.monotonic() < deadline:
        time.sleep(0.5)
    still = running()
    if still:
        os.kill(pid, 9)
    assert not still, "the registering process still waits for the killed job"


def test_models_saved_ahead_register_as_the_others(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """In the registering process, models sent ahead are saved as they come (_Ahead.work);
    the request that names them by token finds their folders written and moves them into
    place, and every version loads back with its own predictions, rules and background, as
    the model that was not sent ahead."""
    import dataclasses
    import pickle

    uri = shared_mlflow_uri()
    X, y = data
    name = "ews-regtest-ahead-sustained"
    fitted = [
        make_estimator("random_forest", {"n_estimators": 6, "max_depth": 3}, seed=1).fit(X, y),
        make_estimator("logistic_regression", {"C": 0.1}, seed=0).fit(X, y),
        make_estimator("random_forest", {"n_estimators": 4, "max_depth": 5}, seed=2).fit(X, y),
    ]
    batch = tmp_path / "batch.pickle"
    batch.write_bytes(pickle.dumps([(0, fitted[0], X), (1, fitted[1], X)]))

    class Idle:  # a pipe with no message waiting
        def poll(self) -> bool:
            return False

    ahead = registry._Ahead()
    ahead.add(str(batch))
    assert not batch.exists()  # read, then removed
    ahead.work(Idle())
    written = dict(ahead.folders)
    assert set(written) == {0, 1} and all(
        (f / "model" / "MLmodel").is_file() for f in written.values()
    )
    entries = [
        registry.ModelEntry(
            model=m, name=name, example=X, tags={"ews.seed": i}, rules={"rule": i},
            background=X.head(5 + i), params={"i": i}, metrics={"auc": 0.5 + i / 10},
        )
        for i, m in enumerate(fitted)
    ]  # fmt: skip
    sent = [dataclasses.replace(e, model=None) for e in entries[:2]] + entries[2:]
    out = registry._register_models_here(
        sent, config={"ahead": True}, uri=uri, threads=1, ahead_ids=[0, 1, None], ahead=ahead
    )
    assert not any(f.exists() for f in written.values())  # moved into the run's folder
    ahead.cleanup()
    for i, (m, o) in enumerate(zip(fitted, out, strict=True)):
        back = registry.load_model(f"{name}/{o['version']}", uri=uri)
        assert type(back.model) is type(m)
        np.testing.assert_array_equal(back.model.predict_proba(X), m.predict_proba(X))
        assert back.rules == {"rule": i} and back.tags["ews.seed"] == str(i)
        assert back.background is not None and len(back.background) == 5 + i


def test_save_ahead_through_the_registering_process(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """save_ahead hands models to the process warm_up started (nothing without one, and a
    model once); register_models then names them by token, a model registered twice is sent
    again, and every version loads back with its own predictions; no batch file is left."""
    uri = shared_mlflow_uri()
    X, y = data
    name = "ews-regtest-ahead2-sustained"
    first = make_estimator("random_forest", {"n_estimators": 5, "max_depth": 3}, seed=3).fit(X, y)
    second = make_estimator("logistic_regression", {"C": 1.0}, seed=0).fit(X, y)
    assert registry._REGISTRAR is None and registry.save_ahead([(first, X)]) == 0
    registry.warm_up(uri)
    registrar = registry._REGISTRAR
    assert registrar is not None
    assert registry.save_ahead([(first, X), (second, X)]) == 2
    assert registry.save_ahead([(first, X)]) == 0  # already sent
    files = list(registrar.files)
    assert len(files) == 1
    entries = [
        registry.ModelEntry(model=m, name=name, example=X, tags={"ews.seed": i})
        for i, m in enumerate([first, second, first])
    ]
    out = registry.register_models(entries, uri=uri)
    assert registry._REGISTRAR is None and registry._AHEAD == {}
    assert registrar.process.exitcode == 0 and not any(f.exists() for f in files)
    assert not registrar.ahead_root.exists()  # the folders saved ahead went into the run
    for m, o in zip([first, second, first], out, strict=True):
        back = registry.load_model(f"{name}/{o['version']}", uri=uri, artifacts=False)
        np.testing.assert_array_equal(back.model.predict_proba(X), m.predict_proba(X))


def test_a_model_saved_ahead_with_another_signature_is_saved_again(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """The request decides each kind's signature (from the first entry of that kind, as
    without saving ahead): a folder saved ahead from an example whose signature differs
    (here a missing value makes a column optional) is not used; the model is saved again
    with the request's signature."""
    import pickle

    import mlflow.models

    uri = shared_mlflow_uri()
    X, y = data
    name = "ews-regtest-ahead3-sustained"
    model = make_estimator("logistic_regression", {"C": 0.3}, seed=0).fit(X, y)
    holed = X.copy()
    holed.iloc[0, 0] = np.nan
    batch = tmp_path / "batch.pickle"
    batch.write_bytes(pickle.dumps([(0, model, holed)]))

    class Idle:
        def poll(self) -> bool:
            return False

    ahead = registry._Ahead()
    ahead.add(str(batch))
    ahead.work(Idle())
    assert 0 in ahead.folders
    entry = registry.ModelEntry(model=None, name=name, example=X, tags={})
    (out,) = registry._register_models_here([entry], uri=uri, threads=1, ahead_ids=[0], ahead=ahead)
    ahead.cleanup()
    info = mlflow.models.get_model_info(f"models:/{name}/{out['version']}")
    assert info.signature is not None
    assert all(col.required for col in info.signature.inputs.inputs)  # X has no hole
    back = registry.load_model(f"{name}/{out['version']}", uri=uri, artifacts=False)
    np.testing.assert_array_equal(back.model.predict_proba(X), model.predict_proba(X))


def test_a_stop_while_the_store_is_created_leaves_no_half_built_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workspace's first registration builds MLflow's SQLite store (a few seconds of
    migrations). A stop in the middle used to leave a half-built mlflow.db that every later
    command refused; now the store appears only once it is whole, and the next command
    builds it."""
    import mlflow.store.db.utils as db_utils

    db = tmp_path / "ws" / "mlflow.db"
    uri = f"sqlite:///{db}"
    upgrade = db_utils._upgrade_db

    def stopped(engine: object) -> None:  # the tables exist, the migrations are not done
        raise KeyboardInterrupt

    monkeypatch.setattr(db_utils, "_upgrade_db", stopped)
    with pytest.raises(KeyboardInterrupt):
        registry.client(uri).search_experiments()
    assert not db.exists()
    assert sorted(p.name for p in db.parent.iterdir()) == []  # no temporary file left
    monkeypatch.setattr(db_utils, "_upgrade_db", upgrade)
    c = registry.client(uri)
    assert [e.name for e in c.search_experiments()] == ["Default"]
    assert c.search_registered_models() == []
    assert db.exists()


def test_a_killed_creator_s_temporary_store_is_removed_by_the_next_creation(
    tmp_path: Path,
) -> None:
    """A creator killed outright (SIGKILL) cannot remove its temporary store: the next
    creation removes it, and leaves alone those of creators still running."""
    import subprocess
    import sys

    folder = tmp_path / "ws"
    folder.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(gone.stdout)  # a process that has ended
    killed = folder / f".mlflow.db.creating-{dead}-0123456789ab"
    killed.write_bytes(b"half-built")
    (folder / f"{killed.name}-journal").write_bytes(b"")
    older = folder / ".mlflow.db.creating-123456789012"  # an earlier version's name: no pid
    older.write_bytes(b"half-built")
    running = folder / f".mlflow.db.creating-{os.getppid()}-ba9876543210"
    running.write_bytes(b"another process, still building")
    c = registry.client(f"sqlite:///{folder / 'mlflow.db'}")
    assert [e.name for e in c.search_experiments()] == ["Default"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["mlflow.db", running.name])
