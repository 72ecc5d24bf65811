"""The status quo as scikit-learn estimators: threshold rules and peer-outlier rules.

Most agencies flag officers with rules such as "3 or more complaints in 180
days". Written as estimators, a rule is trained, scored, evaluated, compared
and registered exactly like a model, and it explains itself: the conditions
that fired for an officer are the reasons.

* :class:`ThresholdRule`: conditions ``column op value`` combined with ``any`` or
  ``all``. Columns are named (DataFrame input) or given by position (array input).
* :class:`PeerOutlierRule`: "top x% (percentile >= p) or z >= k among the
  officer's unit (or rank) peers", on the precomputed peer columns
  ``{indicator}_{unit|rank}_{pct|z}``.
* :class:`BestSingleRule`: learns the single "count >= k" rule that does best on
  the training data (the strongest simple rule an analyst could have picked).
* :data:`RULE_PRESETS` and :func:`make_rule`: rules from practice and from config.

Ranking: ``decision_function`` orders officers first by how many conditions
fired, then by how far they are past (or short of) the thresholds, so a rule can
be compared with a model at equal list sizes. It is positive exactly when the
rule flags. ``predict_proba`` is a monotone map of it (0.5 at the flag line),
a ranking score, not a calibrated probability.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from models.inputs import check_no_protected

__all__ = [
    "OPS",
    "RULE_PRESETS",
    "RULE_TITLES",
    "rule_title",
    "BestSingleRule",
    "PeerOutlierRule",
    "ThresholdRule",
    "cmpd",
    "format_value",
    "iapro_top_percentile",
    "make_rule",
    "miami_dade",
    "render_template",
]

OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
}
_WORDS = {">=": "{v} or more", ">": "more than {v}", "<=": "at most {v}", "<": "fewer than {v}"}
# A peer statistic column: ``{indicator}_{unit|rank}_{pct|z}``.
_PEER_STAT = re.compile(r"^(?P<base>.+)_(?P<peer>unit|rank)_(?P<stat>pct|z)$")
# What the presets are called where people read them (a rule's own ``name`` is its key).
RULE_TITLES = {
    "cmpd": "Charlotte-Mecklenburg-style threshold rule",
    "miami_dade": "Miami-Dade-style threshold rule",
    "iapro_top_percentile": "top-5%-of-the-unit rule (IAPro style)",
    "best_single": "single-count rule learned from the training data",
}
# The same rules as a sergeant would say them on the supervisors' pages (no vendor jargon).
RULE_PLAIN_WORDS = {
    "iapro_top_percentile": "a top-5%-of-the-unit warning rule",
    "cmpd": "a warning rule used by the Charlotte-Mecklenburg police",
    "miami_dade": "a warning rule used by the Miami-Dade police",
    "best_single": "a warning rule learned from this agency's past records",
}


def rule_title(name: str) -> str:
    """What people call the rule named ``name`` (its key in configs and results)."""
    if not name:
        return "rule"
    return RULE_TITLES.get(name) or f"{name.replace('_', ' ')} rule"


def format_value(value: Any) -> str:
    """Numbers as people write them: ``4`` not ``4.0``, ``2.35`` not ``2.3456``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if v.is_integer():
            return str(int(v))
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return str(value)


class _Missing:
    def __init__(self, key: str) -> None:
        self.key = key


class _TemplateFormatter(string.Formatter):
    """``str.format`` for description templates, forgiving by design.

    Unknown placeholders are kept as written; a number without a format spec
    is written as people write it (:func:`format_value`); text given for a
    numeric spec (``{value:.0f}`` filled with ``"3 or more"``) is inserted as is;
    a missing number reads "unknown".
    """

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        name = str(key)
        if "*" in name:  # a product of two fields: "{value*complaint_network_3y_count:.0f}"
            a, b = (self.get_value(k, args, kwargs) for k in name.split("*", 1))
            try:
                return float(a) * float(b)
            except (TypeError, ValueError):
                return _Missing(name)
        return kwargs.get(name, _Missing(name))

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, _Missing):
            return "{" + value.key + (":" + format_spec if format_spec else "") + "}"
        if isinstance(value, str) or value is None:
            return "unknown" if value is None else value
        if isinstance(value, float | np.floating) and math.isnan(value):
            return "unknown"
        if not format_spec:
            return format_value(value)
        try:
            return format(value, format_spec)
        except (TypeError, ValueError):
            return format_value(value)


