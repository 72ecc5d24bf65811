"""The experiment: train the model grid and compare it with the rules on honest temporal splits.

One YAML file (validated by pydantic before any data is read, then hashed) says everything:
which data, which features, which cohort, which labels, how to split time, which models to
try and which rules to beat. :func:`run_experiment` chains the named steps of
:mod:`models.steps`:

1. ``check_config``: the config against the feature spec and the data (rules' columns,
   labels, cohort), refused with every problem named before any work;
2. ``plan_splits``: the splits of :class:`models.splitter.TemporalSplitter` per label (no
   training label window reaches past its test date; with label maturity, the default,
   training labels count only findings known at the test date), their inner validation
   splits (``splitter.inner_splits``; 0 = no selection) and the deployment split;
3. ``build_features`` ONCE for every as-of date any split needs, with
   :func:`features.build.build_features`, the same code path scoring uses;
4. ``build_labels``: one query per label, for all its knowledge cutoffs;
5. for each label and split: ``select`` a candidate on the inner validation splits inside the
   training years (each fitted and evaluated like the split itself; mean metric minus a
   variance penalty), ``fit_candidates`` on the training dates, ``evaluate`` them on the test
   date (every prediction kept), ``compare_with_rules`` at the rules' volume; each label's
   fits run first as one batch on every core, and a training set shared by several splits is
   fitted once (:mod:`models.fitting`);
6. with ``refit_champion`` (default) when registering, the same choice on a deployment split
   as of the day after the data end, fitted on the newest training dates whose label windows
   have ended; otherwise the candidate chosen at the latest split;
7. ``register`` each label's champion (alias ``champion``), or with ``registry: all`` every
   fitted model, in the MLflow registry with everything that traces it.

The result holds one record per (label, split, method) with the keys ``test_date, label,
method, kind (rule|model), selected, flagged, tp, fp, precision, recall, auc, ap, brier,
metrics, vs_rules``; and ``selection`` says, for every choice, which dates it was made on.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

# the config types and helpers live in models.config (models.steps imports them from there);
# they are re-exported here, where callers have always found them
from models.config import (
    CONTEXT_COLUMNS,
    DEFAULT_CONFIG,
    ID_COLUMNS,
    RULE_NAMES,
    ExperimentConfig,
    ExperimentError,
    SplitterConfig,
    _json_safe,
    auto_test_dates,
    cohort_spec,
    data_end,
    label_spec,
    load_config,
    load_feature_spec,
    make_splitter,
    numeric_feature_columns,
    resolve_source,
)

if TYPE_CHECKING:
    import pandas as pd

    from ews.store import Snapshot

__all__ = [
    "CONTEXT_COLUMNS",
    "DEFAULT_CONFIG",
    "ID_COLUMNS",
    "RULE_NAMES",
    "Champion",
    "Clock",
    "ExperimentConfig",
    "ExperimentError",
    "ExperimentResult",
    "SplitterConfig",
    "auto_test_dates",
    "cohort_spec",
    "data_end",
    "label_spec",
    "load_config",
    "load_feature_spec",
    "make_splitter",
    "model_tags",
    "numeric_feature_columns",
    "progress_printer",
    "register",
    "register_champions",
    "resolve_source",
    "run_experiment",
]


@dataclass
class Champion:
    """The model chosen for one label, fitted, with what registering it needs."""

    label: str
    candidate: dict[str, Any]
    model: Any
    feature_columns: list[str]
    train_dates: list[date]
    label_known_by: date | None
    rules: dict[str, Any]
    background: pd.DataFrame
    test_metrics: dict[str, Any]
    as_of: date | None = None  # the split's test date (the deployment date for a refit)
    registered: dict[str, str] | None = None


@dataclass
class ExperimentResult:
    """What an experiment found (``to_dict`` is the JSON the report reads)."""

    config: dict[str, Any]
    config_hash: str
    agency: str
    snapshot_id: str
    spec_hash: str
    feature_columns: list[str]
    splits: list[dict[str, Any]]
    records: list[dict[str, Any]]
    selection: list[dict[str, Any]]
    champions: dict[str, Champion] = field(default_factory=dict)
    deployment: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    notes: list[str] = field(default_factory=list)
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds per step
    predictions: pd.DataFrame | None = None  # every test row's score per model
    fitted: list[Champion] = field(default_factory=list)  # the others, with register: all
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> promotion gate
    # a resumed run: where its checkpoint was and how many units it read back (not redone)
    resumed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "config_hash": self.config_hash,
            "agency": self.agency,
            "snapshot_id": self.snapshot_id,
            "spec_hash": self.spec_hash,
            "feature_columns": self.feature_columns,
            "splits": self.splits,
            "records": self.records,
            "selection": self.selection,
            "champions": {
                label: {
                    "candidate": c.candidate,
                    "train_dates": [d.isoformat() for d in c.train_dates],
                    "label_known_by": c.label_known_by.isoformat() if c.label_known_by else None,
                    "registered": c.registered,
                }
                for label, c in self.champions.items()
            },
            "registered": [
                {"label": c.label, "candidate": c.candidate.get("name"), **c.registered}
                for c in [*self.champions.values(), *self.fitted]
                if c.registered
            ],
            "deployment": self.deployment,
            "gates": self.gates,
            "timings": self.timings,
            "cpu_timings": self.cpu_timings,
            "notes": self.notes,
            # only a resumed run says so (its timings cover the work it did itself)
            **({"resumed": self.resumed} if self.resumed else {}),
        }

    def save(self, path: Path) -> Path:
        """Write :meth:`to_dict` as JSON (NaN becomes null)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_json_safe(self.to_dict()), indent=2))
        return path

    def save_predictions(self, path: Path) -> Path | None:
        """Write every test prediction (officer, as-of date, label, method, score, outcome)
        as Parquet; None when there is none."""
        if self.predictions is None or self.predictions.empty:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.predictions.to_parquet(path, index=False)
        return path

    def table(self) -> pd.DataFrame:
        """The records as a frame: one row per label, test date and method."""
        import pandas as pd

        cols = ["label", "test_date", "method", "kind", "selected", "flagged", "tp", "fp"]
        cols += ["precision", "recall", "auc", "ap", "brier"]
        df = pd.DataFrame(self.records)
        return df[[c for c in cols if c in df.columns]] if not df.empty else df


