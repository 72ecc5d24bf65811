"""The model grid: which scikit-learn estimators an experiment tries, with which parameters.

A grid is plain data (YAML or a dict, validated by pydantic before anything runs)::

    - name: lr
      estimator: logistic_regression
      params: {C: [0.01, 0.1, 1.0]}
    - name: rf
      estimator: random_forest
      params: {n_estimators: [200], max_depth: [4, 8], min_samples_leaf: [5]}
      calibration: sigmoid          # optional: wrap in CalibratedClassifierCV

:func:`expand_grid` turns it into :class:`Candidate` objects (one per parameter combination,
each with a stable name such as ``lr[C=0.1]``), and :meth:`Candidate.build` makes a fresh,
unfitted estimator. Every candidate is a scikit-learn estimator, seeded through
``random_state`` (the seed is recorded on the candidate), fitted with ``n_jobs`` threads
(``EWS_THREADS``, default every core; an experiment runs its fits side by side instead,
each on one thread, :mod:`models.fitting`: HistGradientBoosting on two OpenMP threads is
dramatically slower on small shared machines). ``lr_hgb_vote`` is one candidate made of
both: the mean of a logistic regression's and a gradient boosting's probabilities (soft
voting). Logistic regression always sits in a Pipeline that
imputes missing values (mean: the median imputer sorts masked arrays and took 4 s per fit
on Chicago-sized data) and scales, so its coefficients are comparable and it never
sees a NaN; the tree models handle missing values natively.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

ESTIMATORS = (
    "logistic_regression",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "gradient_boosting",
    "lr_hgb_vote",
)
EstimatorKind = Literal[
    "logistic_regression",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "gradient_boosting",
    "lr_hgb_vote",
]


class GridError(ValueError):
    """A model grid that cannot be built (unknown estimator or parameter)."""


class ModelSpec(BaseModel):
    """One family of the grid: an estimator and the values to try for its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    estimator: EstimatorKind
    params: dict[str, list[Any]] = Field(default_factory=dict)
    calibration: Literal["sigmoid", "isotonic"] | None = None
    calibration_cv: int = Field(default=3, ge=2)

    @field_validator("params", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        """Allow a single value where a list of values is expected (``C: 1.0``)."""
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, list[Any]], info: Any) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"parameter {key!r} has no values to try")
            if key.rsplit("__", 1)[-1] in ("random_state", "n_jobs"):
                raise ValueError(
                    f"parameter {key!r} is set by the experiment (seed, EWS_THREADS), not the grid"
                )
        return value


class GridSpec(BaseModel):
    """The whole grid: a list of model families."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names in the grid: {', '.join(dupes)}")
        return value


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: a named estimator family with fixed parameters and seed."""

    name: str
    family: str
    estimator: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    calibration: str | None = None
    calibration_cv: int = 3

    def build(self, n_jobs: int | None = None) -> BaseEstimator:
        """A fresh, unfitted scikit-learn estimator for this candidate."""
        return make_estimator(
            self.estimator,
            self.params,
            seed=self.seed,
            n_jobs=n_jobs,
            calibration=self.calibration,
            calibration_cv=self.calibration_cv,
        )

    def describe(self) -> dict[str, Any]:
        """Plain data describing the candidate (for records, MLflow params and reports)."""
        return {
            "name": self.name,
            "family": self.family,
            "estimator": self.estimator,
            "params": dict(self.params),
            "seed": self.seed,
            "calibration": self.calibration,
        }


def _format_value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def candidate_name(family: str, params: dict[str, Any]) -> str:
    """A stable, readable name: ``family[key=value,...]`` with keys sorted."""
    if not params:
        return family
    inner = ",".join(f"{k}={_format_value(params[k])}" for k in sorted(params))
    return f"{family}[{inner}]"


def parse_grid(grid: GridSpec | dict[str, Any] | Sequence[dict[str, Any] | ModelSpec]) -> GridSpec:
    """Validate a grid given as a GridSpec, ``{"models": [...]}`` or a list of model dicts."""
    if isinstance(grid, GridSpec):
        return grid
    if isinstance(grid, dict):
        return GridSpec.model_validate(grid)
    return GridSpec.model_validate({"models": list(grid)})


def expand_grid(
    grid: GridSpec | dict[str, Any] | Sequence[dict[str, Any] | ModelSpec], seed: int = 0
) -> list[Candidate]:
    """Every parameter combination of every family, in grid order, each seeded with ``seed``.

    Each candidate is built once here (unfitted) so that a bad parameter name fails before any
    data is read, with a message naming the family and the parameter.
    """
    spec = parse_grid(grid)
    out: list[Candidate] = []
    for model in spec.models:
        keys = sorted(model.params)
        for values in itertools.product(*(model.params[k] for k in keys)):
            params = dict(zip(keys, values, strict=True))
            cand = Candidate(
                name=candidate_name(model.name, params),
                family=model.name,
                estimator=model.estimator,
                params=params,
                seed=seed,
                calibration=model.calibration,
                calibration_cv=model.calibration_cv,
            )
            cand.build()
            out.append(cand)
    return out


