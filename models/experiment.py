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
4. ``build_labels``: one query per label and knowledge cutoff;
5. for each label and split: ``select`` a candidate on the inner validation splits inside the
   training years (each fitted and evaluated like the split itself; mean metric minus a
   variance penalty), ``fit_candidates`` on the training dates, ``evaluate`` them on the test
   date (every prediction kept), ``compare_with_rules`` at the rules' volume;
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

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.grid import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

    from ews.store import Snapshot

DEFAULT_CONFIG = Path(__file__).with_name("default_experiment.yaml")
ID_COLUMNS = ("officer_id", "as_of_date")
CONTEXT_COLUMNS = ("unit", "rank")
RULE_NAMES = ("cmpd", "miami_dade", "iapro_top_percentile", "best_single")


class ExperimentError(ValueError):
    """An experiment that cannot run (bad config, no data, no usable split)."""


class SplitterConfig(BaseModel):
    """How time is split (see :class:`models.splitter.TemporalSplitter`).

    ``test_dates`` may be left out: the experiment then takes the ``n_test_dates`` latest
    January-1 dates whose whole label window the data cover.
    """

    model_config = ConfigDict(extra="forbid")

    test_dates: list[date] | None = None
    n_test_dates: int = Field(default=2, ge=1)
    label_window: str = "1y"
    train_history: str | None = "3y"
    train_every: str = "1y"
    first_train_date: date | None = None
    label_maturity: bool = True
    # validation splits inside each split's training years, to choose among the grid;
    # 0: no selection (every candidate is evaluated, none chosen, no champion)
    inner_splits: int = Field(default=2, ge=0)
    # Extra time a training label window must have ended before the test (or validation)
    # date, for slow-maturing labels (see models.splitter): one duration for every label,
    # or a mapping label name -> duration (labels left out get none).
    label_lag: str | dict[str, str | None] | None = None

    def lag_for(self, label: str) -> str | None:
        """The label lag that applies to ``label``."""
        if isinstance(self.label_lag, dict):
            return self.label_lag.get(label)
        return self.label_lag


class ExperimentConfig(BaseModel):
    """An experiment, as written in YAML (see ``models/default_experiment.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    agency: str | None = None
    snapshot: str | None = None
    feature_spec: str | None = None
    cohort: dict[str, Any] | None = None
    labels: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["sustained"],  # type: ignore[arg-type]
        min_length=1,
    )
    splitter: SplitterConfig = Field(default_factory=SplitterConfig)
    grid: list[ModelSpec] = Field(min_length=1)
    rules: list[str | dict[str, Any]] = Field(
        default_factory=lambda: list(RULE_NAMES)  # type: ignore[arg-type]
    )
    ks: list[float] = Field(default_factory=lambda: [1.0, 5.0, 10.0])
    flag_top_pct: float = Field(default=5.0, gt=0, le=100)
    selection_metric: str = "precision@10%"
    selection_penalty: float = Field(default=0.5, ge=0)
    seed: int = 0
    n_boot: int = Field(default=1000, ge=0)
    background_rows: int = Field(default=200, ge=10)
    refit_champion: bool = True
    # what `ews train` registers in MLflow: each label's champion, or every fitted model
    # (the champion keeps the alias `champion`; the others carry none)
    registry: Literal["champion", "all"] = "champion"

    @field_validator("ks")
    @classmethod
    def _ks(cls, value: list[float]) -> list[float]:
        bad = [k for k in value if not 0 < k <= 100]
        if bad:
            raise ValueError(f"ks are percentages in (0, 100], got {bad}")
        return sorted(set(value))

    @field_validator("grid")
    @classmethod
    def _grid_names(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        from models.grid import GridSpec

        GridSpec(models=value)  # duplicate names
        return value

    @property
    def hash(self) -> str:
        """Content hash (12 hex digits) of the validated config: names the experiment."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def label_names(self) -> list[str]:
        return [x if isinstance(x, str) else str(x.get("name")) for x in self.labels]


