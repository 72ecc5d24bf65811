"""The model registry: MLflow tracking and registry, SQLite in the workspace by default.

Every registered model version carries, as tags, what it takes to trace a score back to its
origin: the data snapshot id, the feature-spec hash, the experiment-config hash, the seed,
the label and the grid candidate. Next to the model, its run holds the experiment config
(``experiment_config.json``), the fitted comparison rules (``rules.joblib``), a small
background sample of training rows for explanations (``background.parquet``) and the
experiment's results (``results.json``). Versions move between roles with aliases
(``champion``, ``challenger``): ``promote`` moves an alias, ``load_champion`` loads by alias.

The tracking URI is ``Settings.mlflow_tracking_uri``: ``sqlite:///$EWS_HOME/mlflow.db``
unless ``EWS_MLFLOW_URI`` names another tracking server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from ews.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT_NAME = "ews"
# Explicit requirements make log_model about three times faster (no environment inference).
PIP_REQUIREMENTS = ["scikit-learn", "pandas", "numpy"]
TRACE_TAGS = (
    "ews.agency",
    "ews.snapshot_id",
    "ews.spec_hash",
    "ews.config_hash",
    "ews.seed",
    "ews.label",
    "ews.candidate",
)


class RegistryError(LookupError):
    """No such registered model, version or alias."""


class AmbiguousModel(RegistryError):
    """Several registered models hold the alias asked for (say, a champion per label):
    ``choices`` lists each one's ``(name, label)``, so a caller can say how to choose."""

    def __init__(self, alias: str, choices: list[tuple[str, str]]) -> None:
        self.alias, self.choices = alias, choices
        names = ", ".join(f"{n} ({label})" if label else n for n, label in choices)
        super().__init__(f"several models have the alias {alias!r}: {names}; name one")


def tracking_uri(settings: Settings | None = None) -> str:
    """The MLflow URI used by ews (tracking and registry share it)."""
    from ews.settings import get_settings

    return (settings or get_settings()).mlflow_tracking_uri


def configure(uri: str | None = None) -> str:
    """Point MLflow at ``uri`` (default: the workspace store), creating the workspace folder
    for a SQLite store; returns the URI. Telemetry is switched off."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        if not db.exists():
            _create_sqlite_store(db)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _create_sqlite_store(db: Path) -> None:
    """Create a new SQLite tracking store under a temporary name beside ``db`` and link it
    into place only once MLflow has built its tables (the same store MLflow would build at
    ``db``). A workspace's first ``ews train`` spends a few seconds in MLflow's migrations;
    a stop there used to leave a half-built ``mlflow.db`` that every later command refused
    ("index ... already exists") until someone deleted it. Now a stop leaves no store, and
    the next command builds it again. Two processes creating it at once each build their
    own; the first link wins and the other's copy is dropped. A creator killed outright
    (SIGKILL, power loss) cannot remove its temporary files: they carry its process id, and
    the next creation removes those of creators no longer running."""
    import uuid

    from mlflow.tracking import MlflowClient

    _remove_abandoned_stores(db)
    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    try:
        building = MlflowClient(tracking_uri=f"sqlite:///{tmp}", registry_uri=f"sqlite:///{tmp}")
        building.search_experiments()  # builds every table (tracking and registry)
        building.search_registered_models()
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.link(tmp, db)  # atomic, and never over an existing store
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _remove_abandoned_stores(db: Path) -> None:
    """Remove the temporary stores (and their journals) that :func:`_create_sqlite_store`
    left beside ``db`` in processes that are no longer running."""
    from ews.processes import alive

    prefix = f".{db.name}.creating-"
    for path in db.parent.glob(f"{prefix}*"):
        pid = path.name.removeprefix(prefix).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or alive(int(pid)):
            continue
        path.unlink(missing_ok=True)


_WARMING: threading.Thread | None = None


class _Registrar:
    """A process forked at the start of a long job (:func:`warm_up`) that imports skops and
    MLflow, opens the store and saves a first model while the job builds features, then
    waits for the job's one :func:`register_models` request and answers it.

    Why a process and not a thread in the job's own process: those imports and the first
    save cost about 5 CPU-seconds of Python, which a thread pays holding the job's GIL (it
    slowed the features build beside it), and they left MLflow, SQLAlchemy and skops' many
    objects in the job's heap for every later garbage collection. The job itself never
    imports MLflow; it sends the fitted models (pickled through a pipe, a fraction of a
    second for 16 models) and gets back the versions, or the exception registering raised,
    re-raised as it was (with the registrar's traceback as a note)."""

    def __init__(self, uri: str) -> None:
        import atexit
        import multiprocessing

        self.uri = uri
        self.files: list[Path] = []  # models sent ahead, until the process has read them
        # where the process saves the models sent ahead: made (and removed by close) here, so
        # that nothing is left behind however the process ends
        self.ahead_root = Path(tempfile.mkdtemp(prefix="ews-ahead-"))
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_registrar_main,
            args=(child, uri, self.conn, self.ahead_root),
            name="ews-registrar",
            daemon=False,
        )  # not a daemon: it forks its own save workers
        self.process.start()
        child.close()
        # a job ending without registering closes the pipe, and the process returns (before
        # multiprocessing's own exit handler, registered earlier, waits for it)
        atexit.register(self.close)

    def register(self, request: dict[str, Any]) -> list[dict[str, str]] | None:
        """Send one :func:`register_models` request; its answer, or its exception raised.
        None when the request cannot be pickled (a model holding a lambda, say): then it is
        registered in this process, which fails as it always did."""
        from multiprocessing.reduction import ForkingPickler

        try:
            sent = ForkingPickler.dumps(request)
        except Exception:  # noqa: BLE001 - any pickling failure: register here instead
            self.close()
            return None
        try:
            self.conn.send_bytes(sent)
            del sent
            status, payload = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            raise RegistryError(
                f"the registering process ended without answering (exit code "
                f"{self.process.exitcode}); nothing of this run may be registered"
            ) from exc
        finally:
            self.close()
        if status == "ok":
            result: list[dict[str, str]] = payload
            return result
        error, trace = payload
        error.add_note(f"raised while registering, in the registering process:\n{trace}")
        raise error

    def send_ahead(self, batch: list[tuple[int, Any, Any]]) -> bool:
        """Send fitted models to be saved now, before the request that registers them
        (:func:`save_ahead`): ``(token, model, example)`` each. They are pickled to a file
        and only its path goes through the pipe, so that this never waits for the process
        (busy importing or saving, it would not read a pipe full of models). False when they
        could not be sent (not picklable, or the process is gone): they then go with the
        request."""
        import pickle

        if self.conn.closed:
            return False
        fd, name = tempfile.mkstemp(prefix="ews-ahead-", suffix=".pickle")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
            self.conn.send({"ahead": str(path)})
        except Exception:  # noqa: BLE001 - not picklable, or no process: sent with the request
            path.unlink(missing_ok=True)
            return False
        self.files.append(path)
        return True

    def close(self) -> None:
        if self.conn.closed and not self.process.is_alive():
            return
        self.conn.close()
        self.process.join(timeout=5)  # after an answer it returns at once; unasked, it
        if self.process.is_alive():  # returns when its warm-up is done (or is stopped)
            self.process.terminate()
            self.process.join()
        for path in self.files:  # read and removed by the process, unless it failed
            path.unlink(missing_ok=True)
        self.files = []
        shutil.rmtree(self.ahead_root, ignore_errors=True)


