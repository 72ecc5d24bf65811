"""The named steps of an experiment; :func:`models.experiment.run_experiment` chains them.

Each step is a function of plain inputs with its own tests (tests/test_models_steps.py):

``check_config``      the config against the feature spec and the data, before any work
``plan_splits``       the outer splits per label, their inner validation splits, the
                      deployment split, and every as-of date and label request they need
``build_features``    the feature rows of every as-of date, once, and the model inputs
``build_labels``      every label the plan needs per knowledge cutoff, one query per label
``fit_candidates``    every grid candidate fitted on one split's training dates
``evaluate``          each fitted candidate's scores and metrics on the split's test date
``select``            the choice among candidates from their validation metrics
``compare_with_rules`` the rules fitted on the same training rows, and each model against
                      each rule at the rule's volume
``register``          lives in :mod:`models.experiment` (it needs the whole result)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ews.store import Snapshot
    from models.config import ExperimentConfig
    from models.fitting import Fitter
    from models.grid import Candidate
    from models.splitter import Split


class ConfigProblems(ValueError):
    """Every problem :func:`check_config` found, one per line."""


# --------------------------------------------------------------------------- check config


@dataclass(frozen=True)
class Checked:
    """What a valid config resolves to: the feature spec, cohort, candidates and labels."""

    spec: Any
    cohort: Any
    candidates: list[Candidate]
    labels: dict[str, Any]  # name -> features.labels.LabelSpec
    rules: list[tuple[str, str | dict[str, Any]]]  # (name, config item)


def rule_name(item: str | dict[str, Any]) -> str:
    return item if isinstance(item, str) else str(item.get("name", "custom_rule"))


def rule_columns(rule: Any, columns: Sequence[str]) -> list[str]:
    """The columns an unfitted rule needs that are not among ``columns`` (empty when it can be
    fitted on them); a needed family of columns is written as a pattern (``*_count``)."""
    from models.rules import BestSingleRule, PeerOutlierRule, ThresholdRule

    have = set(columns)
    missing: list[str] = []
    if isinstance(rule, ThresholdRule) and rule.conditions is not None:
        missing = [str(c["column"]) for c in rule.conditions if isinstance(c.get("column"), str)]
    elif isinstance(rule, PeerOutlierRule):
        ends = [f"_{rule.peer}_pct"] if rule.pct is not None else []
        ends += [f"_{rule.peer}_z"] if rule.z is not None else []
        if rule.indicators is None:
            if not any(c.endswith(tuple(ends)) for c in columns):
                return [" or ".join(f"*{e}" for e in ends)]
        else:
            missing = [f"{ind}{e}" for ind in rule.indicators for e in ends]
    elif isinstance(rule, BestSingleRule):
        if rule.columns is not None:
            missing = [c for c in rule.columns if isinstance(c, str)]
        elif not any(c.endswith("_count") for c in columns):
            return ["*_count"]
    return [c for c in dict.fromkeys(missing) if c not in have]


def _data_values(source: Snapshot | Path, table: str, column: str) -> set[str] | None:
    """The distinct values of one column of the package (None when the table is absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = source if isinstance(source, Path) else source.path
    path = Path(folder) / f"{table}.parquet"
    if not path.is_file():
        return None
    # read as a dictionary column: the distinct values are the dictionary entries the indices
    # use (a few) rather than a million strings (4x less time on triage-peer's events)
    col = pq.read_table(path, columns=[column], read_dictionary=[column]).column(column)
    values: list[Any] = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            values += chunk.dictionary.take(pc.unique(chunk.indices).drop_null()).to_pylist()
        else:
            values += pc.unique(chunk).to_pylist()
    return {str(v) for v in values if v is not None}


def check_config(config: ExperimentConfig, source: Snapshot | Path | None) -> Checked:
    """Resolve the config's spec, cohort, grid, labels and rules and check them against each
    other and against the data, before any work: every rule's columns are columns of the
    feature spec, every label looks no further ahead than the splitter's label window and
    names event types the data hold, the cohort's assignment kind is in the data, and
    ``label_lag`` names known labels. Raises :class:`ConfigProblems` listing every problem."""
    from features.durations import parse_duration as label_duration
    from models.config import cohort_spec, label_spec, load_feature_spec
    from models.grid import expand_grid
    from models.rules import make_rule
    from models.splitter import parse_duration

    problems: list[str] = []
    spec = cohort = None
    try:
        spec = load_feature_spec(config.feature_spec)
    except (ValueError, OSError) as exc:
        problems.append(f"feature_spec: {exc}")
    try:
        cohort = cohort_spec(config.cohort)
    except (ValueError, TypeError) as exc:
        problems.append(f"cohort: {exc}")
    candidates = expand_grid(config.grid, seed=config.seed)
    labels: dict[str, Any] = {}
    for name, item in zip(config.label_names(), config.labels, strict=True):
        try:
            labels[name] = label_spec(item)
        except ValueError as exc:
            problems.append(str(exc))
    limit = date(2000, 1, 1) + parse_duration(config.splitter.label_window, "label_window")
    event_types = _data_values(source, "events", "event_type") if source is not None else None
    for name, ls in labels.items():
        if label_duration(ls.window).after(date(2000, 1, 1)) > limit:
            problems.append(
                f"label {name!r} looks {ls.window} ahead, beyond the splitter's label_window "
                f"{config.splitter.label_window}: training labels would reach past the test date"
            )
        if event_types is not None:
            absent = sorted({c.event_type for c in ls.any_of} - event_types)
            if len(absent) == len(ls.any_of):
                problems.append(
                    f"label {name!r}: the data hold no {' or '.join(absent)} events, so it "
                    "would be 0 for every officer"
                )
    lag = config.splitter.label_lag
    if isinstance(lag, dict):
        unknown = sorted(set(lag) - set(config.label_names()))
        if unknown:
            problems.append(f"splitter.label_lag: unknown labels {', '.join(unknown)}")
    if cohort is not None and cohort.require_assignment and source is not None:
        kinds = _data_values(source, "assignments", "kind") or set()
        if cohort.require_assignment not in kinds:
            problems.append(
                f"cohort: require_assignment {cohort.require_assignment!r}, but the data hold "
                f"no such assignments (kinds: {', '.join(sorted(kinds)) or 'none'})"
            )
    rules: list[tuple[str, str | dict[str, Any]]] = []
    columns = list(spec.column_names) if spec is not None else []
    for item in config.rules:
        try:
            rule = make_rule(item)
        except (ValueError, TypeError) as exc:
            problems.append(f"rules: {exc}")
            continue
        name = rule_name(item)
        if spec is not None:
            missing = rule_columns(rule, columns)
            if missing:
                problems.append(
                    f"rule {name!r} needs {', '.join(missing)}, which feature spec "
                    f"{spec.name!r} does not build"
                )
        rules.append((name, item))
    if problems:
        raise ConfigProblems("\n".join(problems))
    return Checked(spec=spec, cohort=cohort, candidates=candidates, labels=labels, rules=rules)


# --------------------------------------------------------------------------- plan splits


@dataclass
class Plan:
    """Every split the experiment runs, per label, and what they need."""

    splits: dict[str, list[Split]]
    inner: dict[str, dict[date, list[Split]]]
    deploy: dict[str, Split | None] = field(default_factory=dict)
    deploy_inner: dict[str, list[Split]] = field(default_factory=dict)

    @property
    def selects(self) -> bool:
        """Whether candidates are chosen (on inner validation splits) at all."""
        return any(v for per in self.inner.values() for v in per.values())

    def all_splits(self, label: str) -> list[Split]:
        """Outer, inner and deployment splits of one label (deployment first)."""
        deploy = self.deploy.get(label)
        out = ([deploy] if deploy is not None else []) + self.deploy_inner.get(label, [])
        for sp in self.splits[label]:
            out += [sp, *self.inner[label][sp.test_as_of]]
        return out

    def feature_dates(self) -> list[date]:
        """Every as-of date a split trains or is tested on (not the deployment date itself,
        at which nothing is evaluated)."""
        dates: set[date] = set()
        for label in self.splits:
            deploy = self.deploy.get(label)
            for sp in self.all_splits(label):
                dates.update(sp.train_as_of)
                if sp is not deploy:
                    dates.add(sp.test_as_of)
        return sorted(dates)

    def training_dates(self) -> set[date]:
        """The training dates of the outer splits (what decides which columns are used)."""
        return {d for per in self.splits.values() for sp in per for d in sp.train_as_of}

    def label_requests(self) -> dict[tuple[str, date | None], set[date]]:
        """(label, knowledge cutoff) -> the as-of dates whose labels are needed with it."""
        out: dict[tuple[str, date | None], set[date]] = {}
        for label in self.splits:
            deploy = self.deploy.get(label)
            for sp in self.all_splits(label):
                out.setdefault((label, sp.label_known_by), set()).update(sp.train_as_of)
                if sp is not deploy:
                    out.setdefault((label, sp.test_label_known_by), set()).add(sp.test_as_of)
        return out

    def n_fits(self, n_candidates: int) -> int:
        """How many candidate fits the plan makes (for progress estimates)."""
        n = 0
        for label, per in self.splits.items():
            for sp in per:
                n += n_candidates * (1 + len(self.inner[label][sp.test_as_of]))
            n += n_candidates * len(self.deploy_inner.get(label, []))
            n += int(self.deploy.get(label) is not None)
        return n


def deployment_split(splitter: Any, end: date, n_inner: int) -> tuple[Split | None, list[Split]]:
    """The split a deployed model is trained on: as of the day after the data end ``end``,
    training dates laid out by the same rules (label windows ending by then, labels as known
    then), with ``n_inner`` inner validation splits to choose the model. ``(None, [])`` if
    the data are too short."""
    import dataclasses

    day = end + timedelta(days=1)
    try:
        deploy_splitter = dataclasses.replace(splitter, test_dates=[day])
        (deploy,) = deploy_splitter.split()
        return deploy, deploy_splitter.inner_splits(deploy, n_inner)
    except ValueError:
        return None, []


def plan_splits(
    config: ExperimentConfig,
    source: Snapshot | Path,
    labels: Sequence[str],
    deploy: bool,
) -> Plan:
    """Lay out, per label (a label may have its own label lag), the outer splits, each with
    ``splitter.inner_splits`` validation splits inside its training years (none when 0: no
    selection), and, with ``deploy`` and selection on, the deployment split."""
    from models.config import ExperimentError, data_end, make_splitter

    n_inner = config.splitter.inner_splits
    plan = Plan(splits={}, inner={})
    for label in labels:
        splitter = make_splitter(config, source, label)
        try:
            splits = splitter.split()
            inner = {
                sp.test_as_of: splitter.inner_splits(sp, n_inner) if n_inner else []
                for sp in splits
            }
        except ValueError as exc:
            raise ExperimentError(f"splitter (label {label}): {exc}") from exc
        for sp in splits:  # the splitter's promise, checked where it matters
            if sp.train_label_end > sp.test_as_of:
                raise ExperimentError(
                    f"training label window ends {sp.train_label_end} after {sp.test_as_of}"
                )
        plan.splits[label], plan.inner[label] = splits, inner
        if deploy and n_inner:
            d, d_inner = deployment_split(splitter, data_end(source), n_inner)
            plan.deploy[label], plan.deploy_inner[label] = d, d_inner
    return plan


# --------------------------------------------------------------------------- build features


def _day(values: Any) -> Any:
    """As-of dates as datetime64[ns] at midnight, whatever unit they came in (without the
    conversion cache, whose check reads the column value by value as Timestamps)."""
    import pandas as pd

    return pd.to_datetime(values, cache=False).astype("datetime64[ns]")


def _ts(d: date) -> Any:
    import pandas as pd

    return pd.Timestamp(d)


@dataclass
class Features:
    """The feature rows of every planned date and the columns models may use."""

    frame: pd.DataFrame
    columns: list[str]
    left_out: list[str]
    notes: list[str] = field(default_factory=list)  # features without information, to print


def build_features(
    source: Snapshot | Path,
    plan: Plan,
    spec: Any,
    cohort: Any,
    prebuilt: pd.DataFrame | None = None,
) -> Features:
    """Build the features ONCE for every date of ``plan`` (the code path scoring uses), or
    check a ``prebuilt`` frame covers them; the model inputs are the numeric columns (never a
    protected attribute) with a value on some outer training date."""
    from features.build import build_features as build
    from models.config import ExperimentError, numeric_feature_columns

    dates = plan.feature_dates()
    frame = build(source, dates, spec=spec, cohort=cohort) if prebuilt is None else prebuilt
    frame = frame.copy()
    frame["officer_id"] = frame["officer_id"].astype(str)
    frame["as_of_date"] = _day(frame["as_of_date"])
    have = {d.date() for d in frame["as_of_date"].drop_duplicates()}
    missing = [d.isoformat() for d in dates if d not in have]
    if missing:
        from features.diagnostics import empty_cohort_reasons

        why = empty_cohort_reasons(source, [date.fromisoformat(d) for d in missing], cohort)
        raise ExperimentError(
            f"no feature rows for as-of dates {', '.join(missing)}"
            + "".join(f"\n  {reason}" for reason in why)
        )
    cols = numeric_feature_columns(frame)
    train_days = {_ts(d) for d in plan.training_dates()}
    training_rows = frame[frame["as_of_date"].isin(train_days)]
    empty = [c for c in cols if training_rows[c].isna().all()]
    cols = [c for c in cols if c not in empty]
    if not cols:
        raise ExperimentError("no numeric feature column has any value")
    from features.diagnostics import concept_lines, degenerate_columns

    names = [c.name for c in spec.columns]
    # a spec concept no event matches, with its cause, then the columns without information
    degenerate = degenerate_columns(frame, names)
    notes = concept_lines(source, spec) + degenerate.lines(len(names))
    also = [c for c in empty if c not in degenerate.empty]  # the others are named above
    if also:
        notes.append(f"left out (no value on any training date): {', '.join(also)}")
    return Features(frame=frame, columns=cols, left_out=empty, notes=notes)


# --------------------------------------------------------------------------- build labels


@dataclass
class Labels:
    """Labels per (label, knowledge cutoff), officer and as-of date."""

    frames: dict[tuple[str, date | None], pd.DataFrame]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def get(self, label: str, dates: Sequence[date], known_by: date | None) -> pd.DataFrame:
        from models.config import ExperimentError

        frame = self.frames.get((label, known_by))
        if frame is None:
            raise ExperimentError(f"internal: labels {label} known by {known_by} not built")
        return frame[frame["as_of_date"].isin({_ts(d) for d in dates})]


def build_labels(source: Snapshot | Path, plan: Plan, specs: dict[str, Any], cohort: Any) -> Labels:
    """Every label the plan needs, per (label, knowledge cutoff): training labels count only
    what was known at their split's cutoff (label maturity), validation labels what was known
    at the outer test date, outer test labels everything in the data. One query per label
    computes all its cutoffs (:func:`features.labels.build_label_sets`)."""
    import features.labels

    frames: dict[tuple[str, date | None], pd.DataFrame] = {}
    calls: list[dict[str, Any]] = []
    by_label: dict[str, dict[date | None, list[date]]] = {}
    for (label, known_by), dates in sorted(
        plan.label_requests().items(), key=lambda kv: (kv[0][0], kv[0][1] or date.max)
    ):
        by_label.setdefault(label, {})[known_by] = sorted(dates)
    for label, requests in by_label.items():
        built = features.labels.build_label_sets(source, requests, specs[label], cohort=cohort)
        for known_by, ordered in requests.items():
            new = built[known_by][["officer_id", "as_of_date", "label"]].copy()
            new["as_of_date"] = _day(new["as_of_date"])
            new["officer_id"] = new["officer_id"].astype(str)
            frames[(label, known_by)] = new
            calls.append(
                {
                    "label": label,
                    "known_by": known_by.isoformat() if known_by else None,
                    "as_of": [d.isoformat() for d in ordered],
                }
            )
    return Labels(frames=frames, calls=calls)


# --------------------------------------------------------------------------- fit candidates


def join(features: pd.DataFrame, labels: pd.DataFrame, dates: Sequence[date]) -> pd.DataFrame:
    """Feature rows at ``dates`` with their label (inner join on officer and as-of date)."""
    from models.config import ExperimentError

    wanted = {_ts(d) for d in dates}
    rows = features[features["as_of_date"].isin(wanted)]
    out = rows.merge(labels, on=["officer_id", "as_of_date"], how="inner", validate="1:1")
    used = {d.date() for d in out["as_of_date"].drop_duplicates()}
    if not used <= set(dates):  # defensive: rows only from the dates asked for
        raise ExperimentError("internal: rows from unexpected as-of dates in a split")
    return out


def fit_columns(train: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns with at least one value in this training set. A column that is empty in
    one fit's training rows (an early split, a sparse window) teaches that fit nothing, and
    HistGradientBoosting fails on it; it is left out of that fit only."""
    return [c for c in columns if train[c].notna().any()]


def matrix(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].astype("float64")


def dense_matrix(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """:func:`matrix` held as one float64 array: the same values in the same layout, but
    each scikit-learn call on it (every rule's fit, predict and ranking, every model's
    predict) reads that array instead of assembling it again from the frame's blocks."""
    import numpy as np
    import pandas as pd

    picked = frame[columns]
    if all(isinstance(t, np.dtype) and t.kind in "biuf" for t in picked.dtypes):
        values = picked.to_numpy(dtype="float64")  # one copy instead of three
    else:  # nullable or other extension columns: as matrix converts them
        values = matrix(frame, columns).to_numpy()
    return pd.DataFrame(values, index=frame.index, columns=columns, copy=False)


@dataclass
class SplitFit:
    """One split's training and test rows and the candidates fitted on the training rows
    (``models`` is empty when the training labels have a single class)."""

    split: Split
    label: str
    train: pd.DataFrame
    test: pd.DataFrame
    columns: list[str]
    models: dict[str, Any]

    @cached_property
    def X_train(self) -> pd.DataFrame:
        return dense_matrix(self.train, self.columns)

    @cached_property
    def X_test(self) -> pd.DataFrame:
        return dense_matrix(self.test, self.columns)

    @property
    def y_train(self) -> np.ndarray:
        return self.train["label"].to_numpy()

    @property
    def y_test(self) -> np.ndarray:
        return self.test["label"].to_numpy()

    @property
    def single_class(self) -> bool:
        import numpy as np

        return len(np.unique(self.y_train)) < 2


def fit_candidates(
    split: Split,
    label: str,
    features: Features,
    labels: Labels,
    candidates: Sequence[Candidate],
    on_fit: Callable[[str], None] | None = None,
    fitter: Fitter | None = None,
) -> SplitFit:
    """Fit every candidate on the split's training dates, labels as known at its cutoff; the
    test rows carry the labels as known at ``split.test_label_known_by``. With a ``fitter``
    (:class:`models.fitting.Fitter`, one per run) a training set fitted before in the run is
    not fitted again; without one, every candidate is fitted here, on ``EWS_THREADS``."""
    from models.fitting import Fitter

    frame = features.frame
    train = join(
        frame, labels.get(label, split.train_as_of, split.label_known_by), split.train_as_of
    )
    test = join(
        frame, labels.get(label, [split.test_as_of], split.test_label_known_by), [split.test_as_of]
    )
    fit = SplitFit(split, label, train, test, fit_columns(train, features.columns), {})
    if fitter is None:
        fitter = Fitter(features, labels, candidates, cache=False, on_fit=on_fit)
    if fit.single_class or len(test) == 0:
        fitter.skip(label, split, candidates)
        return fit
    _, fit.models = fitter.models(label, split, candidates, train=train)
    return fit


# --------------------------------------------------------------------------- evaluate


@dataclass
class Evaluation:
    """One fitted candidate's scores on the test rows and its metrics."""

    score: np.ndarray
    metrics: dict[str, Any]


def metric(metrics: dict[str, Any], key: str) -> Any:
    value = metrics.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def evaluate(
    fit: SplitFit, ks: Sequence[float], seed: int, threads: int | None = None
) -> dict[str, Evaluation]:
    """Score the test rows with every fitted candidate: precision and recall at each k%,
    ROC AUC, average precision, Brier. Empty when nothing was fitted.

    The candidates are scored ``threads`` at a time (default ``EWS_THREADS``), each on one
    thread as always (a forest set to one job sums its trees in their order), so every
    score is the same bit for bit as one after another; their prediction code releases the
    GIL for most of its work (a forest's trees, the linear models' products)."""
    import numpy as np

    from models.metrics import evaluate_scores

    out: dict[str, Evaluation] = {}
    if not fit.models:
        return out
    X, y = fit.X_test, fit.y_test

    def one(model: Any) -> Evaluation:
        score = np.asarray(model.predict_proba(X)[:, 1], dtype=float)
        return Evaluation(score, evaluate_scores(y, score, ks=tuple(ks), seed=seed))

    if threads is None:
        from models.fitting import default_threads

        threads = default_threads()
    workers = max(1, min(int(threads), len(fit.models)))
    with _one_openmp_thread():  # once for all: the limit is the process's, not a thread's
        if workers == 1:
            evaluations = [one(model) for model in fit.models.values()]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="ews-evaluate") as pool:
                evaluations = list(pool.map(one, fit.models.values()))
    return dict(zip(fit.models, evaluations, strict=True))


def _one_openmp_thread() -> Any:
    """Predict on one OpenMP thread. HistGradientBoosting scores each row on its own, so the
    number of threads changes no score; but it meets every thread at a barrier after each of
    its trees, and on a busy machine one descheduled thread holds the others there (2.4 s
    per predict instead of 0.1 s on the 13,000-officer agency at load 8). BLAS (logistic
    regression's product, whose sums the thread count does order) is left as it is."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def predictions(fit: SplitFit, evaluations: dict[str, Evaluation]) -> pd.DataFrame:
    """Every test row's score per candidate: officer_id, as_of_date, label name, method,
    score, outcome (the label as known at evaluation)."""
    import pandas as pd

    parts = [
        pd.DataFrame(
            {
                "officer_id": fit.test["officer_id"].to_numpy(),
                "as_of_date": fit.test["as_of_date"].to_numpy(),
                "label": fit.label,
                "method": name,
                "score": ev.score,
                "outcome": fit.y_test.astype("int8"),
            }
        )
        for name, ev in evaluations.items()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# --------------------------------------------------------------------------- select


TIE_RULE = "simplest within one standard error of the best"


@dataclass
class Decision:
    """One choice among the grid and how near it was.

    ``best`` has the highest selection score (mean - penalty x std of the metric over the
    validation splits); ``se`` is the noise of that score: the standard error of the best
    candidate's metric over the splits (sample standard deviation / sqrt(splits); None with a
    single split, where it cannot be measured). Every candidate whose score is within ``se``
    of the best is ``tied`` with it, and the simplest of them (:func:`models.grid.
    simplicity_key`) is ``chosen``. ``margin`` is the best's lead over the next candidate;
    ``gap`` how far the chosen one's score is below the best's (0 when it is the best)."""

    chosen: str | None
    best: str | None = None
    best_score: float | None = None
    runner_up: str | None = None
    margin: float | None = None
    se: float | None = None
    tied: list[str] = field(default_factory=list)
    gap: float | None = None
    decided_by: str = "no selection"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": TIE_RULE,
            "best": self.best,
            "best_score": self.best_score,
            "runner_up": self.runner_up,
            "margin": self.margin,
            "se": self.se,
            "tied": self.tied,
            "gap": self.gap,
            "decided_by": self.decided_by,
        }


def describe_decision(chosen: str | None, d: dict[str, Any] | None) -> str:
    """A choice and its margin in words, from a :meth:`Decision.as_dict` record."""
    if not d or d.get("best") is None:
        return f"{chosen}" if chosen else "no choice"

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lead = (
        f"margin {f(d.get('margin'))} over the next, {d.get('runner_up')}"
        if d.get("runner_up")
        else "the only candidate with a score"
    )
    noise = (
        f"noise (one standard error) {f(d.get('se'))}"
        if d.get("se") is not None
        else ("noise not measurable with one validation split")
    )
    if chosen != d["best"]:
        return (
            f"{chosen}: the simplest of {len(d['tied'])} candidates within one standard error "
            f"of the best, {d['best']} ({lead}; {noise}; {chosen} is {f(d.get('gap'))} below)"
        )
    if len(d.get("tied") or []) > 1:
        return f"{chosen}: best and simplest of {len(d['tied'])} within the noise ({lead}; {noise})"
    return f"{chosen}: best, outside the noise ({lead}; {noise})"


def decide(
    per_split: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    metric_name: str,
    penalty: float,
    simplest_first: Sequence[str] | None = None,
) -> tuple[Decision, dict[str, list[float | None]]]:
    """Choose among ``names`` from their metric on each validation split (``per_split``: one
    mapping name -> metric value or None per split): the best by mean minus ``penalty`` x
    standard deviation, or, among those within one standard error of the best, the first in
    ``simplest_first`` (default: ``names``' order). See :class:`Decision`. No validation
    split: no choice; no usable value: the first name."""
    import numpy as np

    from models.metrics import selection_scores

    scores: dict[str, list[float | None]] = {n: [v.get(n) for v in per_split] for n in names}
    if not per_split:
        return Decision(chosen=None), scores
    usable = {n: [{metric_name: v} for v in vals if v is not None] for n, vals in scores.items()}
    usable = {k: v for k, v in usable.items() if v}
    if not usable:
        return Decision(chosen=names[0], decided_by="no candidate had a usable value"), scores
    table = selection_scores(usable, metric=metric_name, penalty=penalty)
    table = table[table["score"].notna()].reset_index(drop=True)
    if table.empty:
        return Decision(chosen=names[0], decided_by="no candidate had a usable value"), scores
    best = str(table["model"].iloc[0])
    best_score = float(table["score"].iloc[0])
    values = np.array([v for v in scores[best] if v is not None], dtype=float)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    within = set(table.loc[table["score"] >= best_score - (se or 0.0) - 1e-12, "model"])
    order = list(simplest_first or names)
    tied = [n for n in order if n in within] + sorted(within - set(order))
    chosen = tied[0]
    runner = table.iloc[1] if len(table) > 1 else None
    decided = (
        "best, by more than the noise"
        if len(tied) == 1 and se is not None
        else "best (noise not measurable with one validation split)"
        if se is None
        else TIE_RULE
    )
    chosen_score = float(table.loc[table["model"] == chosen, "score"].iloc[0])
    return (
        Decision(
            chosen=chosen,
            best=best,
            best_score=best_score,
            runner_up=None if runner is None else str(runner["model"]),
            margin=None if runner is None else best_score - float(runner["score"]),
            se=se,
            tied=tied,
            gap=best_score - chosen_score,
            decided_by=decided,
        ),
        scores,
    )


def select(
    per_split: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    metric_name: str,
    penalty: float,
    simplest_first: Sequence[str] | None = None,
) -> tuple[str | None, dict[str, list[float | None]]]:
    """The chosen name of :func:`decide`, and the scores."""
    decision, scores = decide(per_split, names, metric_name, penalty, simplest_first)
    return decision.chosen, scores


def validation_metrics(
    inner: Sequence[Split],
    label: str,
    features: Features,
    labels: Labels,
    candidates: Sequence[Candidate],
    config: ExperimentConfig,
    on_fit: Callable[[str], None] | None = None,
    fitter: Fitter | None = None,
) -> tuple[list[dict[str, Any | None]], list[dict[str, Any]]]:
    """Fit and evaluate every candidate on each inner validation split (training years only);
    per split, name -> the selection metric, and a description of the splits used. The
    splits' fits run as one parallel batch (``fitter``: see :func:`fit_candidates`); only the
    validation rows are built here, the training rows only where something is fitted."""
    from models.fitting import Fitter

    if fitter is None:
        fitter = Fitter(features, labels, candidates, cache=False, on_fit=on_fit)
    else:
        fitter.prefit([(label, sp) for sp in inner])
    per_split: list[dict[str, Any | None]] = []
    used: list[dict[str, Any]] = []
    for sp in inner:
        test = join(
            features.frame,
            labels.get(label, [sp.test_as_of], sp.test_label_known_by),
            [sp.test_as_of],
        )
        fit = SplitFit(sp, label, test.iloc[:0], test, [], {})
        if len(test) == 0:
            fitter.skip(label, sp, candidates)
        else:
            entry, fit.models = fitter.models(label, sp, candidates)
            fit.columns = entry.columns
        evals = evaluate(fit, config.ks, config.seed)
        per_split.append(
            {
                c.name: metric(evals[c.name].metrics, config.selection_metric)
                if c.name in evals
                else None
                for c in candidates
            }
        )
        used.append(
            {
                "validation_date": sp.test_as_of.isoformat(),
                "train_as_of": [d.isoformat() for d in sp.train_as_of],
                "train_labels_known_by": _iso(sp.label_known_by),
                "validation_labels_known_by": _iso(sp.test_label_known_by),
            }
        )
    return per_split, used


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


# --------------------------------------------------------------------------- compare with rules


def counts(y: Any, flags: Any) -> dict[str, Any]:
    """flagged, tp, fp, precision and recall of a set of flags."""
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


@dataclass
class RuleResult:
    """One rule fitted on a split's training rows, its flags and metrics on the test rows."""

    name: str
    rule: Any
    flags: np.ndarray
    metrics: dict[str, Any]
    error: str | None = None
    condition: str | None = None  # the rule in words as fitted (best_single: what it learned)
    idle: list[str] = field(default_factory=list)  # its conditions that never hold here


def idle_conditions(rule: Any, frames: Sequence[pd.DataFrame], descriptions: Any) -> list[str]:
    """The conditions of a fitted rule that hold for no row of ``frames``, in words (the
    complaint half of the CMPD rule on force-only data, say)."""
    import numpy as np

    from models.rules import OPS, describe_condition

    out = []
    for c in getattr(rule, "conditions_", []):
        values = [np.asarray(f.iloc[:, c["index"]], dtype=float) for f in frames]
        if not any(OPS[c["op"]](v[~np.isnan(v)], c["value"]).any() for v in values):
            out.append(describe_condition(c, descriptions))
    return out


def rule_notes(rules: Sequence[RuleResult], where: str) -> list[str]:
    """Warnings about the rules of one split: conditions that cannot fire on the data, and
    rules that flag exactly the same officers."""
    notes = [
        f"{where}: rule {r.name} cannot fire on these data for: {'; '.join(r.idle)}"
        for r in rules
        if r.idle
    ]
    fitted = [r for r in rules if r.rule is not None and r.flags.any()]
    for i, a in enumerate(fitted):
        for b in fitted[i + 1 :]:
            if (a.flags == b.flags).all():
                notes.append(f"{where}: rules {a.name} and {b.name} flag the same officers")
    return notes


def fit_rules(
    fit: SplitFit,
    rules: Sequence[tuple[str, str | dict[str, Any]]],
    ks: Sequence[float],
    descriptions: Any = None,
) -> list[RuleResult]:
    """Fit each rule on the split's training rows (only ``best_single`` learns anything) and
    flag the test rows. A rule that cannot be fitted here (a column empty on these training
    dates) is kept with its error instead of stopping the experiment. ``descriptions``
    (column -> words, from the feature spec) word each rule's condition as fitted."""
    import numpy as np

    from models.metrics import evaluate_scores
    from models.rules import _RuleBase, make_rule

    out: list[RuleResult] = []
    X_train, X_test, y_train = fit.X_train, fit.X_test, fit.y_train
    for name, item in rules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                rule = make_rule(item).fit(X_train, y_train)
        except ValueError as exc:
            out.append(RuleResult(name, None, np.zeros(len(X_test), bool), {}, str(exc)))
            continue
        if type(rule).predict is _RuleBase.predict:
            # ranked once: the rule flags where its ranking score is positive (its predict)
            score = np.asarray(rule.decision_function(X_test), dtype=float)
            flags = np.where(score > 0, rule.classes_[1], rule.classes_[0]).astype(bool)
        else:
            flags = np.asarray(rule.predict(X_test)).astype(bool)
            if hasattr(rule, "decision_function"):
                score = np.asarray(rule.decision_function(X_test), dtype=float)
            else:
                score = np.asarray(rule.predict_proba(X_test)[:, 1], dtype=float)
        metrics = evaluate_scores(fit.y_test, score, ks=tuple(ks))
        out.append(
            RuleResult(
                name,
                rule,
                flags,
                metrics,
                condition=rule.describe(descriptions),
                idle=idle_conditions(rule, [X_train, X_test], descriptions),
            )
        )
    return out


VS_RULE_KEYS = (
    "flagged",
    "rule_tp",
    "rule_fp",
    "model_tp",
    "model_fp",
    "extra_tp",
    "fewer_fp",
    "pct_more_tp",
    "pct_fewer_fp",
    "ci95_pct_more_tp",
    "ci95_pct_fewer_fp",
)


def compare_with_rules(
    y: Any,
    score: Any,
    rules: Sequence[RuleResult],
    n_boot: int,
    seed: int,
    intervals: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The model against each fitted rule at the rule's volume (the model flags as many as
    the rule): extra true positives, fewer false positives, bootstrap intervals when
    ``n_boot`` > 0 (``intervals``: rule name -> the intervals already drawn for this model
    by :func:`models.metrics.bootstrap_intervals` with the same ``n_boot`` and ``seed``;
    drawn here otherwise, every rule from the same resamples)."""
    from models.metrics import bootstrap_intervals, compare_to_rule

    fitted = [r for r in rules if r.rule is not None]
    if n_boot and intervals is None:
        flags = {r.name: r.flags for r in fitted}
        found = bootstrap_intervals(y, {"model": score}, flags, n_boot, seed, auc=False)
        intervals = found["model"]["rules"]
    out: dict[str, dict[str, Any]] = {}
    for r in fitted:
        c = compare_to_rule(y, score, r.flags, n_boot=0, seed=seed)
        if n_boot and c["flagged"] and intervals is not None:
            c.update(intervals[r.name])
        out[r.name] = {k: c.get(k) for k in VS_RULE_KEYS}
    return out


def flag_count(n: int, pct: float) -> int:
    """How many officers the top ``pct`` percent of ``n`` is: ``ceil``, at least one."""
    return max(1, math.ceil(pct / 100.0 * n - 1e-9)) if n else 0


def split_records(
    fit: SplitFit,
    evaluations: dict[str, Evaluation],
    rules: Sequence[RuleResult],
    candidates: Sequence[Candidate],
    chosen: str | None,
    config: ExperimentConfig,
    deployed: str | None = None,
) -> list[dict[str, Any]]:
    """The result records of one split: one per rule, then one per candidate (with its
    equal-volume comparison with every rule; bootstrap intervals, of that comparison and of
    the AUC, for the split's choice and for the ``deployed`` config, the one registered)."""
    from models.metrics import bootstrap_intervals, top_flags

    sp, y_train, y_test = fit.split, fit.y_train, fit.y_test
    base = {
        "test_date": sp.test_as_of.isoformat(),
        "label": fit.label,
        "n_train": len(fit.train),
        "n_test": len(fit.test),
        "train_prevalence": float(y_train.mean()) if len(y_train) else None,
        "test_prevalence": float(y_test.mean()) if len(y_test) else None,
        "train_dates_used": sorted(
            d.date().isoformat() for d in fit.train["as_of_date"].drop_duplicates()
        ),
        "train_labels_known_by": _iso(sp.label_known_by),
    }
    # the bootstrap intervals of the split's choice and of the deployed config: every
    # interval (AUC, and each rule's comparison) drawn from the same resamples, in one pass
    boot = [c.name for c in candidates if c.name in (chosen, deployed) and c.name in evaluations]
    intervals = (
        bootstrap_intervals(
            y_test,
            {name: evaluations[name].score for name in boot},
            {r.name: r.flags for r in rules if r.rule is not None},
            config.n_boot,
            config.seed,
        )
        if boot and config.n_boot
        else {}
    )
    records: list[dict[str, Any]] = []
    for r in rules:
        rec = {**base, "method": r.name, "kind": "rule", "selected": False}
        if r.rule is None:
            records.append({**rec, "error": r.error, "vs_rules": {}})
            continue
        records.append(
            {
                **rec,
                **counts(y_test, r.flags),
                "condition": r.condition,
                "auc": metric(r.metrics, "roc_auc"),
                "ap": metric(r.metrics, "average_precision"),
                "brier": None,
                "metrics": r.metrics,
                "vs_rules": {},
            }
        )
    for cand in candidates:
        rec = {
            **base,
            "method": cand.name,
            "kind": "model",
            "selected": cand.name == chosen,
            "deployed": cand.name == deployed,
            "candidate": cand.describe(),
        }
        ev = evaluations.get(cand.name)
        if ev is None:
            rec.update(error="training labels have a single class", vs_rules={})
            records.append(rec)
            continue
        n_boot = config.n_boot if cand.name in (chosen, deployed) else 0
        drawn = intervals.get(cand.name) if n_boot else None
        ci = drawn["auc_ci95"] if drawn else None
        flags = top_flags(
            ev.score, flag_count(len(ev.score), config.flag_top_pct), seed=config.seed
        )
        rec.update(
            counts(y_test, flags),
            auc=metric(ev.metrics, "roc_auc"),
            auc_ci95=list(ci) if ci is not None else None,
            ap=metric(ev.metrics, "average_precision"),
            brier=metric(ev.metrics, "brier"),
            metrics=ev.metrics,
            vs_rules=compare_with_rules(
                y_test, ev.score, rules, n_boot, config.seed, drawn["rules"] if drawn else None
            ),
        )
        records.append(rec)
    return records