_FORMATTER = _TemplateFormatter()


def render_template(template: str, **values: Any) -> str:
    """Fill a feature description template, e.g. ``"{value:.0f} complaints in 90 days"``.

    Placeholders used by the feature spec: ``value``, ``unit``, ``rank``, another column of
    the row (``{complaint_network_3y_count:.0f}``) and a product of two
    (``{value*complaint_network_3y_count:.0f}``: a share of a count, as a number).
    Never raises on a template it cannot fill fully: what is unknown stays as written.
    """
    try:
        text = _FORMATTER.format(template, **values)
    except (IndexError, KeyError, ValueError):
        return template
    return _ONE_PLURAL.sub(r"\1\2", text) if text.startswith("1 ") else text


# "1 use-of-force reports" reads "1 use-of-force report": the first plural after a leading 1
_ONE_PLURAL = re.compile(r"^(1 (?:[\w-]+ )?)(report|complaint|arrest|event|finding|lawsuit)s\b")


_PEER_PLACEHOLDER = re.compile(r"\b(unit|rank) \{(unit|rank)\}")
_OTHER_FIELD = re.compile(r"\{(?!(?:value|unit|rank)[:}])")


def _peer_text(
    cond: Mapping[str, Any], name: str, descriptions: Mapping[str, str] | None, group: str | None
) -> str | None:
    """A percentile or z-score condition on a peer statistic in words: "in the top 5% of unit
    018 for use-of-force reports in the last year" (None: not such a condition, or no words
    for its indicator)."""
    m = _PEER_STAT.match(name)
    base = (descriptions or {}).get(m["base"]) if m else None
    if m is None or base is None or cond["op"] not in (">=", ">"):
        return None
    what = re.sub(r"^\s*\{value[^}]*\}\s*", "", base)
    if what == base or "{" in what:
        return None  # the indicator's template does not start with its count
    who = group or f"their {m['peer']}"
    if m["stat"] == "pct":
        return f"in the top {format_value(100.0 - float(cond['value']))}% of {who} for {what}"
    return (
        f"{format_value(cond['value'])} or more standard deviations above the mean of {who} "
        f"for {what}"
    )


def _condition_text(
    cond: Mapping[str, Any],
    name: str,
    descriptions: Mapping[str, str] | None,
    group: str | None = None,
) -> str:
    """A condition in words, worded with the column's description template if any.

    Count-style templates (starting with the value, ``"{value:.0f} complaints in
    the last 180 days"``) read ``"3 or more complaints in the last 180 days"``;
    others (``"...: higher than {value:.0f}% of the other officers of unit {unit}"``)
    are filled with the threshold, which is then a true statement about every
    officer the condition flags. The peer group reads "their unit" (or ``group``, e.g.
    "unit 018"); a percentile rule reads "in the top 5% of their unit for ...".
    """
    peer = _peer_text(cond, name, descriptions, group)
    if peer is not None:
        return peer
    threshold = format_value(cond["value"])
    template = (descriptions or {}).get(name)
    if not template or "{value" not in template or _OTHER_FIELD.search(template):
        # no template, or one that quotes another column of the row (a network share)
        return f"{name} {cond['op']} {threshold}"
    template = _PEER_PLACEHOLDER.sub(lambda m: f"their {m.group(1)}", template)
    peers = {"unit": "their unit", "rank": "their rank"}
    if template.lstrip().startswith("{value"):
        words = _WORDS[cond["op"]].format(v=threshold)
        return render_template(template, value=words, **peers)
    return render_template(template, value=cond["value"], **peers)


def describe_condition(cond: Mapping[str, Any], descriptions: Mapping[str, str] | None) -> str:
    """One fitted condition (``{column, op, value}``) in words."""
    return _condition_text(cond, str(cond["column"]), descriptions)


def _condition_sentence(
    cond: Mapping[str, Any],
    x_value: Any,
    name: str,
    descriptions: Mapping[str, str] | None,
    group: str | None = None,
) -> str:
    head = _condition_text(cond, name, descriptions, group)
    if head.startswith("in the top "):  # the percentile itself says nothing more
        return head
    return f"{head} (this officer: {format_value(x_value)})"