def _registrar_main(
    conn: Any, uri: str, jobs_end: Any = None, ahead_root: Path | None = None
) -> None:
    """The registering process: warm up, then serve one request (see :class:`_Registrar`).

    The job's end of the pipe, inherited by the fork, is closed first: a job killed before
    it asked (SIGTERM, SIGKILL) then ends the wait here (EOF) instead of leaving this process
    waiting forever; a job killed while this process registers stops it before its next
    step (see :func:`_check_asker`)."""
    import gc
    import pickle
    import traceback

    from ews.processes import collection_paused

    if jobs_end is not None:
        jobs_end.close()
    asker = os.getppid()  # the job: registering stops if it ends first
    try:
        # the warm-up's imports stay for this process's life: not collected while they are
        # made (ews.processes.collection_paused), then frozen out of later collections' reach
        with collection_paused():
            try:
                import skops.io  # noqa: F401  (first: see warm_up)

                c = client(uri)
                c.get_experiment_by_name(EXPERIMENT_NAME)
                # the first search of the registry imports what it needs: 0.5-0.9 s measured
                c.search_registered_models(max_results=1)
                _warm_save()
                _warm_run_context()
            except Exception:  # noqa: BLE001 - happens again, and is reported, on the request
                pass
        gc.freeze()
        ahead = _Ahead(ahead_root)
        try:
            while True:  # models sent ahead are saved while the job goes on, until asked
                request = conn.recv()
                if "ahead" not in request:
                    break
                ahead.add(request["ahead"])
                ahead.work(conn)
        except EOFError:  # the job ended or failed before registering
            ahead.cleanup()
            return
        threads = request.pop("threads")
        try:
            answer: tuple[str, Any] = (
                "ok",
                _register_models_here(**request, threads=threads, asker=asker, ahead=ahead),
            )
        except Exception as exc:  # noqa: BLE001 - sent back and raised by the job
            trace = traceback.format_exc()
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception:  # noqa: BLE001 - not picklable: its text, as a RegistryError
                exc = RegistryError(f"registering failed: {type(exc).__name__}: {exc}")
            answer = ("error", (exc, trace))
        ahead.cleanup()
        conn.send(answer)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the job reports it
        pass
    finally:
        conn.close()
        if ahead_root is not None:  # its folders are in the run by now, or not needed (a
            shutil.rmtree(ahead_root, ignore_errors=True)  # job killed cannot remove it)


class _Ahead:
    """In the registering process, the models the job sent ahead (:func:`save_ahead`): each
    one's MLflow model folder is written as soon as the process has nothing else to do,
    while the job evaluates and compares the rest, and the request that registers them then
    finds it written (:func:`_register_models_here` moves it into place and writes only the
    small files beside it). Saving stops as soon as the request arrives; the models not
    saved by then are saved with the others, as before."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root  # None: a temporary folder of its own, made when first needed
        self.models: dict[int, Any] = {}
        self.examples: dict[int, Any] = {}
        self.queue: list[int] = []
        self.folders: dict[int, Path] = {}
        self.signatures: dict[tuple[Any, ...], Any] = {}
        self.signature_of: dict[int, Any] = {}  # token -> the signature its folder holds
        self._root: tempfile.TemporaryDirectory[str] | None = None

    def add(self, path: str) -> None:
        """Queue the models of a batch the job pickled to ``path`` (removed once read)."""
        import pickle

        file = Path(path)
        try:
            batch = pickle.loads(file.read_bytes())
        except Exception:  # noqa: BLE001 - its models are missed by the request, which says so
            return
        finally:
            file.unlink(missing_ok=True)
        for token, model, example in batch:
            self.models[token], self.examples[token] = model, example
            self.queue.append(token)

    def work(self, conn: Any) -> None:
        """Save queued models one by one until none is left or a message is waiting."""
        while self.queue and not conn.poll():
            token = self.queue.pop(0)
            if self.root is None:
                self._root = tempfile.TemporaryDirectory(prefix="ews-ahead-")
                self.root = Path(self._root.name)
            folder = self.root / str(token)
            entry = ModelEntry(
                model=self.models[token], name="", example=self.examples[token], tags={}
            )
            try:
                folder.mkdir()
                signature = _signature(entry, self.signatures)
                _save_mlflow_model(_SaveJob(entry, folder, signature, _trusted_types(entry.model)))
            except Exception:  # noqa: BLE001 - saved again with the request, which reports it
                continue
            self.folders[token] = folder
            self.signature_of[token] = signature

    def take(self, token: int, signature: Any) -> Path | None:
        """The written model folder of ``token`` (once: the caller moves it), or None when
        there is none or it holds another signature than the request's (the request decides
        which model's example a kind's signature is read from, :func:`_signature`)."""
        folder = self.folders.pop(token, None)
        if folder is None or self.signature_of.get(token) != signature:
            return None
        return folder

    def cleanup(self) -> None:
        """Remove the folders not taken (and the folder of its own, if it made one)."""
        for folder in self.folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        self.folders.clear()
        if self._root is not None:
            self._root.cleanup()
            self._root, self.root = None, None


_REGISTRAR: _Registrar | None = None
#: models handed to the registering process ahead of the request (:func:`save_ahead`):
#: id(model) -> (model, token); the model is held so that its id stays its own
_AHEAD: dict[int, tuple[Any, int]] = {}


def save_ahead(models: list[tuple[Any, pd.DataFrame]]) -> int:
    """Hand fitted models that will be registered (each with the example its signature is
    read from, as :class:`ModelEntry`) to the registering process started by
    :func:`warm_up`, which saves them while this process goes on; :func:`register_models`
    then sends only what else the versions need. What is registered is the same (the same
    model folders, tags, params, metrics and aliases): only when its files are written
    changes. Nothing is done without a registering process. Returns how many were sent."""
    registrar = _REGISTRAR
    if registrar is None:
        return 0
    batch: list[tuple[int, Any, Any]] = []
    for model, example in models:
        if id(model) in _AHEAD:
            continue
        batch.append((len(_AHEAD) + len(batch), model, example))
    if not batch or not registrar.send_ahead(batch):
        return 0
    for token, model, _ in batch:
        _AHEAD[id(model)] = (model, token)
    return len(batch)


def warm_up(uri: str | None = None) -> None:
    """Start the registering process (:class:`_Registrar`) for the next
    :func:`register_models` of this process, so that a long job (``ews train``) pays
    MLflow's imports, store opening and first save on the other core while it builds
    features. A failure there is reported when registering.

    With no ``fork`` (not Linux), MLflow is imported in a background thread instead."""
    global _WARMING, _REGISTRAR
    uri = _resolved_uri(uri)
    import multiprocessing

    if "fork" in multiprocessing.get_all_start_methods():
        if _REGISTRAR is not None:
            _REGISTRAR.close()
        _AHEAD.clear()  # models sent to a process now gone (a run that failed before registering)
        _REGISTRAR = _Registrar(uri)
        return
    if _WARMING is not None:
        return

    def work() -> None:
        try:
            # skops first: importing it walks every loaded module once per NumPy and SciPy
            # ufunc (its trusted-type names), and modules MLflow brings in make that walk
            # dearer (measured 3.3 CPU-s for both imports in this order, 4.1 in the other)
            import skops.io  # noqa: F401

            client(uri).get_experiment_by_name(EXPERIMENT_NAME)
            _warm_save()
        except Exception:  # noqa: BLE001 - retried and reported by the caller
            pass

    _WARMING = threading.Thread(target=work, name="ews-mlflow-warm-up", daemon=True)
    _WARMING.start()


def _resolved_uri(uri: str | None = None) -> str:
    """``uri``, or the workspace's tracking URI (without importing MLflow)."""
    return uri or tracking_uri()


