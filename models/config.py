"""The experiment's configuration: its types, how it is read, and the helpers it resolves to.

:class:`ExperimentConfig` is one experiment as written in YAML (validated by pydantic before
any data is read, then hashed); :func:`load_config` reads one. The helpers turn a config into
what the steps need: the data source (:func:`resolve_source`, :func:`data_end`), the splitter
(:func:`make_splitter`, :func:`auto_test_dates`), label, cohort and feature specs, and the
model inputs (:func:`numeric_feature_columns`). Both :mod:`models.steps` and
:mod:`models.experiment` import from here, and neither imports the other's internals.
"""

from __future__ import annotations

import hashlib
import json
import math
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
