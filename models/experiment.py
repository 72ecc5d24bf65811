"""The experiment: train the model grid and compare it with the rules on honest temporal splits.

One YAML file (validated by pydantic before any data is read, then hashed) says everything:
which data, which features, which cohort, which labels, how to split time, which models to
try and which rules to beat. :func:`run_experiment` then

1. lays out the splits with :class:`models.splitter.TemporalSplitter` (no training label
   window reaches past its test date; with label maturity, the default, training labels count
   only findings known at the test date);
2. builds the features ONCE for every as-of date any split needs (training, validation and
   test) with :func:`features.build.build_features`, the same code path scoring uses;
3. for each label and split: chooses a model among the grid on *inner validation splits
   inside the training years* (mean precision@k minus a variance penalty,
   :func:`models.metrics.select_model`), fits every candidate and every rule on the training
   dates, scores the test date, and computes the metrics and the equal-volume comparison of
   each model with each rule;
4. with ``refit_champion`` (default) when registering, repeats that choice on a deployment
   split as of the day after the data end (inner validation splits again, training dates
   whose label windows have ended, labels as known then) and fits it on the newest training
   dates; otherwise the candidate chosen at the latest split, fitted on its training dates;
5. registers each label's champion in the MLflow registry (alias ``champion``) with
   everything that traces it.

The result holds one record per (label, split, method) with the keys ``test_date, label,
method, kind (rule|model), selected, flagged, tp, fp, precision, recall, auc, ap, brier,
metrics, vs_rules``; and ``selection`` says, for every choice, which dates it was made on.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.grid import ModelSpec

if TYPE_CHECKING:
    import numpy as np
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
    inner_splits: int = Field(default=2, ge=1)
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
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
            "deployment": self.deployment,
            "timings": self.timings,
            "notes": self.notes,
        }

    def save(self, path: Path) -> Path:
        """Write :meth:`to_dict` as JSON (NaN becomes null)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_json_safe(self.to_dict()), indent=2))
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


def check_label_windows(specs: dict[str, Any], label_window: str) -> None:
    """Every label must look no further ahead than the splitter's label window, or training
    labels would reach past the test date."""
    from features.durations import parse_duration as label_duration
    from models.splitter import parse_duration

    limit = date(2000, 1, 1) + parse_duration(label_window, "label_window")
    for name, spec in specs.items():
        if label_duration(spec.window).after(date(2000, 1, 1)) > limit:
            raise ExperimentError(
                f"label {name!r} looks {spec.window} ahead, beyond the splitter's label_window "
                f"{label_window}: training labels would reach past the test date"
            )


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


def _day(values: Any) -> Any:
    """As-of dates as datetime64[ns] at midnight, whatever unit they came in."""
    import pandas as pd

    return pd.to_datetime(values).astype("datetime64[ns]")


def _ts(d: date) -> Any:
    import pandas as pd

    return pd.Timestamp(d)