def _warm_save() -> None:
    """Save a tiny model the way :func:`register_models` does: the first save in a process
    loads what MLflow and skops import lazily (about a second), which forked workers then
    inherit instead of each paying it again."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    example = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(example, [0, 0, 1, 1])
    entry = ModelEntry(model=model, name="warm-up", example=example, tags={})
    with tempfile.TemporaryDirectory() as tmp:
        _save_job(_SaveJob(entry, Path(tmp) / "m", _signature(entry), _trusted_types(model)))


def _warm_run_context() -> None:
    """Resolve the tags MLflow gives a new run (the git commit of the running code, its
    checks for Databricks and notebooks, which import GitPython and IPython): its git
    provider keeps what it found for the process, so the registration's run, started when
    the job has nothing else to do but wait, no longer pays that (0.13 CPU-s measured)."""
    from mlflow.tracking.context import registry as run_context

    run_context.resolve_tags()


def _wait_for_warm_up() -> None:
    global _WARMING
    if _WARMING is not None:
        _WARMING.join()
        _WARMING = None


def set_experiment(uri: str | None = None, name: str = EXPERIMENT_NAME) -> str:
    """Make ``name`` the active MLflow experiment, creating it if needed; returns its id.

    With a SQLite store, artifacts go to ``mlartifacts/`` next to the database file (not the
    current directory, MLflow's default), so a workspace holds everything it needs.
    """
    import mlflow

    _wait_for_warm_up()
    uri = configure(uri)
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        location = None
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            location = (db.parent / "mlartifacts").resolve().as_uri()
        exp_id = c.create_experiment(name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def client(uri: str | None = None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    uri = configure(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_name(agency: str, label: str) -> str:
    """The registered-model name for an agency's model of one label: ``ews-<agency>-<label>``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{agency}-{label}")
    return f"ews-{safe}"


@dataclass
class RegisteredModel:
    """A loaded model version: the scikit-learn estimator and everything that traces it."""

    name: str
    version: str
    model: Any
    tags: dict[str, str]
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None
    rules: dict[str, Any] | None = None
    background: pd.DataFrame | None = None

    @property
    def feature_names(self) -> list[str]:
        names = getattr(self.model, "feature_names_in_", None)
        if names is None:
            raise RegistryError(f"{self.name} v{self.version} does not record its feature names")
        return [str(n) for n in names]


def _structure(model: Any) -> tuple[str, ...]:
    """The estimator classes a model is made of (a pipeline's steps, each distinct kind of an
    ensemble's members): models with the same structure hold the same types."""
    parts = [f"{type(model).__module__}.{type(model).__qualname__}"]
    for _, step in getattr(model, "steps", []):
        parts += _structure(step)
    members = getattr(model, "estimators_", None)
    if isinstance(members, list) and members:
        parts += sorted({"+".join(_structure(m)) for m in members})
    return tuple(parts)


_TRUSTED: dict[tuple[str, ...], list[str]] = {}


def _twin(model: Any) -> Any:
    """A shallow copy of an ensemble keeping one member of each kind (the same types as the
    whole, by construction of :func:`_structure`): a forest's twin has one tree, not 200."""
    import copy

    members = getattr(model, "estimators_", None)
    if not isinstance(members, list) or len(members) < 2:
        return model
    kept: dict[tuple[str, ...], Any] = {}
    for member in members:
        kept.setdefault(_structure(member), member)
    if len(kept) == len(members):
        return model
    twin = copy.copy(model)
    twin.estimators_ = list(kept.values())
    return twin


#: the packages whose types a registered model may hold beyond skops' defaults: those ews's
#: estimators are made of, and ews's own
TRUSTED_PACKAGES = ("numpy", "scipy", "sklearn", "models", "features", "ews")


def _trusted_types(model: Any) -> list[str]:
    """The types MLflow's skops format must be told to trust to load this model back.

    MLflow stores scikit-learn models with skops (no arbitrary code runs on load); types
    outside skops' default list (``numpy.dtype`` in forests, for example) must be named at
    save time. We name those found in the model we built and are registering, read once per
    model structure from a twin keeping one member of each kind (:func:`_twin`), and only
    those of :data:`TRUSTED_PACKAGES`: a function or a class from anywhere else (a lambda
    held in an attribute, say) is never trusted, whichever model of a structure came first.
    The audit of the written file then refuses any type not named (:func:`_dump_and_audit`):
    nothing untrusted is ever accepted.
    """
    import skops.io as sio

    key = _structure(model)
    if key not in _TRUSTED:
        found = sio.get_untrusted_types(data=sio.dumps(_twin(model)))
        _TRUSTED[key] = sorted(n for n in found if n.split(".", 1)[0] in TRUSTED_PACKAGES)
    return _TRUSTED[key]


@contextmanager
def _without_registration_chatter() -> Iterator[None]:
    """MLflow prints "Successfully registered model ..." and "Created version ..." on stderr
    whatever its logging level: keep those two lines out of the commands' output and pass
    anything else it writes (warnings, errors) through."""
    import io
    import re
    import sys
    from contextlib import redirect_stderr

    buffer = io.StringIO()
    try:
        with redirect_stderr(buffer):
            yield
    finally:
        chatter = re.compile(r"^(Successfully registered model|Created version) '")
        kept = [line for line in buffer.getvalue().splitlines(True) if not chatter.match(line)]
        sys.stderr.write("".join(kept))


def register_model(
    model: Any,
    name: str,
    X_example: pd.DataFrame,
    tags: dict[str, Any],
    *,
    config: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
    background: pd.DataFrame | None = None,
    results: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    alias: str | None = CHAMPION,
    uri: str | None = None,
    run_name: str | None = None,
) -> str:
    """Log a fitted scikit-learn model in a new MLflow run and register it under ``name``.

    The signature is inferred from ``X_example`` and the model's probabilities; ``tags`` (for
    example :data:`TRACE_TAGS`) go on the run and on the model version; ``alias`` (default
    ``champion``) is pointed at the new version. Returns the version (a string).
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    set_experiment(uri)
    str_tags = {k: "" if v is None else str(v) for k, v in tags.items()}
    example = X_example.head(50)
    signature = infer_signature(example, model.predict_proba(example)[:, 1])
    with mlflow.start_run(run_name=run_name or name) as run:
        mlflow.set_tags(str_tags)
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if metrics:
            mlflow.log_metrics(
                {k: float(v) for k, v in metrics.items() if v is not None and v == v}
            )
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            _write_run_files(tmpdir, config, results)
            if rules:
                import joblib

                joblib.dump(rules, tmpdir / "rules.joblib")
            if background is not None:
                background.to_parquet(tmpdir / "background.parquet", index=False)
            mlflow.log_artifacts(str(tmpdir))
        with _without_registration_chatter():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=name,
                skops_trusted_types=_trusted_types(model),
            )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    c = client(uri)
    for key, value in str_tags.items():
        c.set_model_version_tag(name, version, key, value)
    c.set_model_version_tag(name, version, "ews.run_id", run_id)
    if alias:
        c.set_registered_model_alias(name, alias, version)
    return version


@dataclass
class ModelEntry:
    """One fitted model to register with :func:`register_models`."""

    model: Any
    name: str
    example: pd.DataFrame
    tags: dict[str, Any]
    rules: dict[str, Any] | None = None
    background: pd.DataFrame | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None


@dataclass
class _SaveJob:
    """One model's folder to write: the entry, where, and what the parent process worked out
    for it (signature, trusted types), so that a worker only serializes."""

    entry: ModelEntry
    folder: Path
    signature: Any
    trusted: list[str]


def _signature(e: ModelEntry, known: dict[tuple[Any, ...], Any] | None = None) -> Any:
    """The MLflow signature of a model: its example's columns and types in, a float
    probability out. Models with the same example columns share it (pass ``known``), which
    spares a prediction per model."""
    from mlflow.models import infer_signature

    example = e.example.head(50)
    key = (type(e.model).__qualname__, *zip(example.columns, map(str, example.dtypes), strict=True))
    if known is not None and key in known:
        return known[key]
    signature = infer_signature(example, e.model.predict_proba(example)[:, 1])
    if known is not None:
        known[key] = signature
    return signature


class _CompactJson:
    """The ``json`` module as skops sees it, writing without indentation (see below)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    @staticmethod
    def dumps(obj: Any, *args: Any, indent: Any = None, **kwargs: Any) -> str:
        return json.dumps(obj, *args, **kwargs)


@contextmanager
def _compact_skops_schema() -> Iterator[None]:
    """skops writes a model's ``schema.json`` with ``indent=2``, which makes Python fall back
    from its C JSON encoder to the pure-Python one: half the time of saving a 200-tree forest
    goes there. For the duration, skops' writer gets the same JSON without indentation (the
    C encoder); the file holds the same document, and skops and MLflow read it the same way
    (tests load every registered model back). Without the expected module layout, nothing
    is changed."""
    try:
        from skops.io import _persist
    except ImportError:  # pragma: no cover - another skops layout: save as it does
        yield
        return
    original = getattr(_persist, "json", None)
    if original is not json:
        yield
        return
    _persist.json = _CompactJson()
    try:
        yield
    finally:
        _persist.json = original


def _dump_and_audit(original: Any) -> Any:
    """MLflow's skops writer (``mlflow.sklearn._save_model``) with skops' own audit of the
    written file in place of loading it back (see :func:`_lean_mlflow_save`); any other
    serialization format goes to ``original``."""

    def save(
        sk_model: Any, output_path: Any, serialization_format: Any, skops_trusted_types: Any
    ) -> None:
        if serialization_format != "skops":
            original(sk_model, output_path, serialization_format, skops_trusted_types)
            return
        import skops.io as sio
        from mlflow.exceptions import MlflowException

        try:
            sio.dump(sk_model, output_path)
            untrusted = set(sio.get_untrusted_types(file=output_path))
        except Exception as exc:
            Path(output_path).unlink(missing_ok=True)
            raise MlflowException(
                f"the model could not be saved in the skops format: {type(exc).__name__}: {exc}"
            ) from exc
        untrusted -= set(skops_trusted_types or ())
        if untrusted:
            Path(output_path).unlink(missing_ok=True)
            raise MlflowException(
                "The sklearn model saved in the skops format references untrusted types "
                "(it could not be loaded back): " + ", ".join(sorted(untrusted))
            )

    return save


@contextmanager
def _lean_mlflow_save() -> Iterator[None]:
    """Within: MLflow's scikit-learn ``save_model`` in the skops format does what it checks
    more cheaply, for the same outcome. Two of its steps change:

    - It loads the written file back with the trusted types, to fail at save time when a type
      is not trusted. skops' load decides that by auditing the file (``get_untrusted_types``
      lists its types outside skops' defaults) and then rebuilds every object. The audit is
      kept, with the same outcome (any type not trusted: the file is removed and
      ``MlflowException`` raised), and the rebuild is skipped: for a 200-tree forest it cost
      0.13-0.2 CPU-s per save against 0.07 for the audit. The tests load registered models
      back.
    - It checks that the running environment satisfies the model's requirements, which maps
      every installed distribution to its modules (0.4 CPU-s per process). Ours
      (:data:`PIP_REQUIREMENTS`, unpinned, plus the running MLflow's own version) are
      packages this process has imported, so the check cannot find a mismatch; it is skipped.

    Without the expected private names in MLflow, nothing is changed."""
    try:
        import mlflow.sklearn as ms
        import mlflow.utils.environment as env
    except ImportError:  # pragma: no cover - MLflow is a dependency
        yield
        return
    original = getattr(ms, "_save_model", None)
    warn = getattr(env, "warn_dependency_requirement_mismatches", None)
    if (
        original is None
        or warn is None
        or getattr(original, "__module__", None) != "mlflow.sklearn"
        or getattr(warn, "__module__", None) != "mlflow.utils.requirements_utils"
    ):  # another MLflow layout, or already within (nested): as it is
        yield
        return
    ms._save_model = _dump_and_audit(original)
    env.warn_dependency_requirement_mismatches = _unless_ours(warn)
    try:
        yield
    finally:
        ms._save_model = original
        env.warn_dependency_requirement_mismatches = warn


def _unless_ours(check: Any) -> Any:
    """MLflow's environment ``check``, skipped for the requirements our saves write (those of
    :data:`PIP_REQUIREMENTS` and the running MLflow's pinned version), see
    :func:`_lean_mlflow_save`; any other list is checked."""
    import mlflow

    ours = {*PIP_REQUIREMENTS, f"mlflow=={mlflow.__version__}"}

    def maybe(requirements: list[str]) -> None:
        if not set(requirements) <= ours:
            check(requirements)

    return maybe


def _write_run_files(
    folder: Path, config: dict[str, Any] | None, results: dict[str, Any] | None
) -> None:
    """The files a registration's MLflow run holds once: the experiment config and results."""
    if config is not None:
        (folder / "experiment_config.json").write_text(json.dumps(config, indent=2, default=str))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results, indent=2, default=str))