# ---------------------------------------------------------------------------------------------
# the experiment: a pipeline of the named steps of models.steps


class Clock:
    """Times the named steps of a run (seconds per step, summed) and reports progress lines
    (``say``) with the time elapsed since the start.

    While a long step runs, :meth:`heartbeat` keeps the log alive: when no line has been said
    for ``interval`` seconds, a line says what is still being done, for how long, and (from
    ``estimate``) how long the rest should take, so that a fit of many minutes never looks
    like a hang."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.say = say or (lambda _line: None)
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (all its threads)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.last_line = self.started  # when the last progress line was said
        self.activities: list[tuple[str, float]] = []  # what is being done, since when
        self.estimate: Callable[[], str] = lambda: ""  # "; about N s left", or ""
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def note(self, message: str) -> None:
        with self._lock:
            self.last_line = time.perf_counter()
            self.say(f"[{self.elapsed():6.1f} s] {message}")

    @contextmanager
    def doing(self, activity: str) -> Iterator[None]:
        """What the heartbeat names while the block runs (``fitting 3 candidates on ...``)."""
        self.activities.append((activity, time.perf_counter()))
        try:
            yield
        finally:
            self.activities.pop()

    @contextmanager
    def step(self, name: str, message: str | None = None) -> Iterator[None]:
        if message is not None:
            self.note(message)
        t0, c0 = time.perf_counter(), time.process_time()
        try:  # the heartbeat names a step by its message (without one: the enclosing work)
            if message is not None:
                with self.doing(message):
                    yield
            else:
                yield
        finally:
            key = f"{name.replace(' ', '_')}_s"
            self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - t0, 3)
            self.cpu[key] = round(self.cpu.get(key, 0.0) + time.process_time() - c0, 3)

    def beat(self, interval: float) -> bool:
        """Say a heartbeat line if nothing was said for ``interval`` seconds while something
        is being done; whether one was said."""
        now = time.perf_counter()
        if not self.activities or now - self.last_line < interval:
            return False
        activity, since = self.activities[-1]
        try:
            left = self.estimate()
        except Exception:  # noqa: BLE001 (a racing estimate must never stop the heartbeat)
            left = ""
        self.note(f"still {activity}, {now - since:.0f} s so far{left}")
        return True

    @contextmanager
    def heartbeat(self, interval: float | None) -> Iterator[None]:
        """A background thread that calls :meth:`beat` while the block runs (``interval``
        None or 0: none)."""
        if not interval or interval <= 0:
            yield
            return
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(min(1.0, interval / 4)):
                self.beat(interval)

        thread = threading.Thread(target=run, name="ews-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)


def progress_printer() -> Callable[[str], None]:
    """Progress lines to standard error, flushed at once (so a log shows them as they come)."""
    import sys

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return say


#: at most this many seconds pass without a progress line while a run works (the heartbeat)
HEARTBEAT_S = 30.0


def run_experiment(
    config: ExperimentConfig | str | Path,
    source: Snapshot | Path | str | None = None,
    tracking: bool = True,
    progress: bool | Callable[[str], None] = True,
    features: pd.DataFrame | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    heartbeat: float | None = HEARTBEAT_S,
) -> ExperimentResult:
    """Run an experiment (see the module docstring) and, if ``tracking``, register its models
    in MLflow. ``progress`` prints a line per step and split to standard error (or passes
    each line to a function), and, while a step works, a heartbeat line whenever
    ``heartbeat`` seconds passed without one. ``features`` may pass a prebuilt feature frame
    covering every needed as-of date; otherwise they are built once here.

    ``checkpoint``: a folder where each finished unit of work (a choice, an outer split, the
    deployment refit) is written as it completes (:mod:`models.checkpoint`); with ``resume``
    the units already there are reused, their work skipped, and the result is that of an
    uninterrupted run. An existing checkpoint without ``resume``, or one of another config,
    data or code, raises :class:`models.checkpoint.CheckpointError` before any work."""
    from ews.processes import collection_paused, frozen_heap
    from models import steps
    from models.checkpoint import Checkpoint, fingerprint, frame_hash
    from models.gates import promotion_gate
    from models.prebuild import Prebuild

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    say = progress if callable(progress) else progress_printer() if progress else None
    clock = Clock(say)
    source, agency, snapshot_id = resolve_source(config, source)
    deploy = tracking and config.refit_champion
    # the features and labels are built in a helper process while the config is checked
    # (models.prebuild), and used only if built from exactly what the check resolves
    with Prebuild.started(config, source, deploy, enabled=features is None) as early:
        with clock.step("check config", "checking the config against the feature spec and data"):
            try:  # it imports scikit-learn, whose objects live as long as the run: not
                # collected meanwhile (0.16 CPU-s of full collections on triage-peer), then
                # frozen below
                with collection_paused():
                    checked = steps.check_config(config, source)
            except steps.ConfigProblems as exc:
                raise ExperimentError(f"refused before any work:\n{exc}") from exc
        # What is alive now (the libraries the config check imported, the config, the data's
        # metadata) lives as long as the run: frozen out of the collector's reach until it ends
        # (on triage-peer, two full collections walked that whole heap while the features and
        # labels were built, 0.2 CPU-s), and the registering process forked next inherits it so.
        with frozen_heap():
            ckpt = None
            if checkpoint is not None:  # refused here, before any work, if it is not this run's
                fp = fingerprint(
                    config.hash,
                    snapshot_id,
                    str(checked.spec.hash),
                    deploy,
                    "built" if features is None else frame_hash(features),
                )
                ckpt = Checkpoint.open(Path(checkpoint), fp, resume)
                if resume and not ckpt.found:
                    clock.note(
                        f"resuming: no checkpoint in {checkpoint} yet, starting from the start"
                    )
            if tracking:  # MLflow imported, its store opened, in the registering process meanwhile
                from models import registry

                registry.warm_up()
            with clock.heartbeat(heartbeat if say is not None else None):
                with clock.step("plan splits"):
                    plan = steps.plan_splits(config, source, list(checked.labels), deploy=deploy)
                dates = plan.feature_dates()
                message = f"building features for {len(dates)} as-of dates"
                if early is not None:
                    message += " (begun in a helper process during the config check)"
                with clock.step("build features", message):
                    built = early.take(plan, checked) if early is not None else None
                    if built is None:
                        feats = steps.build_features(
                            source, plan, checked.spec, checked.cohort, features
                        )
                    else:
                        feats = built[0]
                if say is not None:  # features that carry no information on this agency's data
                    for line in feats.notes:
                        say(line)
                n_labels = len({label for label, _ in plan.label_requests()})
                message = f"building labels ({len(plan.label_requests())} knowledge cutoffs, "
                message += f"{n_labels} {'query' if n_labels == 1 else 'queries'})"
                with clock.step("build labels", message):
                    if built is None:
                        labels = steps.build_labels(source, plan, checked.labels, checked.cohort)
                    else:
                        labels = built[1]
                run = _Run(config, checked, plan, feats, labels, clock, ckpt)
                run.ahead = tracking and config.registry == "all"
                run.say_resumed()
                try:
                    run.start_fits()
                    for label in checked.labels:
                        # every choice first (each on its own validation splits, by the same
                        # rule), so that each test date evaluates both its own choice and the
                        # config deployed
                        run.choose(label)
                        for sp in plan.splits[label]:
                            run.outer_split(label, sp)
                    for label in checked.labels:
                        if plan.deploy.get(label) is not None:
                            run.refit(label)
                finally:
                    run.fitter.close()
                result = run.result(agency, snapshot_id)
                for label, champ in result.champions.items():
                    result.gates[label] = promotion_gate(
                        result.records, label, champ.candidate["name"]
                    )
                n = len(result.champions) + len(result.fitted)
                if tracking and n:
                    with clock.step("register", f"registering {n} models in MLflow"):
                        register(result, checkpoint=ckpt, say=clock.note)
                elif tracking:
                    result.notes.append(
                        "nothing registered: no model was chosen (use registry: all)"
                    )
            clock.note("done")
            result.timings = {**clock.timings, "total_s": round(clock.elapsed(), 3)}
            cpu_total = round(time.process_time() - clock.cpu_started, 3)
            result.cpu_timings = {**clock.cpu, "total_s": cpu_total}
            return result


class _Run:
    """The loop over splits: for each, select on its validation splits, fit the candidates,
    evaluate them, compare them with the rules; keeps what the result needs.

    Each unit of work (a choice per test date, the deployment's choice, an outer split, the
    deployment refit) is written to the checkpoint, when there is one, as it completes, and
    read back instead of done again when a resumed run finds it there. Progress counts work
    in fits weighted by their training rows, so the time left includes the deployment refit
    (one fit, weighed by its own training rows) and leaves out what a resumed run skips."""

    def __init__(
        self,
        config: ExperimentConfig,
        checked: Any,
        plan: Any,
        features: Any,
        labels: Any,
        clock: Clock,
        checkpoint: Any = None,
    ) -> None:
        self.config, self.checked, self.plan = config, checked, plan
        self.features, self.labels, self.clock = features, labels, clock
        self.checkpoint = checkpoint
        self.records: list[dict[str, Any]] = []
        self.selection: list[dict[str, Any]] = []
        self.champions: dict[str, Champion] = {}
        self.deployment: list[dict[str, Any]] = []
        self.fitted: list[Champion] = []
        self.notes: list[str] = []
        self.rule_notes: dict[str, list[str]] = {}  # a rule's warning -> the test dates
        # registry: all with tracking: every model an outer split keeps is registered, and
        # handed to the registering process (save_ahead) as soon as its training set is
        # fitted in this process, else when its split is done
        self.ahead = False
        self.parts: list[pd.DataFrame] = []
        self.choices: dict[str, dict[date, str | None]] = {}  # label -> test date -> choice
        # label -> the deployment's choice: the decision, the scores, the splits used
        self.deploy_choice: dict[str, tuple[Any, dict[str, Any], list[Any]]] = {}
        self.deployed: dict[str, str | None] = {}  # label -> the config registered
        from models.fitting import Fitter

        # each (training set, candidate) fitted once per run, EWS_THREADS at a time
        self.fitter = Fitter(
            features,
            labels,
            checked.candidates,
            uses=Fitter.plan_uses(plan),
            on_fit=self.tick,
            on_set=self._fitted_set,
            cache=_fit_cache_on(),
        )
        from models.fitting import train_key

        # the training sets whose models the outer splits register (registry: all)
        self.outer_keys = {
            train_key(label, sp) for label in plan.splits for sp in plan.splits[label]
        }
        self.n_splits = sum(len(v) for v in plan.splits.values())
        self.split_no = 0
        # the work of the plan, unit by unit: (fits, weight = fits x training rows)
        self.work = self._plan_work()
        self.total = sum(f for f, _ in self.work.values())
        self.total_weight = sum(w for _, w in self.work.values())
        self.done = 0  # fits done by this process
        self.done_weight = 0.0
        clock.estimate = self.remaining
        self.fits_started = clock.elapsed()

    def _fitted_set(self, key: Any, models: dict[str, Any], X: pd.DataFrame) -> None:
        """A training set is fitted: with ``ahead``, the models of an outer split's set (each
        of them is registered) go to the registering process now, with the background
        sample their split will register, so that it saves them while the run fits on."""
        if not self.ahead or key not in self.outer_keys or not models:
            return
        from models import registry

        example = _background(X, self.config)
        registry.save_ahead([(model, example) for model in models.values()])

    # -- progress

    def _rows(self, label: str, sp: Any) -> int:
        """Training rows of a split (its labelled rows: the cost of a fit grows with them)."""
        return max(1, len(self.labels.get(label, sp.train_as_of, sp.label_known_by)))

    def _plan_work(self) -> dict[tuple[str, ...], tuple[int, float]]:
        """Per unit of work (in run order: a label's choices, its deployment's choice, its
        splits; the refits last), the fits it makes and their weight (fits x training rows).
        A training set shared by several units is fitted once (:mod:`models.fitting`): its
        fits count in the first unit that needs it (every time with the cache off)."""
        from models.fitting import train_key

        n = len(self.checked.candidates)
        plan = self.plan
        seen: set[Any] = set()

        def cost(label: str, splits: list[Any]) -> tuple[int, float]:
            fits, weight = 0, 0.0
            for sp in splits:
                key = train_key(label, sp)
                if self.fitter.cache and key in seen:
                    continue
                seen.add(key)
                fits += n
                weight += n * self._rows(label, sp)
            return fits, weight

        work: dict[tuple[str, ...], tuple[int, float]] = {}
        for label, splits in plan.splits.items():
            for sp in splits:
                inner = plan.inner[label][sp.test_as_of]
                if inner:
                    work[("choice", label, sp.test_as_of.isoformat())] = cost(label, inner)
            deploy = plan.deploy.get(label)
            d_inner = plan.deploy_inner.get(label, [])
            if deploy is not None and d_inner:
                work[("deploy-choice", label)] = cost(label, d_inner)
            for sp in splits:
                work[("split", label, sp.test_as_of.isoformat())] = cost(label, [sp])
        for label in plan.splits:
            deploy = plan.deploy.get(label)
            if deploy is not None:
                work[("refit", label)] = (1, float(self._rows(label, deploy)))
        return work

    def _skip(self, unit: tuple[str, ...]) -> None:
        """Leave a unit out of the work still to do (read back, or not needed)."""
        fits, weight = self.work.pop(unit, (0, 0.0))
        self.total -= fits
        self.total_weight -= weight

    def tick(self, name: str = "") -> None:
        self.done += 1
        # the training rows of the fits done (the fitter fits a label's sets in one batch)
        self.done_weight = float(self.fitter.rows_done)

    def _jobs(self, label: str) -> list[tuple[str, Any]]:
        """The (label, split) training sets that ``label``'s units still to do need (inner,
        deployment inner and outer splits); units a resumed run reads back are left out."""
        plan, ckpt = self.plan, self.checkpoint

        def todo(*unit: str) -> bool:
            return ckpt is None or not ckpt.has(*unit)

        jobs = []
        if plan.deploy.get(label) is not None and todo("deploy-choice", label):
            jobs += [(label, sp) for sp in plan.deploy_inner.get(label, [])]
        for sp in plan.splits[label]:
            day = sp.test_as_of.isoformat()
            if todo("choice", label, day):
                jobs += [(label, i) for i in plan.inner[label][sp.test_as_of]]
            if todo("split", label, day):
                jobs.append((label, sp))
        return jobs

    def start_fits(self) -> None:
        """Queue the fits of every label's training sets in the workers at once, label by
        label in run order (:meth:`models.fitting.Fitter.start`): the workers fit the next
        labels while this process selects, evaluates and compares the first, and no core
        idles at the end of a label's batch."""
        jobs = [job for label in self.plan.splits for job in self._jobs(label)]
        if jobs:
            with self.clock.step("fit candidates"):
                self.fitter.start(jobs)

    def prefit(self, label: str) -> None:
        """Fit the candidates on every training set that ``label``'s units still to do need
        (inner, deployment inner and outer splits; each set once) in one parallel batch, so
        the cores stay busy across splits; the units then find them fitted. Sets already
        queued by :meth:`start_fits` are waited for. Units a resumed run reads back are left
        out."""
        jobs = self._jobs(label)
        if not jobs:
            return
        n = len(self.checked.candidates)
        with (
            self.clock.step("fit candidates"),
            self.clock.doing(
                f"fitting {n} candidates on the training sets of {label} ({len(jobs)} splits, "
                "each set once)"
            ),
        ):
            self.fitter.prefit(jobs)

    def remaining(self) -> str:
        if not self.done:
            return ""
        per_unit = (self.clock.elapsed() - self.fits_started) / max(self.done_weight, 1e-9)
        left = per_unit * max(0.0, self.total_weight - self.done_weight)
        return f"; {self.done}/{self.total} fits, about {left:.0f} s left"

    def say_resumed(self) -> None:
        """Say what a resumed run finds done, before it skips it."""
        ckpt = self.checkpoint
        if ckpt is None or not ckpt.found:
            return
        have = {unit for unit in self.work if ckpt.has(*unit)}

        def count(kinds: tuple[str, ...], noun: str) -> str:
            units = [u for u in self.work if u[0] in kinds]
            return f"{sum(u in have for u in units)} of {len(units)} {noun}"

        parts = [count(("split",), "splits"), count(("choice", "deploy-choice"), "choices")]
        if any(u[0] == "refit" for u in self.work):
            parts.append(count(("refit",), "deployment refits"))
        registered = ckpt.peek("registered")
        if registered:  # stopped while registering (the registry says which, when it resumes)
            of = max(int(r.get("of") or 0) for r in registered)
            parts.append(f"{len(registered)} of {of} model registrations")
        fits = sum(self.work[u][0] for u in have)
        self.clock.note(
            f"resuming from {ckpt.folder}: {', '.join(parts)} done, skipping them "
            f"({fits} of {self.total} fits)"
        )

    def _load(self, *unit: str) -> Any:
        """A finished unit from the checkpoint (None: to be done); its work is skipped."""
        if self.checkpoint is None:
            return None
        found = self.checkpoint.load(*unit)
        if found is not None:
            self._skip(tuple(unit))
        elif self.checkpoint.has(*unit):
            self.clock.note(f"checkpoint: {' '.join(unit)} cannot be read back, doing it again")
        return found

    def _save(self, *unit: str, **parts: Any) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save(*unit, **parts)

    # -- the units

    def select(self, label: str, inner: list[Any]) -> tuple[Any, dict[str, Any], list[Any]]:
        """The decision among the grid on ``inner`` validation splits (see
        :func:`models.steps.decide`), the scores and the splits used."""
        from models import steps
        from models.grid import simplicity_key

        cands = self.checked.candidates
        with self.clock.step("select"):
            per_split, used = steps.validation_metrics(
                inner,
                label,
                self.features,
                self.labels,
                cands,
                self.config,
                self.tick,
                fitter=self.fitter,
            )
            decision, scores = steps.decide(
                per_split,
                [c.name for c in cands],
                self.config.selection_metric,
                self.config.selection_penalty,
                [c.name for c in sorted(cands, key=simplicity_key)],
            )
        return decision, scores, used

    def choose(self, label: str) -> None:
        """Every choice of ``label``: one per evaluated split, on its validation splits, and
        the deployment's, on the deployment split's; the deployed config is the deployment's
        choice (without a deployment split, the latest split's)."""
        from models import steps

        config = self.config
        n_cands = len(self.checked.candidates)
        self.choices[label] = {}
        self.prefit(label)
        for sp in self.plan.splits[label]:
            inner = self.plan.inner[label][sp.test_as_of]
            if not inner:
                continue
            day = sp.test_as_of.isoformat()
            done = self._load("choice", label, day)
            if done is not None:
                entry = done.data
            else:
                self.clock.note(f"{label} {day}: choosing on {len(inner)} validation split(s)")
                with self.clock.doing(
                    f"choosing for {label} {day}: fitting {n_cands} candidates on "
                    f"{len(inner)} validation split(s)"
                ):
                    decision, scores, used = self.select(label, inner)
                entry = {
                    "label": label,
                    "test_date": day,
                    "chosen": decision.chosen,
                    "metric": config.selection_metric,
                    "penalty": config.selection_penalty,
                    "label_lag": config.splitter.lag_for(label),
                    "scores": scores,
                    "decision": decision.as_dict(),
                    "inner_splits": used,
                    "made_on": "training years only",
                }
                self._save("choice", label, day, data=entry)
            self.choices[label][sp.test_as_of] = entry["chosen"]
            self.selection.append(entry)
        deploy = self.plan.deploy.get(label)
        if deploy is not None:
            done = self._load("deploy-choice", label)
            if done is not None:
                kept = {k: v for k, v in done.data["decision"].items() if k != "rule"}
                decision = steps.Decision(chosen=done.data["chosen"], **kept)
                scores, used = done.data["scores"], done.data["inner_splits"]
            else:
                d_inner = self.plan.deploy_inner[label]
                self.clock.note(f"{label}: choosing the config to deploy as of {deploy.test_as_of}")
                with self.clock.doing(
                    f"choosing the config to deploy for {label}: fitting {n_cands} candidates "
                    f"on {len(d_inner)} validation split(s)"
                ):
                    decision, scores, used = self.select(label, d_inner)
                data = {"chosen": decision.chosen, "decision": decision.as_dict()}
                self._save(
                    "deploy-choice", label, data={**data, "scores": scores, "inner_splits": used}
                )
            if decision.chosen is not None:
                self.deploy_choice[label] = (decision, scores, used)
                self.deployed[label] = decision.chosen
                return
            self._skip(("refit", label))  # nothing to refit
            self.notes.append(f"{label}: no validation split to choose the deployed config on")
        if self.plan.splits[label]:
            self.deployed[label] = self.choices[label].get(self.plan.splits[label][-1].test_as_of)

    def outer_split(self, label: str, sp: Any) -> None:
        """Fit, evaluate and compare with the rules one outer split (or read it back)."""
        cands = self.checked.candidates
        self.split_no += 1
        chosen = self.choices[label].get(sp.test_as_of)
        deployed = self.deployed.get(label)
        day = sp.test_as_of.isoformat()
        done = self._load("split", label, day)
        if done is not None:
            records, notes = done.data["records"], done.data["notes"]
            part = done.frame if done.frame is not None else _empty_frame()
            champion, others = done.objects or (None, [])
        else:
            self.clock.note(
                f"{label} {sp.test_as_of} (split {self.split_no}/{self.n_splits}): "
                f"{len(cands)} candidates, {len(sp.train_as_of)} training dates"
                + (f"; chosen {chosen}" if chosen else "")
                + (f", deployed {deployed}" if deployed and deployed != chosen else "")
            )
            records, notes, part, champion, others = self._split_work(label, sp, chosen, deployed)
            objects = (champion, others) if champion is not None or others else None
            data = {"records": records, "notes": notes}
            frame = part if len(part) else None
            self._save("split", label, day, data=data, frame=frame, objects=objects)
        self.parts.append(part)
        self.records += records
        for note in notes:  # said once, with its dates
            self.rule_notes.setdefault(note, []).append(day)
        if champion is not None:
            self.champions[label] = champion
        self.fitted += others
        if self.ahead:  # each of them is registered: saved by the registering process now
            from models import registry

            kept = ([champion] if champion is not None else []) + others
            registry.save_ahead([(c.model, c.background) for c in kept])
        if done is not None:
            self.clock.note(
                f"{label} {day} (split {self.split_no}/{self.n_splits}): read back from the "
                "checkpoint"
            )
        else:
            self.clock.note(f"{label} {sp.test_as_of}: evaluated{self.remaining()}")

    def _split_work(
        self, label: str, sp: Any, chosen: str | None, deployed: str | None
    ) -> tuple[list[dict[str, Any]], list[str], pd.DataFrame, Champion | None, list[Champion]]:
        """The work of one outer split: its records, its rules' warnings, its predictions,
        the champion it fits (at the label's last split) and the other fitted models kept."""
        from models import steps

        config, cands = self.config, self.checked.candidates
        where = f"{label} {sp.test_as_of.isoformat()}"
        with (
            self.clock.step("fit candidates"),
            self.clock.doing(f"fitting {len(cands)} candidates on {where}"),
        ):
            fit = steps.fit_candidates(
                sp, label, self.features, self.labels, cands, self.tick, fitter=self.fitter
            )
        with self.clock.step("evaluate"), self.clock.doing(f"evaluating on {where}"):
            evals = steps.evaluate(fit, config.ks, config.seed)
            part = steps.predictions(fit, evals)
        with (
            self.clock.step("compare with rules"),
            self.clock.doing(f"comparing with the rules on {where}"),
        ):
            descriptions = {c.name: c.description_template for c in self.checked.spec.columns}
            rules = steps.fit_rules(fit, self.checked.rules, config.ks, descriptions)
            records = steps.split_records(
                fit, evals, rules, cands, chosen, config, deployed=deployed
            )
        errors = [f"{label}: rule {r.name} not fitted: {r.error}" for r in rules if r.error]
        notes = errors + steps.rule_notes(rules, label)
        fitted_rules = {r.name: r.rule for r in rules if r.rule is not None}
        last = sp is self.plan.splits[label][-1]
        champion: Champion | None = None
        others: list[Champion] = []
        for cand in cands:
            model = fit.models.get(cand.name)
            if model is None:
                continue
            if cand.name == deployed and last:
                champion = _champion(label, cand, model, fit, sp, fitted_rules, config)
                champion.test_metrics = evals[cand.name].metrics
            elif config.registry == "all":
                other = _champion(label, cand, model, fit, sp, fitted_rules, config)
                other.test_metrics = evals[cand.name].metrics
                others.append(other)
        return records, notes, part, champion, others

    def refit(self, label: str) -> None:
        """Choose among the grid on the deployment split's inner validation splits, exactly
        as for every evaluated split, and fit the choice on the deployment training dates."""
        if label not in self.deploy_choice:  # nothing chosen for deployment: the latest split's
            return
        done = self._load("refit", label)
        if done is not None:
            champ, entry = done.objects, done.data.get("deployment")
            if champ is None:  # too few outcomes: the latest split's champion stays
                self.notes.append(done.data["note"])
                return
            self.clock.note(f"{label}: the deployment refit read back from the checkpoint")
        else:
            found = self._refit_work(label)
            if isinstance(found, str):
                self._save("refit", label, data={"note": found})
                self.notes.append(found)
                return
            champ, entry = found
            self._save("refit", label, data={"deployment": entry}, objects=champ)
        if label in self.champions:
            evaluated = self.champions[label]
            champ.test_metrics = evaluated.test_metrics
            if self.config.registry == "all":  # the evaluated choice is registered too
                self.fitted.append(evaluated)
        self.champions[label] = champ
        self.deployment.append(entry)

    def _refit_work(self, label: str) -> tuple[Champion, dict[str, Any]] | str:
        """The deployment refit: the champion and its deployment entry (or, when the
        training labels have a single class, the note that says so)."""
        from models import steps

        deploy = self.plan.deploy[label]
        self.clock.note(f"{label}: refitting the champion as of {deploy.test_as_of}")
        decision, scores, used = self.deploy_choice[label]
        chosen = decision.chosen
        cand = next(c for c in self.checked.candidates if c.name == chosen)
        with (
            self.clock.step("refit"),
            self.clock.doing(f"refitting {chosen} for {label} on the deployment split"),
        ):
            train = self.fitter.training_rows(label, deploy)
            fit = steps.SplitFit(
                deploy,
                label,
                train,
                train.iloc[:0],
                steps.fit_columns(train, self.features.columns),
                {},
            )
            if fit.single_class:
                self.fitter.skip(label, deploy, [cand])
                return f"{label}: too few outcomes to refit; champion = latest split's"
            _, fitted = self.fitter.models(label, deploy, [cand], train=train)
            model = fitted[cand.name]
            rules = _fit_rules_on(fit, self.checked.rules)
        self.clock.note(f"{label}: refitted {chosen}{self.remaining()}")
        champ = _champion(label, cand, model, fit, deploy, rules, self.config)
        entry = {
            "label": label,
            "as_of": deploy.test_as_of.isoformat(),
            "chosen": chosen,
            "scores": scores,
            "decision": decision.as_dict(),
            "inner_splits": used,
            "train_as_of": [d.isoformat() for d in deploy.train_as_of],
            "train_labels_known_by": deploy.label_known_by.isoformat()
            if deploy.label_known_by
            else None,
            "n_train": len(train),
            "made_on": "training years only (no evaluation happens at this date)",
        }
        return champ, entry

    def result(self, agency: str, snapshot_id: str) -> ExperimentResult:
        """What the run found, as an :class:`ExperimentResult`."""
        config, plan, feats = self.config, self.plan, self.features
        notes = [
            "Model selection used only inner validation splits inside each split's training "
            "years; validation labels count only what was known at that split's test date."
            if plan.selects
            else "No selection (splitter.inner_splits: 0): every candidate evaluated, none chosen.",
        ]
        notes += [f"{note} (test dates {', '.join(on)})" for note, on in self.rule_notes.items()]
        first = next(iter(self.checked.labels))
        return ExperimentResult(
            config=config.model_dump(mode="json"),
            config_hash=config.hash,
            agency=agency,
            snapshot_id=snapshot_id,
            spec_hash=str(self.checked.spec.hash),
            feature_columns=feats.columns,
            splits=[
                {**sp.as_dict(), "inner": [i.as_dict() for i in plan.inner[first][sp.test_as_of]]}
                for sp in plan.splits[first]
            ],
            records=_json_safe(self.records),
            selection=_json_safe(self.selection),
            champions=self.champions,
            deployment=_json_safe(self.deployment),
            timings=self.clock.timings,
            notes=notes + self.notes,
            predictions=self.predictions(),
            fitted=self.fitted if config.registry == "all" else [],
            resumed=self.resumed(),
        )

    def resumed(self) -> dict[str, Any] | None:
        """Where a resumed run's checkpoint is and how many units it read back."""
        ckpt = self.checkpoint
        if ckpt is None or not ckpt.loaded:
            return None
        return {"checkpoint": str(ckpt.folder), "units_read_back": ckpt.loaded}

    def predictions(self) -> pd.DataFrame:
        import pandas as pd

        parts = [p for p in self.parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _fit_cache_on() -> bool:
    """Whether a run reuses a training set's fits (default; ``EWS_FIT_CACHE=0`` refits every
    split, only to measure what the cache saves or to check that it changes nothing)."""
    import os

    return os.environ.get("EWS_FIT_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def _empty_frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


def _fit_rules_on(fit: Any, rules: list[tuple[str, Any]]) -> dict[str, Any]:
    """Rules fitted on a split's training rows (no test rows needed)."""
    from models.rules import make_rule

    out = {}
    for name, item in rules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            try:
                out[name] = make_rule(item).fit(fit.X_train, fit.y_train)
            except ValueError:  # a column empty on these dates: the rule is left out
                continue
    return out


def _champion(
    label: str,
    cand: Any,
    model: Any,
    fit: Any,
    split: Any,
    rules: dict[str, Any],
    config: ExperimentConfig,
) -> Champion:
    """A fitted model with what traces and explains it: its training dates and label cutoff,
    the rules fitted on the same rows, and a seeded sample of training rows as background."""
    X = fit.X_train
    return Champion(
        label=label,
        candidate=cand.describe(),
        model=model,
        feature_columns=list(X.columns),
        train_dates=list(split.train_as_of),
        label_known_by=split.label_known_by,
        rules=rules,
        background=_background(X, config),
        test_metrics={},
        as_of=split.test_as_of,
    )


def _background(X: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """A seeded sample of training rows (``config.background_rows``), kept with a model for
    explanations and as the example its signature is read from."""
    import numpy as np

    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.choice(len(X), size=min(config.background_rows, len(X)), replace=False))
    return X.iloc[idx].reset_index(drop=True)


def model_tags(result: ExperimentResult, champ: Champion) -> dict[str, Any]:
    """The trace tags of one registered model: where its data, features, config and seed come
    from, its training dates and its label cutoff (the last date whose outcomes it saw)."""
    return {
        "ews.agency": result.agency,
        "ews.snapshot_id": result.snapshot_id,
        "ews.spec_hash": result.spec_hash,
        "ews.config_hash": result.config_hash,
        "ews.seed": champ.candidate.get("seed"),
        "ews.label": champ.label,
        "ews.candidate": champ.candidate.get("name"),
        "ews.train_dates": ",".join(d.isoformat() for d in champ.train_dates),
        "ews.label_known_by": champ.label_known_by.isoformat() if champ.label_known_by else "",
        "ews.as_of": champ.as_of.isoformat() if champ.as_of else "",
    }


def register(
    result: ExperimentResult,
    uri: str | None = None,
    *,
    checkpoint: Any = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, dict[str, str]]:
    """Register each label's champion (alias ``champion`` if it passed its promotion gate,
    :mod:`models.gates`; else no alias, the gate's verdict in its tags) and, with
    ``register: all``, every other fitted model (no alias), each with its trace tags, the
    experiment config, the fitted rules, a background sample and the results. Returns
    label -> champion's registration.

    With the run's ``checkpoint`` (:class:`models.checkpoint.Checkpoint`), registration is
    done under the run's identity and journalled in it: a run stopped while registering and
    resumed registers only what was not registered yet, and leaves the registry an
    uninterrupted run leaves (:func:`models.registry.register_models`); ``say`` is told how
    many models the stopped run had registered."""
    from models import registry

    if checkpoint is not None:  # the run's identity on disk before any version carries it
        checkpoint.begin()
    payload = _json_safe(result.to_dict())
    from models.gates import gate_tags

    def alias(c: Champion) -> str | None:  # the alias only through the promotion gate
        gate = result.gates.get(c.label)
        return registry.CHAMPION if gate is None or gate.get("passed") else None

    entries: list[tuple[Champion, str | None]] = [(c, alias(c)) for c in result.champions.values()]
    entries += [(c, None) for c in result.fitted]
    versions = registry.register_models(
        [
            registry.ModelEntry(
                model=c.model,
                name=registry.model_name(result.agency, c.label),
                example=c.background,
                tags={
                    **model_tags(result, c),
                    **(
                        gate_tags(result.gates[c.label])
                        if c.label in result.gates and result.champions.get(c.label) is c
                        else {}
                    ),
                },
                rules=c.rules,
                background=c.background,
                params={"candidate": c.candidate.get("name"), **c.candidate.get("params", {})},
                metrics={
                    k.replace("%", "pct").replace("@", "_at_"): v
                    for k, v in c.test_metrics.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                },
                alias=alias,
            )
            for c, alias in entries
        ],
        config=result.config,
        results=payload,
        uri=uri,
        run_name=f"ews-{result.agency}-{result.config_hash}",
        token=checkpoint.identity if checkpoint is not None else None,
        journal=checkpoint,
    )
    kept = 0
    for (champ, given), reg in zip(entries, versions, strict=True):
        kept += reg.pop("kept", "") == "true"
        champ.registered = {**reg, "alias": given or ""}
    if kept:
        if say is not None:
            say(
                f"{kept} of {len(entries)} models already registered by the stopped run: kept, "
                f"not registered again; {len(entries) - kept} registered now"
            )
        if result.resumed is not None:
            result.resumed["models_already_registered"] = kept
    return {label: c.registered for label, c in result.champions.items() if c.registered}


#: the former name of :func:`register`
register_champions = register