def _fit_columns(train: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns with at least one value in this training set. A column that is empty in
    one fit's training rows (an early split, a sparse window) teaches that fit nothing, and
    HistGradientBoosting fails on it; it is left out of that fit only."""
    return [c for c in columns if train[c].notna().any()]


def _X(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].astype("float64")


def flag_count(n: int, pct: float) -> int:
    """How many officers the top ``pct`` percent of ``n`` is: ``ceil``, at least one."""
    return max(1, math.ceil(pct / 100.0 * n - 1e-9)) if n else 0


def _counts(y: np.ndarray, flags: np.ndarray) -> dict[str, Any]:
    import numpy as np

    y = np.asarray(y).astype(bool)
    flags = np.asarray(flags).astype(bool)
    tp = int((y & flags).sum())
    fp = int((~y & flags).sum())
    flagged = int(flags.sum())
    positives = int(y.sum())
    return {
        "flagged": flagged,
        "tp": tp,
        "fp": fp,
        "precision": tp / flagged if flagged else None,
        "recall": tp / positives if positives else None,
    }


def _rule_scores(rule: Any, X: pd.DataFrame) -> np.ndarray:
    import numpy as np

    if hasattr(rule, "decision_function"):
        return np.asarray(rule.decision_function(X), dtype=float)
    return np.asarray(rule.predict_proba(X)[:, 1], dtype=float)


def _model_scores(model: Any, X: pd.DataFrame) -> np.ndarray:
    import numpy as np

    return np.asarray(model.predict_proba(X)[:, 1], dtype=float)


def _metric(metrics: dict[str, Any], key: str) -> Any:
    value = metrics.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


# ---------------------------------------------------------------------------------------------
# the experiment


class _Labels:
    """Labels built on demand and cached per (label, maturity cutoff, as-of date)."""

    def __init__(self, source: Snapshot | Path, specs: dict[str, Any], cohort: Any) -> None:
        self.source = source
        self.specs = specs
        self.cohort = cohort
        self.cache: dict[tuple[str, date | None], pd.DataFrame] = {}
        self.calls: list[dict[str, Any]] = []

    def get(self, label: str, dates: Sequence[date], known_by: date | None) -> pd.DataFrame:
        import pandas as pd

        from features.labels import build_labels

        key = (label, known_by)
        have = self.cache.get(key)
        done = set() if have is None else {d.date() for d in pd.to_datetime(have["as_of_date"])}
        missing = sorted(set(dates) - done)
        if missing:
            new = build_labels(
                self.source, missing, self.specs[label], known_by=known_by, cohort=self.cohort
            )
            new = new[["officer_id", "as_of_date", "label"]].copy()
            new["as_of_date"] = _day(new["as_of_date"])
            new["officer_id"] = new["officer_id"].astype(str)
            self.calls.append(
                {
                    "label": label,
                    "known_by": known_by.isoformat() if known_by else None,
                    "as_of": [d.isoformat() for d in missing],
                }
            )
            have = new if have is None else pd.concat([have, new], ignore_index=True)
            self.cache[key] = have
        assert have is not None
        wanted = {_ts(d) for d in dates}
        return have[have["as_of_date"].isin(wanted)]


def _join(features: pd.DataFrame, labels: pd.DataFrame, dates: Sequence[date]) -> pd.DataFrame:
    wanted = {_ts(d) for d in dates}
    rows = features[features["as_of_date"].isin(wanted)]
    out = rows.merge(labels, on=["officer_id", "as_of_date"], how="inner", validate="1:1")
    used = {d.date() for d in out["as_of_date"].drop_duplicates()}
    if not used <= set(dates):  # defensive: rows only from the dates asked for
        raise ExperimentError("internal: rows from unexpected as-of dates in a split")
    return out


def _fit(model: Any, X: pd.DataFrame, y: Any) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return model.fit(X, y)


def _select(
    candidates: list[Any],
    inner: list[Any],
    label: str,
    features: pd.DataFrame,
    cols: list[str],
    labels: _Labels,
    config: ExperimentConfig,
    tick: Callable[[], None],
) -> tuple[str, dict[str, list[float | None]], list[dict[str, Any]]]:
    """Fit every candidate on each inner split's training dates, score its validation date,
    and choose by mean selection metric minus a variance penalty. Uses training years only."""
    import numpy as np

    from models.forest import fit_candidates
    from models.metrics import evaluate_scores, select_model

    ks = tuple(config.ks)
    per_model: dict[str, list[float | None]] = {c.name: [] for c in candidates}
    used: list[dict[str, Any]] = []
    for sp in inner:
        train = _join(
            features, labels.get(label, sp.train_as_of, sp.label_known_by), sp.train_as_of
        )
        val = _join(
            features, labels.get(label, [sp.test_as_of], sp.test_label_known_by), [sp.test_as_of]
        )
        used.append(
            {
                "validation_date": sp.test_as_of.isoformat(),
                "train_as_of": [d.isoformat() for d in sp.train_as_of],
                "train_labels_known_by": sp.label_known_by.isoformat()
                if sp.label_known_by
                else None,
                "validation_labels_known_by": sp.test_label_known_by.isoformat()
                if sp.test_label_known_by
                else None,
            }
        )
        y_train = train["label"].to_numpy()
        y_val = val["label"].to_numpy()
        if len(np.unique(y_train)) < 2 or len(y_val) == 0:
            for cand in candidates:
                tick()
                per_model[cand.name].append(None)
            continue
        fcols = _fit_columns(train, cols)
        fitted = fit_candidates(candidates, _X(train, fcols), y_train, on_fit=lambda _: tick())
        for cand in candidates:
            score = _model_scores(fitted[cand.name], _X(val, fcols))
            m = evaluate_scores(y_val, score, ks=ks, seed=config.seed)
            per_model[cand.name].append(_metric(m, config.selection_metric))
    usable = {
        name: [{config.selection_metric: v} for v in vals if v is not None]
        for name, vals in per_model.items()
    }
    usable = {k: v for k, v in usable.items() if v}
    if not usable:
        return candidates[0].name, per_model, used
    chosen = select_model(usable, metric=config.selection_metric, penalty=config.selection_penalty)
    return str(chosen), per_model, used


def _champion(
    label: str,
    cand: Any,
    model: Any,
    X: pd.DataFrame,
    split: Any,
    rules: dict[str, Any],
    config: ExperimentConfig,
    test_metrics: dict[str, Any],
) -> Champion:
    """A fitted model with what traces and explains it: its training dates and label cutoff,
    the rules fitted on the same rows, and a seeded sample of training rows as background."""
    import numpy as np

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
        test_metrics=test_metrics,
    )


def deployment_split(
    splitter: Any, source: Snapshot | Path, n_inner: int
) -> tuple[Any | None, list[Any]]:
    """The split a deployed model is trained on: as of the day after the data end, training
    dates laid out by the same rules (label windows ending by then, labels as known then),
    with inner validation splits to choose the model. ``(None, [])`` if the data are too
    short."""
    import dataclasses
    from datetime import timedelta

    day = data_end(source) + timedelta(days=1)
    try:
        deploy_splitter = dataclasses.replace(splitter, test_dates=[day])
        (deploy,) = deploy_splitter.split()
        return deploy, deploy_splitter.inner_splits(deploy, n_inner)
    except ValueError:
        return None, []


def _refit_champion(
    deploy: Any,
    inner: list[Any],
    label: str,
    candidates: list[Any],
    features: pd.DataFrame,
    cols: list[str],
    labels: _Labels,
    config: ExperimentConfig,
    tick: Callable[[], None],
) -> tuple[Champion, dict[str, Any]] | None:
    """Choose among the grid on the deployment split's inner validation splits, exactly as
    for every evaluated split, and fit the choice on the deployment training dates."""
    import numpy as np

    from models.rules import make_rule

    chosen, scores, used = _select(candidates, inner, label, features, cols, labels, config, tick)
    rows = labels.get(label, deploy.train_as_of, deploy.label_known_by)
    train = _join(features, rows, deploy.train_as_of)
    X, y = _X(train, _fit_columns(train, cols)), train["label"].to_numpy()
    if len(np.unique(y)) < 2:
        return None
    cand = next(c for c in candidates if c.name == chosen)
    model = _fit(cand.build(), X, y)
    rules = {}
    for item in config.rules:
        rname = item if isinstance(item, str) else str(item.get("name", "custom_rule"))
        rules[rname] = _fit(make_rule(item), X, y)
    champ = _champion(label, cand, model, X, deploy, rules, config, {})
    info = {
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
    return champ, info


def run_experiment(
    config: ExperimentConfig | str | Path,
    source: Snapshot | Path | str | None = None,
    tracking: bool = True,
    progress: bool = True,
    features: pd.DataFrame | None = None,
) -> ExperimentResult:
    """Run an experiment (see the module docstring) and, if ``tracking``, register each
    label's champion in MLflow. ``features`` may pass a prebuilt feature frame covering every
    needed as-of date (benchmarks); otherwise they are built once here."""
    import numpy as np

    from features.build import build_features
    from models.forest import fit_candidates
    from models.grid import expand_grid
    from models.metrics import compare_to_rule, evaluate_scores, top_flags
    from models.rules import make_rule

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source, agency, snapshot_id = resolve_source(config, source)
    spec = load_feature_spec(config.feature_spec)
    cohort = cohort_spec(config.cohort)
    candidates = expand_grid(config.grid, seed=config.seed)
    label_specs = {
        name: label_spec(item)
        for name, item in zip(config.label_names(), config.labels, strict=True)
    }
    check_label_windows(label_specs, config.splitter.label_window)
    for item in config.rules:
        try:
            make_rule(item)  # fail early on an unknown rule
        except ValueError as exc:
            raise ExperimentError(f"rules: {exc}") from exc
    # One splitter per label: a label may have its own label lag (splitter.label_lag).
    label_splits: dict[str, list[Any]] = {}
    label_inner: dict[str, dict[date, list[Any]]] = {}
    label_deploy: dict[str, tuple[Any | None, list[Any]]] = {}
    for label in label_specs:
        lsplitter = make_splitter(config, source, label)
        try:
            lsplits = lsplitter.split()
            linner = {
                sp.test_as_of: lsplitter.inner_splits(sp, config.splitter.inner_splits)
                for sp in lsplits
            }
        except ValueError as exc:
            raise ExperimentError(f"splitter (label {label}): {exc}") from exc
        label_splits[label], label_inner[label] = lsplits, linner
        label_deploy[label] = (
            deployment_split(lsplitter, source, config.splitter.inner_splits)
            if tracking and config.refit_champion
            else (None, [])
        )
    first = next(iter(label_specs))
    splits, inner = label_splits[first], label_inner[first]  # for the result's split listing
    all_dates: set[date] = set()
    for label in label_specs:
        deploy, deploy_inner = label_deploy[label]
        for sp in ([deploy] if deploy else []) + deploy_inner:
            all_dates.update(sp.train_as_of)
            all_dates.add(sp.test_as_of)
        if deploy is not None:
            all_dates.discard(deploy.test_as_of)  # nothing is evaluated at the deployment date
        for sp in label_splits[label]:
            all_dates.update(sp.train_as_of)
            all_dates.add(sp.test_as_of)
            for isp in label_inner[label][sp.test_as_of]:
                all_dates.update(isp.train_as_of)
                all_dates.add(isp.test_as_of)
    dates = sorted(all_dates)

    if features is None:
        features = build_features(source, dates, spec=spec, cohort=cohort, progress=progress)
    features = features.copy()
    features["officer_id"] = features["officer_id"].astype(str)
    features["as_of_date"] = _day(features["as_of_date"])
    have = {d.date() for d in features["as_of_date"].drop_duplicates()}
    missing = [d.isoformat() for d in dates if d not in have]
    if missing:
        from features.diagnostics import empty_cohort_reasons

        why = empty_cohort_reasons(source, [date.fromisoformat(d) for d in missing], cohort)
        raise ExperimentError(
            f"no feature rows for as-of dates {', '.join(missing)}"
            + "".join(f"\n  {reason}" for reason in why)
        )
    if progress:  # features that carry no information on this agency's data
        from features.diagnostics import degenerate_columns

        names = [c.name for c in spec.columns]
        for line in degenerate_columns(features, names).lines(len(names)):
            print(line, file=sys.stderr)
    cols = numeric_feature_columns(features)
    # Columns with no value on any training date teach nothing (and break some estimators);
    # decided on training dates only.
    train_days = {
        _ts(d) for lsplits in label_splits.values() for sp in lsplits for d in sp.train_as_of
    }
    training_rows = features[features["as_of_date"].isin(train_days)]
    empty = [c for c in cols if training_rows[c].isna().all()]
    cols = [c for c in cols if c not in empty]
    if not cols:
        raise ExperimentError("no numeric feature column has any value")
    timings["features_s"] = round(time.perf_counter() - t0, 3)

    labels = _Labels(source, label_specs, cohort)
    records: list[dict[str, Any]] = []
    selection: list[dict[str, Any]] = []
    champions: dict[str, Champion] = {}
    deployment: list[dict[str, Any]] = []
    notes: list[str] = [
        "Model selection used only inner validation splits inside each split's training "
        "years; validation labels count only what was known at that split's test date.",
    ]
    n_fits = sum(
        len(candidates) * (len(label_inner[label][sp.test_as_of]) + 1)
        for label in label_specs
        for sp in label_splits[label]
    )
    n_fits += sum(
        len(candidates) * len(label_deploy[label][1])
        for label in label_specs
        if label_deploy[label][0] is not None
    )

    from rich.progress import Progress

    t1 = time.perf_counter()
    # a transient display leaves a blank line where stderr is not a terminal (a log)
    with Progress(disable=not (progress and sys.stderr.isatty()), transient=True) as bar:
        task = bar.add_task("training and evaluating", total=n_fits)

        def tick() -> None:
            bar.advance(task)

        for label in label_specs:
            splits, inner = label_splits[label], label_inner[label]
            for sp in splits:
                window_end = sp.train_label_end
                if window_end > sp.test_as_of:  # the splitter's promise, checked where it matters
                    raise ExperimentError(
                        f"training label window ends {window_end} after test date {sp.test_as_of}"
                    )
                chosen, inner_scores, inner_used = _select(
                    candidates, inner[sp.test_as_of], label, features, cols, labels, config, tick
                )
                selection.append(
                    {
                        "label": label,
                        "test_date": sp.test_as_of.isoformat(),
                        "chosen": chosen,
                        "metric": config.selection_metric,
                        "penalty": config.selection_penalty,
                        "label_lag": config.splitter.lag_for(label),
                        "scores": inner_scores,
                        "inner_splits": inner_used,
                        "made_on": "training years only",
                    }
                )
                train = _join(
                    features, labels.get(label, sp.train_as_of, sp.label_known_by), sp.train_as_of
                )
                test = _join(
                    features,
                    labels.get(label, [sp.test_as_of], sp.test_label_known_by),
                    [sp.test_as_of],
                )
                fcols = _fit_columns(train, cols)
                X_train, y_train = _X(train, fcols), train["label"].to_numpy()
                X_test, y_test = _X(test, fcols), test["label"].to_numpy()
                base = {
                    "test_date": sp.test_as_of.isoformat(),
                    "label": label,
                    "n_train": len(train),
                    "n_test": len(test),
                    "train_prevalence": float(y_train.mean()) if len(y_train) else None,
                    "test_prevalence": float(y_test.mean()) if len(y_test) else None,
                    "train_dates_used": sorted(
                        d.date().isoformat() for d in train["as_of_date"].drop_duplicates()
                    ),
                    "train_labels_known_by": sp.label_known_by.isoformat()
                    if sp.label_known_by
                    else None,
                }
                # rules: fitted on training dates (only best_single learns anything)
                rule_flags: dict[str, np.ndarray] = {}
                fitted_rules: dict[str, Any] = {}
                for item in config.rules:
                    rule = make_rule(item)
                    rname = item if isinstance(item, str) else str(item.get("name", "custom_rule"))
                    rule = _fit(rule, X_train, y_train)
                    fitted_rules[rname] = rule
                    flags = np.asarray(rule.predict(X_test)).astype(bool)
                    rule_flags[rname] = flags
                    m = evaluate_scores(y_test, _rule_scores(rule, X_test), ks=tuple(config.ks))
                    records.append(
                        {
                            **base,
                            "method": rname,
                            "kind": "rule",
                            "selected": False,
                            **_counts(y_test, flags),
                            "auc": _metric(m, "roc_auc"),
                            "ap": _metric(m, "average_precision"),
                            "brier": None,
                            "metrics": m,
                            "vs_rules": {},
                        }
                    )
                single_class = len(np.unique(y_train)) < 2
                fitted = (
                    {}
                    if single_class
                    else fit_candidates(candidates, X_train, y_train, on_fit=lambda _: tick())
                )
                for cand in candidates:
                    rec: dict[str, Any] = {
                        **base,
                        "method": cand.name,
                        "kind": "model",
                        "selected": cand.name == chosen,
                        "candidate": cand.describe(),
                    }
                    if single_class:
                        tick()
                        rec.update(error="training labels have a single class", vs_rules={})
                        records.append(rec)
                        continue
                    model = fitted[cand.name]
                    score = _model_scores(model, X_test)
                    m = evaluate_scores(y_test, score, ks=tuple(config.ks), seed=config.seed)
                    flags = top_flags(
                        score, flag_count(len(score), config.flag_top_pct), seed=config.seed
                    )
                    vs = {}
                    # bootstrap intervals for the selected model (the one reported against
                    # the rules); point estimates for the others, to keep big runs fast
                    n_boot = config.n_boot if cand.name == chosen else 0
                    for rname, rflags in rule_flags.items():
                        c = compare_to_rule(y_test, score, rflags, n_boot=n_boot, seed=config.seed)
                        vs[rname] = {
                            k: c.get(k)
                            for k in (
                                "flagged",
                                "rule_tp",
                                "rule_fp",
                                "tp",
                                "fp",
                                "pct_more_tp",
                                "pct_fewer_fp",
                                "ci95_pct_more_tp",
                                "ci95_pct_fewer_fp",
                            )
                        }
                    rec.update(
                        _counts(y_test, flags),
                        auc=_metric(m, "roc_auc"),
                        ap=_metric(m, "average_precision"),
                        brier=_metric(m, "brier"),
                        metrics=m,
                        vs_rules=vs,
                    )
                    records.append(rec)
                    if cand.name == chosen and sp is splits[-1]:
                        champions[label] = _champion(
                            label, cand, model, X_train, sp, fitted_rules, config, m
                        )
        if any(d is not None for d, _ in label_deploy.values()):
            bar.update(task, description="refitting the champions on the newest data")
            for label in label_specs:
                deploy, deploy_inner = label_deploy[label]
                if deploy is None:
                    continue
                refit = _refit_champion(
                    deploy, deploy_inner, label, candidates, features, cols, labels, config, tick
                )
                if refit is None:
                    notes.append(f"{label}: too few outcomes to refit; champion = latest split's")
                    continue
                champ, info = refit
                if label in champions:
                    champ.test_metrics = champions[label].test_metrics
                champions[label] = champ
                deployment.append(info)
    timings["train_eval_s"] = round(time.perf_counter() - t1, 3)
    result = ExperimentResult(
        config=config.model_dump(mode="json"),
        config_hash=config.hash,
        agency=agency,
        snapshot_id=snapshot_id,
        spec_hash=str(spec.hash),
        feature_columns=cols,
        splits=[
            {**sp.as_dict(), "inner": [i.as_dict() for i in label_inner[first][sp.test_as_of]]}
            for sp in label_splits[first]
        ],
        records=_json_safe(records),
        selection=_json_safe(selection),
        champions=champions,
        deployment=_json_safe(deployment),
        timings=timings,
        notes=notes
        + [f"labels built: {len(labels.calls)} calls"]
        + ([f"left out (no value on any training date): {', '.join(empty)}"] if empty else []),
    )
    if tracking:
        t2 = time.perf_counter()
        register_champions(result)
        timings["registry_s"] = round(time.perf_counter() - t2, 3)
    return result


def register_champions(
    result: ExperimentResult, uri: str | None = None
) -> dict[str, dict[str, str]]:
    """Log and register each label's champion (alias ``champion``) with its trace tags, the
    experiment config, the fitted rules, a background sample and the results."""
    from models import registry

    out: dict[str, dict[str, str]] = {}
    payload = _json_safe(result.to_dict())
    for label, champ in result.champions.items():
        name = registry.model_name(result.agency, label)
        tags = {
            "ews.agency": result.agency,
            "ews.snapshot_id": result.snapshot_id,
            "ews.spec_hash": result.spec_hash,
            "ews.config_hash": result.config_hash,
            "ews.seed": champ.candidate.get("seed"),
            "ews.label": label,
            "ews.candidate": champ.candidate.get("name"),
            "ews.train_dates": ",".join(d.isoformat() for d in champ.train_dates),
            "ews.label_known_by": champ.label_known_by.isoformat() if champ.label_known_by else "",
        }
        metrics = {
            k.replace("%", "pct").replace("@", "_at_"): v
            for k, v in champ.test_metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        version = registry.register_model(
            champ.model,
            name,
            champ.background,
            tags,
            config=result.config,
            rules=champ.rules,
            background=champ.background,
            results=payload,
            params={"candidate": champ.candidate.get("name"), **champ.candidate.get("params", {})},
            metrics=metrics,
            uri=uri,
            run_name=f"{name}-{result.config_hash}",
        )
        run_id = registry.client(uri).get_model_version(name, version).run_id or ""
        champ.registered = {"name": name, "version": version, "run_id": run_id}
        out[label] = champ.registered
    return out