def _save_job(job: _SaveJob) -> None:
    """Write one model folder: the MLflow scikit-learn model in skops format (its types
    audited, :func:`_lean_mlflow_save`), its rules, background sample and ``info.json``."""
    job.folder.mkdir(parents=True)
    _save_mlflow_model(job)
    _save_extras(job)


def _save_mlflow_model(job: _SaveJob) -> None:
    """The MLflow scikit-learn model of a job, in ``folder/model``."""
    import mlflow.sklearn

    e = job.entry
    with _compact_skops_schema(), _lean_mlflow_save():
        mlflow.sklearn.save_model(
            e.model,
            job.folder / "model",
            serialization_format="skops",
            skops_trusted_types=job.trusted,
            signature=job.signature,
            pip_requirements=PIP_REQUIREMENTS,
        )


def _save_extras(job: _SaveJob) -> None:
    """The files beside a job's model: its rules, background sample and ``info.json``."""
    e = job.entry
    if e.rules:
        import joblib

        joblib.dump(e.rules, job.folder / "rules.joblib")
    if e.background is not None:
        e.background.to_parquet(job.folder / "background.parquet", index=False)
    info = {"params": e.params, "metrics": e.metrics}
    (job.folder / "info.json").write_text(json.dumps(info, indent=2, default=str))