def _lr_pipeline(model: BaseEstimator) -> BaseEstimator:
    """Logistic regression as it always runs: mean-impute, scale, fit."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )


def _base_estimator(kind: str, seed: int, n_jobs: int) -> BaseEstimator:
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000, random_state=seed)
    if kind == "lr_hgb_vote":
        # Soft voting: the mean of the two members' probabilities. Both are fitted on log
        # loss, so their probabilities are on the same (roughly calibrated) scale and can be
        # averaged as they are. Parameters reach a member through its name: ``lr__model__C``,
        # ``hgb__max_depth``; ``weights`` weighs the two.
        from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
        from sklearn.linear_model import LogisticRegression

        return VotingClassifier(
            [
                ("lr", _lr_pipeline(LogisticRegression(max_iter=2000, random_state=seed))),
                ("hgb", HistGradientBoostingClassifier(random_state=seed)),
            ],
            voting="soft",
            n_jobs=None if n_jobs == 1 else n_jobs,
        )
    if kind == "random_forest":  # scikit-learn's, its trees packed in its files
        from models.ensembles import PackedRandomForestClassifier

        return PackedRandomForestClassifier(random_state=seed, n_jobs=n_jobs)
    if kind == "extra_trees":
        from models.ensembles import PackedExtraTreesClassifier

        return PackedExtraTreesClassifier(random_state=seed, n_jobs=n_jobs)
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(random_state=seed)
    if kind == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=seed)
    raise GridError(f"unknown estimator {kind!r}; choose one of: {', '.join(ESTIMATORS)}")


def make_estimator(
    kind: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    calibration: str | None = None,
    calibration_cv: int = 3,
) -> BaseEstimator:
    """An unfitted estimator of ``kind`` with ``params``, seeded, with ``n_jobs`` threads.

    ``n_jobs`` defaults to ``EWS_THREADS`` (settings, default every core). Logistic regression comes
    as ``Pipeline(impute mean, scale, LogisticRegression)``; ``lr_hgb_vote`` is a soft-voting
    ``VotingClassifier`` of that pipeline (``lr``) and a HistGradientBoostingClassifier
    (``hgb``), its parameters named through the members (``lr__model__C``,
    ``hgb__max_depth``, ``weights``); ``calibration`` wraps the
    estimator in ``CalibratedClassifierCV(method=calibration, cv=calibration_cv)``.
    """
    if n_jobs is None:
        from ews.settings import get_settings

        n_jobs = get_settings().threads
    est = _base_estimator(kind, seed, n_jobs)
    params = dict(params or {})
    valid = est.get_params()
    unknown = sorted(k for k in params if k not in valid)
    if unknown:
        raise GridError(
            f"{kind}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    est.set_params(**params)
    if kind == "logistic_regression":
        est = _lr_pipeline(est)
    if calibration is not None:
        from sklearn.calibration import CalibratedClassifierCV

        est = CalibratedClassifierCV(est, method=calibration, cv=calibration_cv)
    return est


def load_grid(path: str | Any) -> GridSpec:
    """Read and validate a grid from a YAML file (a list of models or ``{models: [...]}``)."""
    from pathlib import Path

    import yaml

    data = yaml.safe_load(Path(path).read_text())
    if isinstance(data, dict) and "grid" in data:
        data = data["grid"]
    try:
        return parse_grid(data)
    except Exception as exc:  # pydantic ValidationError: re-raise with the file name
        raise GridError(f"{path}: invalid model grid:\n{exc}") from exc


# How complex a candidate is, for the selection's tie rule (:func:`models.steps.decide`):
# among candidates whose validation scores are within one standard error of the best, the
# simplest is chosen. Across kinds: a linear model is simplest, then boosted trees (shallow,
# additive), then forests (many deep trees), then the LR+HGB vote (two models). Within a
# kind, by parameter, each compared where the grid varies it:
#   max_depth, max_leaf_nodes        smaller is simpler (None = unbounded = most complex)
#   min_samples_leaf                 larger is simpler (coarser leaves)
#   max_iter, n_estimators           fewer is simpler
#   learning_rate                    smaller is simpler (each step moves less)
#   C (logistic regression)          smaller is simpler (stronger regularization)
# then by name, so the order is total and stable.
KIND_SIMPLICITY = {
    "logistic_regression": 0,
    "hist_gradient_boosting": 1,
    "gradient_boosting": 1,
    "random_forest": 2,
    "extra_trees": 2,
    "lr_hgb_vote": 3,
}


def simplicity_key(candidate: Candidate) -> tuple[Any, ...]:
    """A sort key, simplest first, of a candidate (see :data:`KIND_SIMPLICITY`)."""
    inf = float("inf")

    def param(suffix: str, default: float) -> float:
        for key, value in candidate.params.items():
            if key.rsplit("__", 1)[-1] == suffix:
                if value is None:
                    return inf
                try:
                    return float(value)
                except (TypeError, ValueError):
                    return default
        return default

    return (
        KIND_SIMPLICITY.get(candidate.estimator, 4),
        param("max_depth", inf),
        param("max_leaf_nodes", inf),
        -param("min_samples_leaf", 1.0),
        param("max_iter", 100.0) + param("n_estimators", 100.0),
        param("learning_rate", 0.1),
        param("C", 1.0),
        candidate.name,
    )