def load_config(path: str | Path | None = None, **overrides: Any) -> ExperimentConfig:
    """Read and validate an experiment YAML (default: the packaged default experiment).

    ``overrides`` replace top-level keys (``agency=...``) before validation. Errors name the
    file and every offending key.
    """
    import yaml
    from pydantic import ValidationError

    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise ExperimentError(f"experiment config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: an experiment config is a YAML mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    spec = data.get("feature_spec")
    if isinstance(spec, str) and not Path(spec).is_absolute():
        # a spec path in a config file is read from the config's folder
        beside = (path.parent / spec).resolve()
        if beside.is_file():
            data["feature_spec"] = str(beside)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: invalid experiment config"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ExperimentError("\n".join(lines)) from exc


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
            "timings": self.timings,
            "cpu_timings": self.cpu_timings,
            "notes": self.notes,
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


def _json_safe(value: Any) -> Any:
    """Plain JSON: NaN/inf -> None, numpy scalars -> Python, dates -> ISO text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# helpers


def resolve_source(
    config: ExperimentConfig, source: Snapshot | Path | str | None
) -> tuple[Snapshot | Path, str, str]:
    """``(source, agency, snapshot_id)``: the given package folder or snapshot, or the
    workspace snapshot the config names (default: the only agency's current snapshot)."""
    from ews.store import Snapshot, StoreError, Workspace

    if source is None:
        try:
            snap = Workspace().snapshot(config.agency, config.snapshot)
        except StoreError as exc:
            raise ExperimentError(f"{exc} (run `ews ingest` first)") from exc
        return snap, snap.agency, snap.id
    if isinstance(source, Snapshot):
        return source, source.agency, source.id
    folder = Path(source)
    if not (folder / "events.parquet").is_file():
        raise ExperimentError(f"{folder} is not a normalized package (no events.parquet)")
    manifest = folder / "manifest.json"
    snap_id = ""
    if manifest.is_file():
        snap_id = str(json.loads(manifest.read_text()).get("id", ""))
    if not snap_id:
        digest = hashlib.sha256()
        for name in ("officers", "events", "assignments"):
            p = folder / f"{name}.parquet"
            if p.is_file():
                digest.update(p.read_bytes())
        snap_id = "pkg-" + digest.hexdigest()[:12]
    return folder, config.agency or folder.name, snap_id


def _source_path(source: Snapshot | Path) -> Path:
    return source if isinstance(source, Path) else source.path


def data_end(source: Snapshot | Path) -> date:
    """The last reported date in the events (what the data cover)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    col = pq.read_table(_source_path(source) / "events.parquet", columns=["reported_date"])
    last = pc.max(col.column("reported_date")).as_py()
    if last is None:
        raise ExperimentError("the data hold no events")
    return last if isinstance(last, date) else last.date()


def auto_test_dates(source: Snapshot | Path, label_window: str, n: int) -> list[date]:
    """The ``n`` latest January-1 dates whose whole label window ends by the data's end."""
    from models.splitter import parse_duration

    window = parse_duration(label_window, "label_window")
    end = data_end(source)
    year = end.year
    while date(year, 1, 1) + window > end and year > 1900:
        year -= 1
    return [date(y, 1, 1) for y in range(year - n + 1, year + 1)]


def make_splitter(
    config: ExperimentConfig, source: Snapshot | Path, label: str | None = None
) -> Any:
    """The config's splitter; with ``label``, with that label's ``label_lag``."""
    from models.splitter import TemporalSplitter

    s = config.splitter
    if isinstance(s.label_lag, dict):
        unknown = sorted(set(s.label_lag) - set(config.label_names()))
        if unknown:
            raise ExperimentError(f"splitter.label_lag: unknown labels {', '.join(unknown)}")
    tests = s.test_dates or auto_test_dates(source, s.label_window, s.n_test_dates)
    try:
        return TemporalSplitter(
            test_dates=tests,
            label_window=s.label_window,
            train_history=s.train_history,
            train_every=s.train_every,
            first_train_date=s.first_train_date,
            label_maturity=s.label_maturity,
            label_lag=None if label is None else s.lag_for(label),
        )
    except ValueError as exc:
        raise ExperimentError(f"splitter: {exc}") from exc


def label_spec(item: str | dict[str, Any]) -> Any:
    """A :class:`features.labels.LabelSpec` from a preset name or a dict."""
    from features.labels import LabelSpec

    try:
        return LabelSpec.from_dict(item) if isinstance(item, dict) else LabelSpec.preset(item)
    except ValueError as exc:
        raise ExperimentError(f"labels: {exc}") from exc


def load_feature_spec(path: str | None) -> Any:
    from features.spec import default_spec, load_spec

    return default_spec() if path is None else load_spec(path)


def cohort_spec(cohort: dict[str, Any] | None) -> Any:
    if not cohort:
        return None
    from features.cohort import CohortSpec

    return CohortSpec(**cohort)


def numeric_feature_columns(features: pd.DataFrame) -> list[str]:
    """The model inputs: numeric columns except the ids (``unit``/``rank`` strings are context
    for explanations, not inputs). A protected attribute (race, sex) is an error."""
    from models.inputs import numeric_feature_columns as numeric_columns

    try:
        return numeric_columns(features)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# the experiment: a pipeline of the named steps of models.steps


class Clock:
    """Times the named steps of a run (seconds per step, summed) and reports progress lines
    (``say``) with the time elapsed since the start."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.say = say or (lambda _line: None)
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (all its threads)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def note(self, message: str) -> None:
        self.say(f"[{self.elapsed():6.1f} s] {message}")

    @contextmanager
    def step(self, name: str, message: str | None = None) -> Iterator[None]:
        if message is not None:
            self.note(message)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            key = f"{name.replace(' ', '_')}_s"
            self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - t0, 3)
            self.cpu[key] = round(self.cpu.get(key, 0.0) + time.process_time() - c0, 3)


def progress_printer() -> Callable[[str], None]:
    """Progress lines to standard error, flushed at once (so a log shows them as they come)."""
    import sys

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return say


def run_experiment(
    config: ExperimentConfig | str | Path,
    source: Snapshot | Path | str | None = None,
    tracking: bool = True,
    progress: bool | Callable[[str], None] = True,
    features: pd.DataFrame | None = None,
) -> ExperimentResult:
    """Run an experiment (see the module docstring) and, if ``tracking``, register its models
    in MLflow. ``progress`` prints a line per step and split to standard error (or passes
    each line to a function). ``features`` may pass a prebuilt feature frame covering every
    needed as-of date; otherwise they are built once here."""
    from models import steps

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    say = progress if callable(progress) else progress_printer() if progress else None
    clock = Clock(say)
    source, agency, snapshot_id = resolve_source(config, source)
    with clock.step("check config", "checking the config against the feature spec and data"):
        try:
            checked = steps.check_config(config, source)
        except steps.ConfigProblems as exc:
            raise ExperimentError(f"refused before any work:\n{exc}") from exc
    if tracking:  # MLflow's imports and store open meanwhile, on the idle core (2-3 s less)
        from models import registry

        registry.warm_up()
    deploy = tracking and config.refit_champion
    with clock.step("plan splits"):
        plan = steps.plan_splits(config, source, list(checked.labels), deploy=deploy)
    dates = plan.feature_dates()
    with clock.step("build features", f"building features for {len(dates)} as-of dates"):
        feats = steps.build_features(source, plan, checked.spec, checked.cohort, features)
    if say is not None:  # features that carry no information on this agency's data
        for line in feats.notes:
            say(line)
    with clock.step("build labels", f"building labels ({len(plan.label_requests())} queries)"):
        labels = steps.build_labels(source, plan, checked.labels, checked.cohort)
    run = _Run(config, checked, plan, feats, labels, clock)
    for label in checked.labels:
        for sp in plan.splits[label]:
            run.outer_split(label, sp)
    for label in checked.labels:
        if plan.deploy.get(label) is not None:
            run.refit(label)
    result = run.result(agency, snapshot_id)
    n = len(result.champions) + len(result.fitted)
    if tracking and n:
        with clock.step("register", f"registering {n} models in MLflow"):
            register(result)
    elif tracking:
        result.notes.append("nothing registered: no model was chosen (use registry: all)")
    clock.note("done")
    result.timings = {**clock.timings, "total_s": round(clock.elapsed(), 3)}
    result.cpu_timings = {**clock.cpu, "total_s": round(time.process_time() - clock.cpu_started, 3)}
    return result


class _Run:
    """The loop over splits: for each, select on its validation splits, fit the candidates,
    evaluate them, compare them with the rules; keeps what the result needs."""

    def __init__(
        self,
        config: ExperimentConfig,
        checked: Any,
        plan: Any,
        features: Any,
        labels: Any,
        clock: Clock,
    ) -> None:
        self.config, self.checked, self.plan = config, checked, plan
        self.features, self.labels, self.clock = features, labels, clock
        self.records: list[dict[str, Any]] = []
        self.selection: list[dict[str, Any]] = []
        self.champions: dict[str, Champion] = {}
        self.deployment: list[dict[str, Any]] = []
        self.fitted: list[Champion] = []
        self.notes: list[str] = []
        self.rule_notes: dict[str, list[str]] = {}  # a rule's warning -> the test dates
        self.parts: list[pd.DataFrame] = []
        self.total = plan.n_fits(len(checked.candidates))
        self.done = 0
        self.n_splits = sum(len(v) for v in plan.splits.values())
        self.split_no = 0
        self.fits_started = clock.elapsed()

    def tick(self, _name: str = "") -> None:
        self.done += 1

    def remaining(self) -> str:
        if not self.done:
            return ""
        per_fit = (self.clock.elapsed() - self.fits_started) / self.done
        left = per_fit * (self.total - self.done)
        return f"; {self.done}/{self.total} fits, about {left:.0f} s left"

    def select(self, label: str, inner: list[Any]) -> tuple[str | None, dict[str, Any], list[Any]]:
        from models import steps

        cands = self.checked.candidates
        with self.clock.step("select"):
            per_split, used = steps.validation_metrics(
                inner, label, self.features, self.labels, cands, self.config, self.tick
            )
            chosen, scores = steps.select(
                per_split,
                [c.name for c in cands],
                self.config.selection_metric,
                self.config.selection_penalty,
            )
        return chosen, scores, used

    def outer_split(self, label: str, sp: Any) -> None:
        from models import steps

        config, cands = self.config, self.checked.candidates
        self.split_no += 1
        inner = self.plan.inner[label][sp.test_as_of]
        self.clock.note(
            f"{label} {sp.test_as_of} (split {self.split_no}/{self.n_splits}): "
            f"{len(cands)} candidates, {len(sp.train_as_of)} training dates"
            + (f", {len(inner)} validation splits to choose on" if inner else "")
        )
        chosen, scores, used = self.select(label, inner) if inner else (None, {}, [])
        if inner:
            self.selection.append(
                {
                    "label": label,
                    "test_date": sp.test_as_of.isoformat(),
                    "chosen": chosen,
                    "metric": config.selection_metric,
                    "penalty": config.selection_penalty,
                    "label_lag": config.splitter.lag_for(label),
                    "scores": scores,
                    "inner_splits": used,
                    "made_on": "training years only",
                }
            )
        with self.clock.step("fit candidates"):
            fit = steps.fit_candidates(sp, label, self.features, self.labels, cands, self.tick)
        with self.clock.step("evaluate"):
            evals = steps.evaluate(fit, config.ks, config.seed)
            self.parts.append(steps.predictions(fit, evals))
        with self.clock.step("compare with rules"):
            descriptions = {c.name: c.description_template for c in self.checked.spec.columns}
            rules = steps.fit_rules(fit, self.checked.rules, config.ks, descriptions)
            self.records += steps.split_records(fit, evals, rules, cands, chosen, config)
        errors = [f"{label}: rule {r.name} not fitted: {r.error}" for r in rules if r.error]
        for note in errors + steps.rule_notes(rules, label):  # said once, with its dates
            self.rule_notes.setdefault(note, []).append(sp.test_as_of.isoformat())
        fitted_rules = {r.name: r.rule for r in rules if r.rule is not None}
        last = sp is self.plan.splits[label][-1]
        for cand in cands:
            model = fit.models.get(cand.name)
            if model is None:
                continue
            if cand.name == chosen and last:
                champ = _champion(label, cand, model, fit, sp, fitted_rules, config)
                champ.test_metrics = evals[cand.name].metrics
                self.champions[label] = champ
            elif config.registry == "all":
                other = _champion(label, cand, model, fit, sp, fitted_rules, config)
                other.test_metrics = evals[cand.name].metrics
                self.fitted.append(other)
        self.clock.note(f"{label} {sp.test_as_of}: evaluated{self.remaining()}")

    def refit(self, label: str) -> None:
        """Choose among the grid on the deployment split's inner validation splits, exactly
        as for every evaluated split, and fit the choice on the deployment training dates."""
        from models import steps

        deploy = self.plan.deploy[label]
        self.clock.note(f"{label}: choosing and refitting the champion as of {deploy.test_as_of}")
        chosen, scores, used = self.select(label, self.plan.deploy_inner[label])
        cand = next(c for c in self.checked.candidates if c.name == chosen)
        with self.clock.step("refit"):
            rows = self.labels.get(label, deploy.train_as_of, deploy.label_known_by)
            train = steps.join(self.features.frame, rows, deploy.train_as_of)
            fit = steps.SplitFit(
                deploy,
                label,
                train,
                train.iloc[:0],
                steps.fit_columns(train, self.features.columns),
                {},
            )
            self.tick()
            if fit.single_class:
                self.notes.append(f"{label}: too few outcomes to refit; champion = latest split's")
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                model = cand.build().fit(fit.X_train, fit.y_train)
            rules = _fit_rules_on(fit, self.checked.rules)
        champ = _champion(label, cand, model, fit, deploy, rules, self.config)
        if label in self.champions:
            evaluated = self.champions[label]
            champ.test_metrics = evaluated.test_metrics
            if self.config.registry == "all":  # the evaluated choice is registered too
                self.fitted.append(evaluated)
        self.champions[label] = champ
        self.deployment.append(
            {
                "label": label,
                "as_of": deploy.test_as_of.isoformat(),
                "chosen": chosen,
                "scores": scores,
                "inner_splits": used,
                "train_as_of": [d.isoformat() for d in deploy.train_as_of],
                "train_labels_known_by": deploy.label_known_by.isoformat()
                if deploy.label_known_by
                else None,
                "n_train": len(train),
                "made_on": "training years only (no evaluation happens at this date)",
            }
        )

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
        )

    def predictions(self) -> pd.DataFrame:
        import pandas as pd

        parts = [p for p in self.parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


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
    import numpy as np

    X = fit.X_train
    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.choice(len(X), size=min(config.background_rows, len(X)), replace=False))
    return Champion(
        label=label,
        candidate=cand.describe(),
        model=model,
        feature_columns=list(X.columns),
        train_dates=list(split.train_as_of),
        label_known_by=split.label_known_by,
        rules=rules,
        background=X.iloc[idx].reset_index(drop=True),
        test_metrics={},
        as_of=split.test_as_of,
    )


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


def register(result: ExperimentResult, uri: str | None = None) -> dict[str, dict[str, str]]:
    """Register each label's champion (alias ``champion``) and, with ``register: all``, every
    other fitted model (no alias), each with its trace tags, the experiment config, the fitted
    rules, a background sample and the results. Returns label -> champion's registration."""
    from models import registry

    payload = _json_safe(result.to_dict())
    entries: list[tuple[Champion, str | None]] = [
        (c, registry.CHAMPION) for c in result.champions.values()
    ]
    entries += [(c, None) for c in result.fitted]
    versions = registry.register_models(
        [
            registry.ModelEntry(
                model=c.model,
                name=registry.model_name(result.agency, c.label),
                example=c.background,
                tags=model_tags(result, c),
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
    )
    for (champ, _), reg in zip(entries, versions, strict=True):
        champ.registered = reg
    return {label: c.registered for label, c in result.champions.items() if c.registered}


#: the former name of :func:`register`
register_champions = register