_JOBS: list[_SaveJob] = []


def _save_job_at(i: int) -> None:
    _save_job(_JOBS[i])


def _save_all(jobs: list[_SaveJob], threads: int | None = None) -> None:
    """Write every model folder; with ``EWS_THREADS`` > 1 and several models, in that many
    forked worker processes (skops serialization is Python-bound, so threads would not help;
    a fork shares the fitted models without copying them). Everything a worker needs that
    could run threaded code (predictions for the signature) was done before the fork."""
    import multiprocessing

    from ews.settings import get_settings

    _wait_for_warm_up()  # no thread of ours may be running at a fork
    workers = min(threads or get_settings().threads, len(jobs))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for job in jobs:
            _save_job(job)
        return
    from ews.processes import frozen_heap

    global _JOBS
    _JOBS = jobs
    # Objects alive at the fork are moved out of the collector's reach until the workers are
    # done: a worker's collections would otherwise visit (and so copy, page by page) the
    # parent's whole heap; measured on triage-peer's 16 models, the workers' CPU time went
    # from 7.1-7.4 s to 5.1-5.4 s.
    try:
        with frozen_heap(), multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(_save_job_at, range(len(jobs)), chunksize=1)
    finally:
        _JOBS = []


#: the tag naming, on a model version, the registration that created it (the run's identity,
#: the entry's index and a hash of what it registers) and, on the MLflow run, the registration
REGISTRATION_TAG = "ews.registration"


def registration_key(token: str, i: int, entry: ModelEntry) -> str:
    """The key of entry ``i`` of the registration ``token``: the same for the same entry
    registered again by a resumed run, another for any other model, name, tags or alias."""
    import hashlib

    tags = sorted((str(k), "" if v is None else str(v)) for k, v in entry.tags.items())
    body = json.dumps([entry.name, tags, entry.alias or ""])
    return f"{token}/{i}/{hashlib.sha256(body.encode()).hexdigest()[:10]}"