def _group_name(kind: str, value: Any) -> str | None:
    """ "unit 018" for a named group; None when the officer's group is unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return f"{kind} {value}"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class _RuleBase(ClassifierMixin, BaseEstimator):
    """Shared machinery: resolving columns, firing, ranking, explaining.

    Subclasses implement ``_make_conditions(X, y)`` returning the conditions and
    ``combine`` to use, with columns already resolved to positions.
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.poor_score = True
        tags.classifier_tags.multi_class = False
        return tags

    # -- fitting ---------------------------------------------------------------
    def _make_conditions(
        self, X: np.ndarray, y: np.ndarray
    ) -> tuple[list[dict[str, Any]], str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _column_index(self, column: Any) -> int:
        names = getattr(self, "feature_names_in_", None)
        if isinstance(column, str):
            if names is None:
                raise ValueError(
                    f"condition names column {column!r} but X has no column names; "
                    "pass a DataFrame or give the column by position"
                )
            hits = np.flatnonzero(names == column)
            if len(hits) == 0:
                raise ValueError(f"condition names column {column!r}, which X does not have")
            return int(hits[0])
        if isinstance(column, int | np.integer) and not isinstance(column, bool):
            if not 0 <= column < self.n_features_in_:
                raise ValueError(
                    f"condition column {column} is out of range for {self.n_features_in_} columns"
                )
            return int(column)
        raise ValueError(f"condition column must be a name or a position, got {column!r}")

    def _column_name(self, index: int) -> str:
        names = getattr(self, "feature_names_in_", None)
        return str(names[index]) if names is not None else f"x{index}"

    def fit(self, X: Any, y: Any) -> _RuleBase:
        """Check the input and resolve the conditions (learn them, for BestSingleRule)."""
        if isinstance(X, pd.DataFrame):
            check_no_protected(X.columns)
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=float)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        self.classes_ = np.unique(y)
        if y_type != "binary" and len(self.classes_) > 2:
            raise ValueError(
                "Only binary classification is supported (a rule flags or not). "
                f"The type of the target is {y_type}."
            )
        if len(self.classes_) < 2:
            raise ValueError(
                "y has only one class; a rule needs both classes to be fitted and evaluated"
            )
        y01 = (y == self.classes_[1]).astype(np.int8)
        conditions, combine = self._make_conditions(X, y01)
        if combine not in ("any", "all"):
            raise ValueError(f"combine must be 'any' or 'all', got {combine!r}")
        if not conditions:
            raise ValueError("a rule needs at least one condition")
        resolved = []
        for c in conditions:
            if not isinstance(c, Mapping) or not {"column", "op", "value"} <= set(c):
                raise ValueError(f"each condition is {{column, op, value}}, got {c!r}")
            if c["op"] not in OPS:
                raise ValueError(f"condition op must be one of {list(OPS)}, got {c['op']!r}")
            try:
                value = float(c["value"])
            except (TypeError, ValueError):
                raise ValueError(f"condition value must be a number, got {c['value']!r}") from None
            idx = self._column_index(c["column"])
            resolved.append(
                {"column": self._column_name(idx), "index": idx, "op": c["op"], "value": value}
            )
        self.conditions_ = resolved
        self.combine_ = combine
        return self

    # -- scoring ---------------------------------------------------------------
    def _X(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=float)

    def _fired(self, X: np.ndarray) -> np.ndarray:
        cols = np.column_stack(
            [OPS[c["op"]](X[:, c["index"]], c["value"]) for c in self.conditions_]
        )
        return cols & ~np.isnan(X[:, [c["index"] for c in self.conditions_]])

    def fired(self, X: Any) -> np.ndarray:
        """Boolean array (n_rows, n_conditions): which conditions fired for each row."""
        return self._fired(self._X(X))

    def _decision(self, X: np.ndarray) -> np.ndarray:
        fired = self._fired(X)
        need = 1 if self.combine_ == "any" else len(self.conditions_)
        margins = []
        for c in self.conditions_:
            x = X[:, c["index"]]
            scale = max(abs(c["value"]), 1.0)
            m = (x - c["value"]) / scale if c["op"] in (">=", ">") else (c["value"] - x) / scale
            margins.append(np.where(np.isnan(m), -np.inf, m))
        closeness = _sigmoid(np.column_stack(margins)).mean(axis=1)
        # Fired count first; closeness (0..1) orders officers with the same count.
        # Positive exactly when the rule flags.
        return fired.sum(axis=1) - need + 0.5 + 0.49 * (2.0 * closeness - 1.0)

    def decision_function(self, X: Any) -> np.ndarray:
        """Ranking score, positive when the rule flags; higher = more conditions, further past."""
        return self._decision(self._X(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Monotone map of :meth:`decision_function` to [0, 1] (0.5 = flag line); not calibrated."""
        d = self._decision(self._X(X))
        need = 1 if self.combine_ == "any" else len(self.conditions_)
        above = len(self.conditions_) - need + 1
        p = np.where(d > 0, 0.5 + 0.5 * d / above, 0.5 + 0.5 * d / need)
        p = np.clip(p, 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """The positive class for flagged rows, the other class otherwise."""
        d = self.decision_function(X)
        return np.where(d > 0, self.classes_[1], self.classes_[0])

    # -- explaining -------------------------------------------------------------
    @property
    def title(self) -> str:
        """What people call the rule, e.g. "Charlotte-Mecklenburg-style threshold rule"."""
        return rule_title(getattr(self, "name", None) or "")

    def describe(self, descriptions: Mapping[str, str] | None = None) -> str:
        """The rule as one plain sentence, e.g. ``"3 or more complaints in the last 180 days
        or 3 or more use-of-force reports in the last 90 days"``.

        ``descriptions`` maps column -> the feature spec's description template (without
        one the column names are used). Works on a fitted rule (its resolved conditions) and,
        where the parameters alone fix the conditions, on an unfitted one.
        """
        conditions, combine = self._conditions_for_words()
        parts = [_condition_text(c, str(c["column"]), descriptions) for c in conditions]
        joiner = " or " if combine == "any" else " and "
        return joiner.join(parts)

    def _conditions_for_words(self) -> tuple[list[dict[str, Any]], str]:
        """The conditions to put in words: the fitted ones, else those of the parameters."""
        if hasattr(self, "conditions_"):
            return list(self.conditions_), self.combine_
        return self._declared_conditions()

    def _declared_conditions(self) -> tuple[list[dict[str, Any]], str]:
        check_is_fitted(self)  # subclasses whose parameters fix the conditions override this
        raise AssertionError("unreachable")  # pragma: no cover

    def explain_rows(
        self,
        X: Any,
        descriptions: Mapping[str, str] | None = None,
        peers: Mapping[str, Sequence[Any] | None] | None = None,
    ) -> list[list[str]]:
        """For each row, the fired conditions as sentences (empty if none fired).

        ``peers`` maps a peer kind (``unit``, ``rank``) to each row's group name, so that a
        peer condition reads "in the top 5% of unit 018" rather than "of their unit"."""
        A = self._X(X)
        fired = self._fired(A)
        out: list[list[str]] = []
        rows, conds = np.nonzero(fired)
        per_row: list[list[str]] = [[] for _ in range(len(A))]
        for r, k in zip(rows.tolist(), conds.tolist(), strict=True):
            c = self.conditions_[k]
            m = _PEER_STAT.match(c["column"])
            names = (peers or {}).get(m["peer"]) if m else None
            group = _group_name(m["peer"], names[r]) if m and names is not None else None
            per_row[r].append(
                _condition_sentence(c, A[r, c["index"]], c["column"], descriptions, group)
            )
        out.extend(per_row)
        return out

    def explain_row(self, x: Any, descriptions: Mapping[str, str] | None = None) -> list[str]:
        """The conditions that fired for one officer, as sentences, e.g.
        ``"3 or more complaints in the last 180 days (this officer: 4)"``.

        ``x`` is a Series or dict (by column name), a one-row DataFrame, or a
        1-d array (by position). ``descriptions`` maps column -> template with
        ``{value}`` (from the feature spec); without one the column name is used.
        """
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        frame: Any
        if isinstance(x, Mapping | pd.Series):
            if names is None:
                raise ValueError("the rule was fitted on an array: pass the row as an array")
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"row lacks columns the rule was fitted on: {missing}")
            frame = pd.DataFrame([[x[n] for n in names]], columns=names)
        elif isinstance(x, pd.DataFrame):
            if len(x) != 1:
                raise ValueError(f"explain_row takes one row, got {len(x)}; use explain_rows")
            frame = x
        else:
            arr = np.asarray(x, dtype=float).reshape(1, -1)
            frame = pd.DataFrame(arr, columns=names) if names is not None else arr
        return self.explain_rows(frame, descriptions)[0]


class ThresholdRule(_RuleBase):
    """Flag when conditions ``column op value`` hold (``any`` or ``all`` of them).

    Args:
        conditions: list of ``{"column": name_or_position, "op": ">=", "value": 3}``;
            ops ``>=``, ``>``, ``<=``, ``<``. None = ``column 0 > 0`` (a default
            that works on any numeric input, for scikit-learn's checks).
        combine: ``"any"`` (flag if one condition holds) or ``"all"``.
        name: a label for reports (e.g. ``"cmpd"``).

    A missing value never satisfies a condition.
    """

    def __init__(
        self,
        conditions: Sequence[Mapping[str, Any]] | None = None,
        combine: str = "any",
        name: str | None = None,
    ) -> None:
        self.conditions = conditions
        self.combine = combine
        self.name = name

    def _make_conditions(self, X: np.ndarray, y: np.ndarray) -> tuple[list[dict[str, Any]], str]:
        conditions = self.conditions
        if conditions is None:
            conditions = [{"column": 0, "op": ">", "value": 0}]
        if isinstance(conditions, Mapping | str):
            raise ValueError("conditions must be a list of {column, op, value} mappings")
        return [dict(c) for c in conditions], self.combine

    def _declared_conditions(self) -> tuple[list[dict[str, Any]], str]:
        conditions = self.conditions or [{"column": 0, "op": ">", "value": 0}]
        out = [
            {**c, "column": c["column"] if isinstance(c["column"], str) else f"x{c['column']}"}
            for c in conditions
        ]
        return out, self.combine


class PeerOutlierRule(_RuleBase):
    """Flag officers far above their peers: percentile >= ``pct`` or z-score >= ``z``.

    Args:
        indicators: base indicator names (e.g. ``"use_of_force_1y_count"``); the
            rule reads ``{indicator}_{peer}_pct`` and/or ``{indicator}_{peer}_z``.
            None = every ``*_{peer}_pct`` / ``*_{peer}_z`` column of X; with array
            input (no names), every column is read as a percentile.
        peer: ``"unit"`` or ``"rank"`` (the peer group of the precomputed columns).
        pct: percentile threshold (0-100; 95 = top 5% of the peer group), or None.
        z: z-score threshold, or None. At least one of ``pct`` and ``z``.
        combine: ``"any"`` or ``"all"``.
        name: a label for reports.
    """

    def __init__(
        self,
        indicators: Sequence[str] | None = None,
        peer: str = "unit",
        pct: float | None = 95.0,
        z: float | None = None,
        combine: str = "any",
        name: str | None = None,
    ) -> None:
        self.indicators = indicators
        self.peer = peer
        self.pct = pct
        self.z = z
        self.combine = combine
        self.name = name

    def _make_conditions(self, X: np.ndarray, y: np.ndarray) -> tuple[list[dict[str, Any]], str]:
        if self.pct is None and self.z is None:
            raise ValueError("PeerOutlierRule needs pct, z or both")
        if self.pct is not None and not 0 < self.pct <= 100:
            raise ValueError(f"pct is a percentile in (0, 100], got {self.pct}")
        names = getattr(self, "feature_names_in_", None)
        conds: list[dict[str, Any]] = []
        if self.indicators is None and names is None:
            value = self.pct if self.pct is not None else self.z
            return [{"column": i, "op": ">=", "value": value} for i in range(X.shape[1])], (
                self.combine
            )
        if self.indicators is None:
            assert names is not None
            for col in names:
                if self.pct is not None and col.endswith(f"_{self.peer}_pct"):
                    conds.append({"column": str(col), "op": ">=", "value": self.pct})
                if self.z is not None and col.endswith(f"_{self.peer}_z"):
                    conds.append({"column": str(col), "op": ">=", "value": self.z})
            if not conds:
                raise ValueError(f"X has no *_{self.peer}_pct or *_{self.peer}_z peer columns")
            return conds, self.combine
        if isinstance(self.indicators, str):
            raise ValueError("indicators must be a list of names, not one string")
        for ind in self.indicators:
            if self.pct is not None:
                conds.append({"column": f"{ind}_{self.peer}_pct", "op": ">=", "value": self.pct})
            if self.z is not None:
                conds.append({"column": f"{ind}_{self.peer}_z", "op": ">=", "value": self.z})
        return conds, self.combine

    def _declared_conditions(self) -> tuple[list[dict[str, Any]], str]:
        """The conditions of the named indicators (unfitted: no columns to search)."""
        if self.indicators is None or isinstance(self.indicators, str):
            check_is_fitted(self)  # every peer column of X: known only once fitted
        conds: list[dict[str, Any]] = []
        for ind in self.indicators or []:
            if self.pct is not None:
                conds.append({"column": f"{ind}_{self.peer}_pct", "op": ">=", "value": self.pct})
            if self.z is not None:
                conds.append({"column": f"{ind}_{self.peer}_z", "op": ">=", "value": self.z})
        return conds, self.combine


def _at_least_counts(
    values: np.ndarray, positive: np.ndarray, max_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """For k = 1 .. ``max_k``: how many ``values`` are >= k (NaN never is), and how many of
    those rows are ``positive``. Counted from one histogram of ``min(floor(value), max_k)``
    (for a whole k, value >= k exactly when floor(value) >= k) instead of a rows x k table."""
    bins = np.floor(values)
    keep = bins >= 1  # NaN compares False
    bins = np.minimum(bins[keep], max_k).astype(np.int64)
    hist = np.bincount(bins, minlength=max_k + 1)
    hist_tp = np.bincount(bins[positive[keep]], minlength=max_k + 1)
    # at least k: the histogram summed from k up
    return np.cumsum(hist[::-1])[::-1][1:], np.cumsum(hist_tp[::-1])[::-1][1:]


class BestSingleRule(_RuleBase):
    """Learn the best single "count >= k" rule on the training data.

    Candidates are every ``*_count`` column (every column with array input, or
    the listed ``columns``) with k = 1 .. ``max_k``. Criterion, kept simple:
    among candidates that flag between ``min_flag_rate`` and ``max_flag_rate``
    of the training rows, the highest precision; ties go to the one with more
    true positives, then to the first column and smallest k. If no candidate
    flags a share in that band, the candidate whose share is closest to the
    band is taken. Only the training rows passed to ``fit`` are used.

    Attributes after fit: ``rule_`` (the chosen ``{column, op, value}``),
    ``train_precision_``, ``train_flag_rate_``.
    """

    def __init__(
        self,
        columns: Sequence[str | int] | None = None,
        max_k: int = 10,
        min_flag_rate: float = 0.01,
        max_flag_rate: float = 0.10,
        name: str | None = None,
    ) -> None:
        self.columns = columns
        self.max_k = max_k
        self.min_flag_rate = min_flag_rate
        self.max_flag_rate = max_flag_rate
        self.name = name

    def _make_conditions(self, X: np.ndarray, y: np.ndarray) -> tuple[list[dict[str, Any]], str]:
        if not (isinstance(self.max_k, int | np.integer) and self.max_k >= 1):
            raise ValueError(f"max_k must be a whole number >= 1, got {self.max_k!r}")
        if not 0 <= self.min_flag_rate <= self.max_flag_rate <= 1:
            raise ValueError("need 0 <= min_flag_rate <= max_flag_rate <= 1")
        names = getattr(self, "feature_names_in_", None)
        if self.columns is not None:
            idx = [self._column_index(c) for c in self.columns]
        elif names is not None:
            idx = [i for i, n in enumerate(names) if str(n).endswith("_count")]
            if not idx:
                raise ValueError("X has no *_count columns to search; pass columns=")
        else:
            idx = list(range(X.shape[1]))
        ks = np.arange(1, self.max_k + 1, dtype=float)
        positive = y == 1
        best: tuple[Any, ...] | None = None
        for j, col in enumerate(idx):
            n_flag, tp = _at_least_counts(X[:, col], positive, int(self.max_k))
            rate = n_flag / len(y)
            for kk in range(len(ks)):
                precision = tp[kk] / n_flag[kk] if n_flag[kk] else 0.0
                gap = max(self.min_flag_rate - rate[kk], rate[kk] - self.max_flag_rate, 0.0)
                # Sort key: inside the band first, then precision, TPs, then order.
                key = (-gap, precision, int(tp[kk]), -j, -kk)
                if best is None or key > best[0]:
                    best = (key, col, ks[kk], precision, rate[kk])
        assert best is not None
        _, col, k, precision, rate = best
        self.rule_ = {"column": self._column_name(col), "op": ">=", "value": float(k)}
        self.train_precision_ = float(precision)
        self.train_flag_rate_ = float(rate)
        return [{"column": int(col), "op": ">=", "value": float(k)}], "any"

    def describe(self, descriptions: Mapping[str, str] | None = None) -> str:
        """The learned rule in words (fitted), or how it is learned (not yet fitted)."""
        if hasattr(self, "conditions_"):
            return super().describe(descriptions) + " (the best single rule on the training data)"
        return (
            f"the one 'k or more' count rule (k from 1 to {self.max_k}) that is most precise on "
            f"the training data while flagging {format_value(100 * self.min_flag_rate)}% to "
            f"{format_value(100 * self.max_flag_rate)}% of officers"
        )


# -- presets from practice ------------------------------------------------------


def cmpd() -> ThresholdRule:
    """CMPD style (Charlotte-Mecklenburg): 3+ complaints in 180 days or 3+ uses of force in 90."""
    return ThresholdRule(
        [
            {"column": "complaint_180d_count", "op": ">=", "value": 3},
            {"column": "use_of_force_90d_count", "op": ">=", "value": 3},
        ],
        name="cmpd",
    )


def miami_dade() -> ThresholdRule:
    """Miami-Dade style: 2+ complaints in 90 days or 3+ uses of force in 90 days."""
    return ThresholdRule(
        [
            {"column": "complaint_90d_count", "op": ">=", "value": 2},
            {"column": "use_of_force_90d_count", "op": ">=", "value": 3},
        ],
        name="miami_dade",
    )


def iapro_top_percentile() -> PeerOutlierRule:
    """IAPro-style peer threshold: top 5% of the unit in uses of force or complaints (1 year)."""
    return PeerOutlierRule(
        ["use_of_force_1y_count", "complaint_1y_count"],
        peer="unit",
        pct=95.0,
        name="iapro_top_percentile",
    )


def best_single() -> BestSingleRule:
    """The best single count rule learned on training data."""
    return BestSingleRule(name="best_single")


RULE_PRESETS: dict[str, Callable[[], _RuleBase]] = {
    "cmpd": cmpd,
    "miami_dade": miami_dade,
    "iapro_top_percentile": iapro_top_percentile,
    "best_single": best_single,
}


def make_rule(name_or_config: str | Mapping[str, Any]) -> _RuleBase:
    """Build an (unfitted) rule from a preset name or a YAML-like mapping.

    Accepted forms::

        "cmpd"                                       # a preset (see RULE_PRESETS)
        {"preset": "cmpd"}
        {"any": [{"column": "complaint_180d_count", "op": ">=", "value": 3}, ...],
         "name": "my_rule"}                          # or "all": [...]
        {"peer_outlier": {"indicators": [...], "peer": "unit", "pct": 95, "z": 2}}
        {"best_single": {"max_k": 10, "max_flag_rate": 0.1}}
    """
    if isinstance(name_or_config, str):
        if name_or_config not in RULE_PRESETS:
            raise ValueError(
                f"unknown rule preset {name_or_config!r}; choose from {sorted(RULE_PRESETS)}"
            )
        return RULE_PRESETS[name_or_config]()
    if not isinstance(name_or_config, Mapping):
        raise ValueError(f"a rule is a preset name or a mapping, got {name_or_config!r}")
    cfg = dict(name_or_config)
    name = cfg.pop("name", None)
    keys = set(cfg) & {"preset", "any", "all", "peer_outlier", "best_single"}
    if len(keys) != 1 or set(cfg) - keys:
        raise ValueError(
            "a rule config has exactly one of 'preset', 'any', 'all', 'peer_outlier', "
            f"'best_single' (plus an optional 'name'); got keys {sorted(name_or_config)}"
        )
    (key,) = keys
    value = cfg[key]
    rule: _RuleBase
    if key == "preset":
        rule = make_rule(str(value))
    elif key in ("any", "all"):
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise ValueError(f"'{key}' takes a non-empty list of {{column, op, value}} conditions")
        for c in value:
            if not isinstance(c, Mapping) or set(c) != {"column", "op", "value"}:
                raise ValueError(f"each condition has exactly column, op, value; got {c!r}")
            if c["op"] not in OPS:
                raise ValueError(f"condition op must be one of {list(OPS)}, got {c['op']!r}")
        rule = ThresholdRule([dict(c) for c in value], combine=key)
    elif key == "peer_outlier":
        rule = PeerOutlierRule(**dict(value or {}))
    else:
        rule = BestSingleRule(**dict(value or {}))
    if name is not None:
        rule.set_params(name=name)
    return rule