def register_models(
    entries: list[ModelEntry],
    *,
    config: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    uri: str | None = None,
    run_name: str | None = None,
    token: str | None = None,
    journal: Any = None,
) -> list[dict[str, str]]:
    """Register many fitted models from ONE MLflow run, in one artifact upload.

    Each model is saved (MLflow's scikit-learn flavour, skops format, explicit requirements)
    under ``models/<i>/model`` of the run with its ``rules.joblib``, ``background.parquet``
    and ``info.json`` (params and test metrics) beside it, then registered as a new version
    of ``entry.name`` with its trace tags (plus ``ews.run_id``, ``ews.artifacts`` and
    ``ews.registration``, its :func:`registration_key`); once every version is there, each
    ``entry.alias`` is pointed at its entry's version. The run holds the experiment config
    and results once. Returns, per entry, ``{name, version, run_id}`` (and ``kept: "true"``
    for a version an earlier attempt had registered, see below). Much faster than one run
    per model: the cost per model is its serialization and a few registry rows.

    ``token`` names the registration (a run's identity, :attr:`models.checkpoint.Checkpoint.
    identity`; without it, a new one): registering again under the same token, as a run
    stopped while registering does when resumed, registers only what is not there yet. The
    MLflow run an earlier attempt finished (its files all uploaded) is reused, the versions
    it holds under this token are kept, not registered again; a run it left unfinished has
    no version (versions are created after the upload) and is deleted. So an attempt stopped
    at any point, then resumed, leaves the registry an uninterrupted one leaves. ``journal``
    (a :class:`models.checkpoint.Checkpoint`) gets a unit ``registered`` per version created,
    as it is created (for the resumed run to say what was done: the registry is what
    decides, as a stop can fall between a version's creation and its unit).
    """
    if not entries:
        return []
    global _REGISTRAR
    registrar, _REGISTRAR = _REGISTRAR, None
    ahead = dict(_AHEAD)
    _AHEAD.clear()
    if registrar is not None:
        import dataclasses

        from ews.settings import get_settings

        # a model already sent ahead goes by its id there (the registering process has it)
        ids: list[int | None] = []
        sent = []
        for e in entries:
            hit = ahead.get(id(e.model))
            given = hit[1] if hit is not None and hit[0] is e.model else None
            if given is not None and given in ids:  # the same model twice: sent again
                given = None
            ids.append(given)
            sent.append(e if given is None else dataclasses.replace(e, model=None))
        answer = registrar.register(
            {
                "entries": sent,
                "ahead_ids": ids,
                "config": config,
                "results": results,
                "uri": _resolved_uri(uri),
                "run_name": run_name,
                "threads": get_settings().threads,
                "token": token,
                "journal": journal,
            }
        )
        if answer is not None:
            return answer
    return _register_models_here(
        entries,
        config=config,
        results=results,
        uri=uri,
        run_name=run_name,
        token=token,
        journal=journal,
    )


def _finished_run(c: MlflowClient, experiment_id: str, run_tag: str) -> Any:
    """The MLflow run an earlier attempt of registration ``run_tag`` finished (its files all
    uploaded), or None; the runs such an attempt left unfinished (stopped during the upload)
    are deleted: no version was created from them."""
    from mlflow.entities import RunStatus

    runs = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{REGISTRATION_TAG}` = '{run_tag}'",
        order_by=["attributes.start_time ASC"],
    )
    done = RunStatus.to_string(RunStatus.FINISHED)
    kept = next((r for r in runs if r.info.status == done), None)
    for r in runs:
        if kept is None or r.info.run_id != kept.info.run_id:
            c.delete_run(r.info.run_id)
    return kept


def _versions_of_run(c: MlflowClient, run_id: str) -> dict[str, Any]:
    """The model versions registered from ``run_id``, by their registration key."""
    found: dict[str, Any] = {}
    page = None
    while True:
        batch = c.search_model_versions(f"run_id = '{run_id}'", page_token=page)
        for mv in batch:
            key = mv.tags.get(REGISTRATION_TAG)
            if key:
                found.setdefault(key, mv)
        page = batch.token
        if not page:
            return found


def _check_asker(asker: int | None) -> None:
    """In the registering process: stop if the job that asked has ended (killed, say), so
    that its resumed run never registers beside this process."""
    if asker is not None and os.getppid() != asker:
        raise RegistryError("the job that asked to register has ended: registering stopped")


def _register_models_here(
    entries: list[ModelEntry],
    *,
    config: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    uri: str | None = None,
    run_name: str | None = None,
    threads: int | None = None,
    token: str | None = None,
    journal: Any = None,
    asker: int | None = None,
    ahead_ids: list[int | None] | None = None,
    ahead: _Ahead | None = None,
) -> list[dict[str, str]]:
    """:func:`register_models` in this process (``threads``: the save workers, default
    ``EWS_THREADS``; ``asker``: in the registering process, the job's process id). In the
    registering process, ``ahead_ids`` name, per entry, a model sent ahead (its entry's
    model is then None): ``ahead`` has the model, and its folder when already written."""
    import dataclasses
    import hashlib
    import uuid

    import mlflow

    if not entries:
        return []
    given = ahead_ids or [None] * len(entries)
    entries = list(entries)
    for i, (e, n) in enumerate(zip(entries, given, strict=True)):
        if n is not None:
            if ahead is None or n not in ahead.models:
                raise RegistryError(
                    f"model {i} ({e.name}) was sent ahead but never reached the registering "
                    "process; nothing of this run is registered"
                )
            entries[i] = dataclasses.replace(e, model=ahead.models[n])
    resuming = token is not None
    token = token or uuid.uuid4().hex[:16]
    keys = [registration_key(token, i, e) for i, e in enumerate(entries)]
    run_tag = f"{token}/{hashlib.sha256(chr(10).join(keys).encode()).hexdigest()[:10]}"
    experiment_id = set_experiment(uri)
    c = client(uri)
    earlier = _finished_run(c, experiment_id, run_tag) if resuming else None
    if earlier is not None:  # its files are there: nothing to save or upload again
        run_id, artifact_uri = earlier.info.run_id, earlier.info.artifact_uri
        existing = _versions_of_run(c, run_id)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            _write_run_files(root, config, results)
            signatures: dict[tuple[Any, ...], Any] = {}
            jobs, written = [], []
            for i, (e, n) in enumerate(zip(entries, given, strict=True)):
                job = _SaveJob(
                    e, root / "models" / str(i), _signature(e, signatures), _trusted_types(e.model)
                )
                folder = (
                    ahead.take(n, job.signature) if ahead is not None and n is not None else None
                )
                if folder is None:
                    jobs.append(job)
                else:  # saved ahead: moved into place, only the small files beside it written
                    job.folder.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(folder, job.folder)
                    written.append(job)
            for job in written:
                _save_extras(job)
            _save_all(jobs, threads)  # workers are forked before the MLflow run starts
            _check_asker(asker)
            with mlflow.start_run(run_name=run_name, tags={REGISTRATION_TAG: run_tag}) as run:
                run_id = run.info.run_id
                mlflow.log_artifacts(str(root))
            artifact_uri = run.info.artifact_uri
        existing = {}
    out: list[dict[str, str]] = []
    known = {rm.name for rm in c.search_registered_models()}
    for i, (e, key) in enumerate(zip(entries, keys, strict=True)):
        if key in existing:  # registered by an attempt that was stopped
            version = str(existing[key].version)
            out.append({"name": e.name, "version": version, "run_id": run_id, "kept": "true"})
            continue
        _check_asker(asker)
        if e.name not in known:
            c.create_registered_model(e.name)
            known.add(e.name)
        tags = {k: "" if v is None else str(v) for k, v in e.tags.items()}
        tags.update({"ews.run_id": run_id, "ews.artifacts": f"models/{i}", REGISTRATION_TAG: key})
        mv = c.create_model_version(
            e.name, f"{artifact_uri}/models/{i}/model", run_id=run_id, tags=tags
        )
        version = str(mv.version)
        if journal is not None:
            journal.save(
                "registered", key, data={"name": e.name, "version": version, "of": len(entries)}
            )
        out.append({"name": e.name, "version": version, "run_id": run_id})
    for e, reg in zip(entries, out, strict=True):  # the aliases once every version is there
        if e.alias:
            c.set_registered_model_alias(e.name, e.alias, reg["version"])
    return out


def promote(name: str, version: str | int, alias: str = CHAMPION, uri: str | None = None) -> None:
    """Point ``alias`` of model ``name`` at ``version`` (moving it from any other version)."""
    from mlflow.exceptions import MlflowException

    c = client(uri)
    try:
        c.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"no version {version} of registered model {name!r}") from exc
    c.set_registered_model_alias(name, alias, str(version))


def gate_of(name: str, version: str | int, uri: str | None = None) -> dict[str, Any] | None:
    """The promotion gate stored on a version (:mod:`models.gates`): ``passed``, ``reasons``,
    ``rules``, and the override if it was promoted by force; None when it records none (a
    version registered before gates, or never gated)."""
    tags = version_tags(name, version, uri)
    if tags is None:
        raise RegistryError(f"no version {version} of registered model {name!r}")
    if "ews.gate" not in tags:
        return None
    try:
        detail = json.loads(tags.get("ews.gate_detail") or "{}")
    except ValueError:
        detail = {}
    out = {**detail, "passed": tags["ews.gate"] == "passed"}
    if tags.get("ews.override_reason"):
        out["override"] = {
            "reason": tags["ews.override_reason"],
            "by": tags.get("ews.override_by"),
            "at": tags.get("ews.override_at"),
        }
    return out


def promote_by_force(
    name: str,
    version: str | int,
    reason: str,
    alias: str = CHAMPION,
    uri: str | None = None,
    db: Any = None,
) -> dict[str, Any]:
    """Point ``alias`` at a version that did not pass its promotion gate, on a person's
    word: an audit entry (actor, the gate's reasons, ``reason``) is written in the same
    transaction as the alias move, which rolls the entry back if the move fails; the
    override is also tagged on the version (``ews.override_*``), where the model card and
    the audit report read it. Returns the audit detail."""
    import datetime as dt

    from ews.audit import append
    from ews.db import current_actor, ensure_agency, open_app_database

    reason = reason.strip()
    if not reason:
        raise RegistryError("--force needs --reason TEXT: why this model is deployed anyway")
    tags = version_tags(name, version, uri)
    if tags is None:
        raise RegistryError(f"no version {version} of registered model {name!r}")
    gate = gate_of(name, version, uri)
    actor = f"cli:{current_actor()}"
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    detail = {
        "model": name,
        "version": str(version),
        "alias": alias,
        "reason": reason,
        "gate": None if gate is None else ("passed" if gate.get("passed") else "failed"),
        "gate_reasons": [] if gate is None else gate.get("reasons", []),
    }
    agency = tags.get("ews.agency") or None
    database = open_app_database() if db is None else db
    try:
        with database.write() as s:
            if agency:
                ensure_agency(s, agency)
            append(
                s,
                actor,
                "cli",
                "promote --force",
                f"model {name} v{version}",
                agency,
                detail=detail,
            )
            c = client(uri)
            for key, value in (
                ("ews.override_reason", reason),
                ("ews.override_by", actor),
                ("ews.override_at", at),
            ):
                c.set_model_version_tag(name, str(version), key, value)
            c.set_registered_model_alias(name, alias, str(version))
    finally:
        if db is None:
            database.dispose()
    return {**detail, "by": actor, "at": at}


def _store_missing(uri: str | None) -> bool:
    """True when the tracking store is a SQLite file that does not exist yet: nothing is
    registered, and answering so needs neither MLflow (slow to import) nor a new database
    (slow to create)."""
    uri = uri or tracking_uri()
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()


def _sqlite_path(uri: str | None) -> Path | None:
    uri = uri or tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _read_sqlite_store(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[Any] | None:
    """Rows of a read-only query on a SQLite tracking store, or None if the store's schema
    is not the one expected (then the caller asks MLflow)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def _list_models_sqlite(path: Path) -> list[dict[str, Any]] | None:
    """:func:`list_models` read straight from a SQLite tracking store: MLflow takes several
    seconds to import, this a few milliseconds. None when the schema is not as expected."""
    versions = _read_sqlite_store(
        path,
        "SELECT name, version, creation_time, run_id FROM model_versions "
        "WHERE current_stage != 'Deleted_Internal'",  # MLflow's mark of a deleted version
    )
    tags = _read_sqlite_store(path, "SELECT name, version, key, value FROM model_version_tags")
    aliases = _read_sqlite_store(path, "SELECT name, version, alias FROM registered_model_aliases")
    if versions is None or tags is None or aliases is None:
        return None
    tag_map: dict[tuple[str, str], dict[str, str]] = {}
    for name, version, key, value in tags:
        tag_map.setdefault((name, str(version)), {})[key] = value
    alias_map: dict[tuple[str, str], list[str]] = {}
    for name, version, alias in aliases:
        alias_map.setdefault((name, str(version)), []).append(alias)
    rows = []
    for name, version, created, run_id in versions:
        key = (name, str(version))
        rows.append(
            {
                "name": name,
                "version": str(version),
                "aliases": sorted(alias_map.get(key, [])),
                "created": created,
                "run_id": run_id,
                **{k.removeprefix("ews."): tag_map.get(key, {}).get(k, "") for k in TRACE_TAGS},
            }
        )
    return sorted(rows, key=lambda r: (r["name"], int(r["version"])))


def list_models(uri: str | None = None, fast: bool = True) -> list[dict[str, Any]]:
    """Every registered model version: name, version, aliases, created, and the trace tags.

    A SQLite store is read directly (``fast``); any other store, or a SQLite store whose
    schema is not the expected one, through the MLflow client."""
    if _store_missing(uri):
        return []
    path = _sqlite_path(uri)
    if fast and path is not None:
        found = _list_models_sqlite(path)
        if found is not None:
            return found
    c = client(uri)
    rows: list[dict[str, Any]] = []
    for rm in c.search_registered_models():
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        for mv in c.search_model_versions(f"name = '{rm.name}'"):
            rows.append(
                {
                    "name": rm.name,
                    "version": str(mv.version),
                    "aliases": sorted(aliases_by_version.get(str(mv.version), [])),
                    "created": mv.creation_timestamp,
                    "run_id": mv.run_id,
                    **{k.removeprefix("ews."): mv.tags.get(k, "") for k in TRACE_TAGS},
                }
            )
    return sorted(rows, key=lambda r: (r["name"], int(r["version"])))


def version_tags(name: str, version: str | int, uri: str | None = None) -> dict[str, str] | None:
    """Every tag of a registered model version (``ews.label_known_by`` included), or None when
    the store holds no such version. A SQLite store is read directly (fast)."""
    if _store_missing(uri):
        return None
    path = _sqlite_path(uri)
    if path is not None:
        rows = _read_sqlite_store(
            path,
            "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
            (name, int(version)),
        )
        known = _read_sqlite_store(
            path,
            "SELECT 1 FROM model_versions WHERE name = ? AND version = ?",
            (name, int(version)),
        )
        if rows is not None and known is not None:
            return {str(k): str(v) for k, v in rows} if known else None
    from mlflow.exceptions import MlflowException

    try:
        mv = client(uri).get_model_version(name, str(version))
    except MlflowException:
        return None
    return dict(mv.tags)


def resolve(ref: str, agency: str | None = None, uri: str | None = None) -> tuple[str, str]:
    """Resolve a model reference to ``(name, version)``.

    ``ref`` is ``NAME`` (its champion), ``NAME@ALIAS``, ``NAME/VERSION``, or ``champion`` /
    ``challenger`` alone: the one registered model with that alias (for ``agency`` if given).
    """
    from mlflow.exceptions import MlflowException

    c = client(uri)
    name, alias, version = ref, CHAMPION, None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
    if name in (CHAMPION, CHALLENGER):
        alias = name
        found = [
            r
            for r in list_models(uri)
            if alias in r["aliases"] and (agency is None or r["agency"] == agency)
        ]
        if not found:
            where = f" for agency {agency!r}" if agency else ""
            held = [
                r
                for r in list_models(uri)
                if alias == CHAMPION and (agency is None or r["agency"] == agency)
            ]
            if held:
                newest = max(held, key=lambda r: (r["name"], int(r["version"])))
                raise RegistryError(
                    f"no model has the alias {alias!r}{where}: {len(held)} version(s) are "
                    "registered, but none passed the promotion gate (its held-out results "
                    "were not better than chance, or than the rules; `ews train` said why). "
                    "Improve the data or the experiment and run `ews train` again, or deploy "
                    "one anyway, on your word and in the audit log: `ews models promote "
                    f"{newest['name']} {newest['version']} --force --reason TEXT`"
                )
            raise RegistryError(f"no model has the alias {alias!r}{where}: run `ews train` first")
        if len(found) > 1:
            raise AmbiguousModel(alias, [(r["name"], str(r.get("label") or "")) for r in found])
        return found[0]["name"], found[0]["version"]
    try:
        if version is not None:
            mv = c.get_model_version(name, version)
        else:
            mv = c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        hint = (
            ": no version passed the promotion gate (see `ews models list`); deploy one "
            f"anyway with `ews models promote {name} VERSION --force --reason TEXT`"
            if version is None and alias == CHAMPION
            else ""
        )
        raise RegistryError(f"registered model {name!r} has no {what}{hint}") from exc
    return name, str(mv.version)


def load_model(
    ref: str, agency: str | None = None, uri: str | None = None, artifacts: bool = True
) -> RegisteredModel:
    """Load a registered model version (see :func:`resolve` for ``ref``) as a scikit-learn
    estimator, with its trace tags and, if ``artifacts``, its config, rules and background."""
    import mlflow.artifacts
    import mlflow.sklearn

    name, version = resolve(ref, agency=agency, uri=uri)
    c = client(uri)
    mv = c.get_model_version(name, version)
    model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    rm = c.get_registered_model(name)
    aliases = sorted(a for a, v in (rm.aliases or {}).items() if str(v) == version)
    loaded = RegisteredModel(
        name=name,
        version=version,
        model=model,
        tags=dict(mv.tags),
        run_id=mv.run_id,
        aliases=aliases,
    )
    if artifacts and mv.run_id:
        with tempfile.TemporaryDirectory() as tmp:
            # a model registered by register_models keeps its files under ews.artifacts
            sub = mv.tags.get("ews.artifacts")
            if sub:
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=mv.run_id, artifact_path=sub, dst_path=tmp
                    )
                )
                path = mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id, artifact_path="experiment_config.json", dst_path=tmp
                )
                loaded.config = json.loads(Path(path).read_text())
            else:
                local = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, dst_path=tmp))
            if (local / "experiment_config.json").is_file():
                loaded.config = json.loads((local / "experiment_config.json").read_text())
            if (local / "rules.joblib").is_file():
                import joblib

                loaded.rules = joblib.load(local / "rules.joblib")
            if (local / "background.parquet").is_file():
                import pandas as pd

                loaded.background = pd.read_parquet(local / "background.parquet")
    return loaded


def load_champion(name: str, uri: str | None = None) -> RegisteredModel:
    """The version of ``name`` that carries the ``champion`` alias."""
    return load_model(f"{name}@{CHAMPION}", uri=uri)


def run_results(run_id: str, uri: str | None = None) -> dict[str, Any]:
    """The ``results.json`` an experiment logged in run ``run_id``."""
    db = _sqlite_path(uri)
    if _store_missing(uri) or (
        db is not None
        and _read_sqlite_store(db, "SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)) == []
    ):
        raise RegistryError(f"no run {run_id!r} is tracked in {uri or tracking_uri()}")
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    configure(uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="results.json", dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise RegistryError(f"run {run_id!r} has no results.json") from exc
        result: dict[str, Any] = json.loads(Path(path).read_text())
        return result
