"""Why an officer was flagged: per-indicator contributions, rendered as plain sentences.

Two layers:

* :func:`contributions` gives, for every scored row, how much each input
  indicator moved the model's margin (its log-odds for logistic regression and
  boosting, its probability for random forests): exact ``coef * (x - mean)``
  for linear models (through a Pipeline of element-wise steps such as an
  imputer and a scaler), SHAP's TreeExplainer for tree ensembles, and Kernel SHAP on a
  small background for anything else. The
  contributions plus ``frame.attrs["base_value"]`` add up to
  :func:`model_margin` for every row.
* :func:`explain` turns the largest positive contributions (the indicators that
  pushed toward a flag) into sentences a supervisor can check against the
  record, e.g. ``"4 use-of-force reports in the last 6 months, 3.1 times the
  average of unit 12"``, and lists the rules the officer also meets.

A flag is an invitation to a supportive conversation, never a finding; the
wording states facts and comparisons, not judgments.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.inputs import check_no_protected
from models.rules import format_value, render_template, rule_title

__all__ = [
    "TREE_SHAP_BUDGET",
    "Explanation",
    "contributions",
    "describe_factor",
    "explain",
    "model_margin",
    "tree_shap_cost",
]

PREAMBLE = "Suggested for a supportive review (not a finding)."
_TREE_MODELS = (
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "DecisionTreeClassifier",
    "XGBClassifier",
    "LGBMClassifier",
)
_PEERS = ("unit", "rank")


def _split_pipeline(model: Any) -> tuple[Any | None, Any]:
    """(preprocessing pipeline or None, final estimator)."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        pre = model[:-1] if len(model.steps) > 1 else None
        return pre, model.steps[-1][1]
    return None, model


def model_margin(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The quantity explanations add up to: ``decision_function`` (log-odds) when the
    model has one, else the probability of the positive class."""
    if hasattr(model, "decision_function"):
        d = np.asarray(model.decision_function(X), dtype=float)
        if d.ndim == 1:
            return d
    return np.asarray(model.predict_proba(X), dtype=float)[:, 1]


def _transform(pre: Any | None, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Apply preprocessing; require it to keep one column per input feature."""
    if pre is None:
        return X.to_numpy(dtype=float), list(X.columns)
    Z = np.asarray(pre.transform(X), dtype=float)
    if Z.shape[1] != X.shape[1]:
        raise ValueError(
            f"the model's preprocessing turns {X.shape[1]} features into {Z.shape[1]} "
            "columns; per-indicator contributions need element-wise steps (imputer, scaler)"
        )
    return Z, list(X.columns)


def _is_linear(est: Any) -> bool:
    coef = getattr(est, "coef_", None)
    return coef is not None and np.asarray(coef).ndim <= 2 and np.asarray(coef).shape[0] == 1


def _linear(model: Any, X: pd.DataFrame, background: pd.DataFrame | None) -> tuple[np.ndarray, Any]:
    from sklearn.preprocessing import StandardScaler

    pre, est = _split_pipeline(model)
    Z, _ = _transform(pre, X)
    coef = np.asarray(est.coef_, dtype=float).ravel()
    intercept = float(np.ravel(est.intercept_)[0])
    if background is not None:
        mu = _transform(pre, background[list(X.columns)])[0].mean(axis=0)
    elif pre is not None and isinstance(pre.steps[-1][1], StandardScaler):
        mu = np.zeros(Z.shape[1])  # the training mean, in the scaled space
    else:
        mu = np.nanmean(Z, axis=0)
    contrib = coef * (Z - mu)
    return contrib, intercept + float(coef @ mu)


#: Above this many elementary steps (rows x sum over trees of leaves x depth^2),
#: exact TreeSHAP gives way to path attribution; about 5-10 s on one core here.
TREE_SHAP_BUDGET = 2e9


def tree_shap_cost(est: Any, n_rows: int) -> float:
    """Rough cost of exact TreeSHAP for ``n_rows`` rows (0 when the trees are not inspectable)."""
    trees = getattr(est, "estimators_", None)
    if trees is None:
        tree = getattr(est, "tree_", None)
        trees = [] if tree is None else [est]
    per_row = 0.0
    for t in np.ravel(np.asarray(trees, dtype=object)):
        tree = getattr(t, "tree_", None)
        if tree is not None:
            per_row += float(tree.n_leaves) * float(max(tree.max_depth, 1)) ** 2
    return per_row * n_rows


def _tree(model: Any, X: pd.DataFrame, exact: bool | None) -> tuple[np.ndarray, float, bool]:
    import shap

    pre, est = _split_pipeline(model)
    Z, names = _transform(pre, X)
    if exact is None:
        exact = tree_shap_cost(est, len(X)) <= TREE_SHAP_BUDGET
    explainer = shap.TreeExplainer(est)
    values = explainer.shap_values(pd.DataFrame(Z, columns=names), approximate=not exact)
    base = np.asarray(explainer.expected_value, dtype=float)
    if isinstance(values, list):  # older shap: one array per class
        values = values[-1]
    values = np.asarray(values, dtype=float)
    if values.ndim == 3:  # (n, features, classes): keep the positive class
        values = values[:, :, -1]
    return values, float(np.ravel(base)[-1]), bool(exact)


def _generic(
    model: Any, X: pd.DataFrame, background: pd.DataFrame | None, seed: int
) -> tuple[np.ndarray, Any]:
    """Kernel SHAP on a background of at most 100 rows.

    Kernel SHAP (not shap's permutation or exact explainers) because those
    compile numba code on first use, about 20 s here; Kernel SHAP's efficiency
    constraint keeps contributions adding up to the margin exactly.
    """
    import shap

    bg = X if background is None else background[list(X.columns)]
    if len(bg) > 100:
        bg = bg.sample(100, random_state=seed)
    columns = list(X.columns)

    def f(a: np.ndarray) -> np.ndarray:
        return model_margin(model, pd.DataFrame(a, columns=columns))

    explainer = shap.KernelExplainer(f, bg.to_numpy(dtype=float), seed=seed)
    values = explainer.shap_values(X.to_numpy(dtype=float), silent=True)
    return np.asarray(values, dtype=float), float(np.ravel(explainer.expected_value)[0])


def contributions(
    model: Any,
    X: pd.DataFrame,
    background: pd.DataFrame | None = None,
    seed: int = 0,
    tree_exact: bool | None = None,
) -> pd.DataFrame:
    """Per-row, per-feature contributions to the model's margin (see :func:`model_margin`).

    Returns a frame shaped like ``X`` (same index and columns). Its
    ``attrs["base_value"]`` (a float) plus the row sums equal the margin, and
    ``attrs["method"]`` says which method was used: ``"linear"``, ``"tree"``
    (exact TreeSHAP), ``"tree_path"`` or ``"kernel"``.

    ``background`` is the reference population (normally the training rows):
    for linear models the contributions are ``coef * (x - mean(background))``
    in the model's input space (default: the training mean kept by a final
    StandardScaler, else the mean of ``X``); tree models use SHAP's
    path-dependent algorithm and need no background. Exact TreeSHAP costs
    about rows x trees x leaves x depth^2: a 200-tree depth-10 forest takes
    some 30 s per 1,000 rows. With ``tree_exact=None`` (auto) it is used up to
    :data:`TREE_SHAP_BUDGET` and beyond that the path attribution of each
    prediction (Saabas; shap's ``approximate=True``) is used instead: it
    also adds up exactly to the margin, but credits features by their
    position in the trees rather than by Shapley values. ``tree_exact=True``
    forces exact values; other models use ``background`` as
    Kernel SHAP's background (default: up to 100 rows of ``X``); that fallback
    is slow for many rows and features, so explain only the flagged officers.
    """
    if not isinstance(X, pd.DataFrame):
        raise ValueError("X: pass a DataFrame of the model's numeric input columns")
    check_no_protected(X.columns)
    non_numeric = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if non_numeric:
        raise ValueError(f"X: model inputs are numeric; drop {non_numeric} (context, not inputs)")
    _, est = _split_pipeline(model)
    if _is_linear(est):
        values, base = _linear(model, X, background)
        method = "linear"
    elif any(c.__name__ in _TREE_MODELS for c in type(est).__mro__):
        values, base, exact = _tree(model, X, tree_exact)
        method = "tree" if exact else "tree_path"
    else:
        values, base = _generic(model, X, background, seed)
        method = "kernel"
    out = pd.DataFrame(values, index=X.index, columns=X.columns)
    out.attrs["base_value"] = base
    out.attrs["method"] = method
    return out


# Attributes (tenure, age) and exposure (arrests made, time since the last event) describe an
# officer's situation, not behaviour: a model may use them, a reason may not name them. Nor
# may commendations (no concern to act on) or the co-accused network (another officer's
# record, see :func:`is_network`).
_CONTEXT = re.compile(
    r"^(tenure_years|age_years|arrest_\w+_count|\w+_days_since|commendation_\w+)$"
)
_NETWORK = re.compile(r"^\w+_network_\w+$")


def is_context(feature: str) -> bool:
    """Whether an indicator is context (shown beside the reasons), never a reason."""
    return bool(_CONTEXT.match(feature))


def is_network(feature: str) -> bool:
    """Whether an indicator reads other officers' records (co-accused, use-of-force
    partners): it may weigh in the model and is shown as context, never as a reason."""
    return bool(_NETWORK.match(feature))


def is_decrease(feature: str, value: Any) -> bool:
    """Whether the indicator is a change over time that went down (``complaint_1y_trend`` of
    -3: fewer complaints than the year before), which is never a reason to flag."""
    if not feature.endswith("_trend"):
        return False
    try:
        return bool(float(value) <= 0)
    except (TypeError, ValueError):
        return False


def _peer_stat_above(feature: str, value: Any) -> bool | None:
    """For a peer statistic column (``x_unit_ratio``, ``x_rank_z``, ``x_unit_pct``): whether
    the officer is at or above the group, None for another column."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if feature.endswith("_ratio"):
        return v >= 1.0
    if feature.endswith("_z"):
        return v >= 0.0
    if feature.endswith("_pct"):
        return v >= 50.0
    return None


@dataclass
class Explanation:
    """Why one officer was scored as they were, in words backed by numbers.

    ``factors`` hold, for each listed indicator: feature, value, contribution,
    sentence, above (at or above its peers: the unit or rank average when known, else the
    average of the officers explained), and when available peer_ratio and peer_group, or
    average. Normally every factor is a reason (a behaviour at or above its peers); when no
    behaviour is, ``summary`` says so plainly and the factors are the behaviours that
    carried the score (``carried``), or none when context carried it. ``rules_fired`` are
    the names of the given rules that flag this officer; ``rule_reasons`` their
    fired conditions as sentences; ``rules`` each fired rule as people read it (name,
    title, description: the whole rule in words, and reason: what this officer met).
    """

    row: int
    officer_id: Any = None
    score: float | None = None
    sentences: list[str] = field(default_factory=list)
    factors: list[dict[str, Any]] = field(default_factory=list)
    rules_fired: list[str] = field(default_factory=list)
    rule_reasons: dict[str, list[str]] = field(default_factory=dict)
    rules: list[dict[str, str]] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # attributes and exposure: not reasons
    text: str = ""
    summary: str = ""  # said when no behaviour is at or above its peers

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (numpy scalars turned into Python numbers)."""

        def plain(v: Any) -> Any:
            return v.item() if isinstance(v, np.generic) else v

        return {
            "row": self.row,
            "officer_id": plain(self.officer_id),
            "score": plain(self.score),
            "sentences": list(self.sentences),
            "factors": [{k: plain(v) for k, v in f.items()} for f in self.factors],
            "rules_fired": list(self.rules_fired),
            "rule_reasons": {k: list(v) for k, v in self.rule_reasons.items()},
            "rules": [dict(r) for r in self.rules],
            "context": list(self.context),
            "summary": self.summary,
            "text": self.text,
        }


def rule_words(
    name: str, rule: Any, descriptions: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A fitted rule as people read it: its key, title and the whole rule in words."""
    title = getattr(rule, "title", None) or name
    describe = getattr(rule, "describe", None)
    text = describe(descriptions) if callable(describe) else ""
    return {"name": name, "title": str(title), "description": str(text)}


def _join_titles(titles: list[str]) -> str:
    named = [f"the {t}" for t in titles]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def rule_lines(rules: Sequence[Mapping[str, Any]], end: str = "") -> list[str]:
    """One line per condition met: "Also meets the Charlotte-Mecklenburg-style threshold rule
    and the Miami-Dade-style threshold rule: 3 or more use-of-force reports in the last 90
    days (this officer: 3)". Rules met for the same condition are named once, together;
    ``rules`` are dicts with title (or name) and reason."""
    same: dict[str, list[str]] = {}
    for r in rules:
        name = str(r.get("name") or "")
        title = str(r.get("title") or rule_title(name))
        same.setdefault(str(r.get("reason") or ""), []).append(title)
    return [
        f"Also meets {_join_titles(titles)}" + (f": {reason}{end}" if reason else end)
        for reason, titles in same.items()
    ]


def describe_factor(
    feature: str,
    value: Any,
    descriptions: Mapping[str, str] | None,
    peer_ratio: float | None = None,
    peer_kind: str | None = None,
    peer_name: Any = None,
    template_context: Mapping[str, Any] | None = None,
) -> str:
    """One sentence for one indicator, e.g.
    ``"4 use-of-force reports in the last 6 months, 3.1 times the average of unit 12"``.

    The template (``{value}`` or ``{value:.0f}``, and ``{unit}``/``{rank}`` filled
    from ``template_context``) comes from the feature spec; without one the
    sentence is ``"<feature>: <value>"``. The peer clause is added when a peer
    ratio is known.
    """
    template = (descriptions or {}).get(feature)
    if template:
        head = render_template(template, value=value, **(template_context or {}))
    else:
        head = f"{feature}: {format_value(value)}"
    if peer_ratio is None or not np.isfinite(peer_ratio) or peer_kind is None:
        return head
    if peer_name is None or (isinstance(peer_name, float) and np.isnan(peer_name)):
        return f"{head}, {peer_ratio:.1f} times the {peer_kind} average"
    return f"{head}, {peer_ratio:.1f} times the average of {peer_kind} {peer_name}"


_PEER_SUFFIX = re.compile(r"^(?P<base>.+)_(?:unit|rank)_(?:ratio|z|pct)$")


def _template_fields(template: str) -> list[str]:
    """The placeholders of a description template (``value*x`` gives ``value`` and ``x``)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError:
        return []
    return [part for f in fields for part in f.split("*")]


def _absent(value: Any) -> bool:
    try:
        return bool(value is None or value == 0 or np.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def indicator_groups(features: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Group input columns by indicator: ``x``, ``x_unit_ratio``, ``x_rank_z`` ... are one
    indicator ``x``. Returns the indicator names and the column positions of each."""
    names: list[str] = []
    members: list[list[int]] = []
    where: dict[str, int] = {}
    for j, f in enumerate(features):
        m = _PEER_SUFFIX.match(f)
        key = m.group("base") if m else f
        if key not in where:
            where[key] = len(names)
            names.append(key)
            members.append([])
        members[where[key]].append(j)
    return names, members


def _lookup(frames: Sequence[pd.DataFrame | None], column: str) -> np.ndarray | None:
    for f in frames:
        if f is not None and column in f.columns:
            return f[column].to_numpy()
    return None


def _rule_frame(rule: Any, X: pd.DataFrame, context: pd.DataFrame | None) -> Any:
    names = getattr(rule, "feature_names_in_", None)
    if names is None:
        return X.to_numpy(dtype=float)
    parts = {}
    for n in names:
        col = _lookup([X, context], str(n))
        if col is None:
            raise ValueError(f"rule {rule!r} needs column {n!r}, in neither X nor context")
        parts[str(n)] = col
    return pd.DataFrame(parts, index=X.index)[list(names)]


def explain(
    model: Any,
    X: pd.DataFrame,
    descriptions: Mapping[str, str] | None = None,
    context: pd.DataFrame | None = None,
    rules: Mapping[str, Any] | None = None,
    top_k: int = 3,
    background: pd.DataFrame | None = None,
    officer_ids: Sequence[Any] | None = None,
    tree_exact: bool | None = None,
) -> list[Explanation]:
    """Explain every row of ``X`` (the model's numeric inputs, one row per officer).

    Args:
        model: a fitted classifier (or Pipeline).
        X: model inputs.
        descriptions: feature -> sentence template with ``{value}``.
        context: rows aligned with X holding ``unit``/``rank`` names, peer ratio
            columns (``{feature}_unit_ratio``, ``{feature}_rank_ratio``) not among
            the inputs, ``officer_id``, and columns rules need.
        rules: name -> fitted rule; each row lists the rules that flag it.
        top_k: at most this many indicators per officer; only indicators that
            pushed toward a flag (positive contribution) and have a value (not zero,
            not missing) are listed.
        background: reference rows for :func:`contributions`.
        officer_ids: ids per row (default: ``context["officer_id"]`` if present).
        tree_exact: exact TreeSHAP or path attribution (see :func:`contributions`).
    """
    if top_k < 1:
        raise ValueError(f"top_k: must be at least 1, got {top_k}")
    if context is not None and len(context) != len(X):
        raise ValueError(f"context has {len(context)} rows, X has {len(X)}: align them")
    if context is not None:
        check_no_protected(context.columns)
    contrib = contributions(model, X, background, tree_exact=tree_exact)
    C = contrib.to_numpy()
    base = np.broadcast_to(np.asarray(contrib.attrs["base_value"], dtype=float), (len(X),))
    score = base + C.sum(axis=1)
    n = len(X)
    features = list(X.columns)
    # One reason per indicator: a count and its peer statistics (ratio, z, percentile) are one
    # indicator, so their contributions are summed (sums keep the contributions additive).
    groups, members = indicator_groups(features)
    M = np.zeros((len(features), len(groups)))
    for gi, cols in enumerate(members):
        M[cols, gi] = 1.0
    G = np.nan_to_num(C) @ M
    k = min(top_k, len(groups))
    # spare candidates per row: indicators at zero or missing, context, the co-accused network
    # and decreases are skipped below
    order = np.argsort(-G, axis=1, kind="stable")[:, : min(len(groups), 4 * k + 12)]
    top_c = np.take_along_axis(G, order, axis=1)

    # Per indicator: its own value (from X or context) and a peer ratio to quote.
    group_values: dict[int, np.ndarray | None] = {}
    peers: dict[int, tuple[str, np.ndarray, np.ndarray | None]] = {}
    for gi in np.unique(order):
        gi = int(gi)
        group_values[gi] = _lookup([X, context], groups[gi])
        for peer_kind in _PEERS:
            ratio_col = _lookup([context, X], f"{groups[gi]}_{peer_kind}_ratio")
            if ratio_col is not None:
                peers[gi] = (peer_kind, ratio_col.astype(float), _lookup([context], peer_kind))
                break

    # the officers' average of each indicator (the peers when no unit or rank ratio is known)
    averages: dict[int, float] = {}
    for gi, own in group_values.items():
        if own is not None:
            with np.errstate(all="ignore"):
                col = np.asarray(pd.to_numeric(pd.Series(own), errors="coerce"), dtype=float)
                averages[gi] = float(np.nanmean(col)) if np.isfinite(col).any() else np.nan

    peer_names = {kind: _lookup([context], kind) for kind in _PEERS}
    # other columns a template names (a network share quotes its count of tied officers)
    named = {f for t in (descriptions or {}).values() for f in _template_fields(t)}
    named -= {"value", *_PEERS}
    row_columns = {c: v for c in sorted(named) if (v := _lookup([X, context], c)) is not None}

    def template_context(i: int) -> dict[str, Any]:
        out: dict[str, Any] = {c: v[i] for c, v in row_columns.items()}
        for kind, names in peer_names.items():
            name = None if names is None else names[i]
            missing = name is None or (isinstance(name, float) and np.isnan(name))
            out[kind] = f"their {kind}" if missing else name
        return out

    ids: Sequence[Any] | np.ndarray | None = officer_ids
    if ids is None:
        ids = _lookup([context], "officer_id")
    if ids is not None and len(ids) != n:
        raise ValueError(f"officer_ids has {len(ids)} values, X has {n} rows")

    fired: dict[str, np.ndarray] = {}
    reasons: dict[str, list[list[str]]] = {}
    about: dict[str, dict[str, str]] = {}
    for name, rule in (rules or {}).items():
        frame = _rule_frame(rule, X, context)
        fired[name] = np.asarray(rule.decision_function(frame)) > 0
        reasons[name] = rule.explain_rows(frame, descriptions, peer_names)
        about[name] = rule_words(name, rule, descriptions)

    values = X.to_numpy()
    out = []
    for i in range(n):
        reasons_: list[dict[str, Any]] = []  # behaviours at or above their peers
        carried: list[dict[str, Any]] = []  # behaviours that pushed the score, below peers
        context_lines: list[str] = []
        network_lines: list[str] = []
        zero_lines: list[str] = []
        for gi, c in zip(order[i], top_c[i], strict=True):
            if not c > 0 or len(reasons_) == k:
                break
            gi = int(gi)
            own = group_values[gi]
            if own is not None:
                feature, value = groups[gi], own[i]
            else:  # only peer statistics of this indicator are inputs: quote the strongest
                j = max(members[gi], key=lambda m: C[i, m] if np.isfinite(C[i, m]) else -np.inf)
                feature, value = features[j], values[i, j]
            if is_network(feature):  # another officer's record: context, never a reason
                if not _absent(value) and len(network_lines) < 2:
                    network_lines.append(
                        describe_factor(
                            feature, value, descriptions, None, None, None, template_context(i)
                        )
                    )
                continue
            if _absent(value):
                if len(zero_lines) < 2 and not is_context(feature):
                    zero_lines.append(describe_factor(feature, 0, descriptions))
                continue  # "0 complaints" is no reason a supervisor can act on
            if is_context(feature):  # an attribute or exposure: beside the reasons, never one
                if len(context_lines) < 2:
                    context_lines.append(describe_factor(feature, value, descriptions))
                continue
            if is_decrease(feature, value):
                continue  # fewer complaints than the year before is never a reason to flag
            ratio: float | None = None
            group: Any = None
            kind: str | None = None
            if gi in peers and own is not None:
                kind, ratios, group_names = peers[gi]
                ratio = float(ratios[i]) if np.isfinite(ratios[i]) else None
                group = None if group_names is None else group_names[i]
            sentence = describe_factor(
                feature, value, descriptions, ratio, kind, group, template_context(i)
            )
            average: float | None = None
            if ratio is not None:
                above = ratio >= 1.0
            elif own is None:
                above = bool(_peer_stat_above(feature, value))
            else:
                average = averages.get(gi)
                if average is None or not np.isfinite(average):
                    above, average = True, None
                else:
                    above = float(value) >= average - 1e-9
                    sentence = f"{sentence} (average of the officers scored: {average:.1f})"
            factor: dict[str, Any] = {
                "feature": feature,
                "value": value.item() if isinstance(value, np.generic) else value,
                "contribution": float(c),
                "sentence": sentence,
                "inputs": [features[m] for m in members[gi]],
                "above": bool(above),
            }
            if ratio is not None:
                factor["peer_ratio"] = ratio
                factor["peer_group"] = f"{kind} {group}" if group is not None else kind
            if average is not None:
                factor["average"] = average
            if above:
                reasons_.append(factor)
            elif len(carried) < k:
                carried.append({**factor, "carried": True})
        summary = ""
        factors = reasons_
        if not reasons_ and carried:
            factors = carried
            summary = (
                "No behaviour of this officer is above the average of their peers; the score "
                "was carried by: " + "; ".join(f["sentence"] for f in carried) + "."
            )
        elif not reasons_:
            what = ([f"context ({'; '.join(context_lines)})"] if context_lines else []) + (
                [f"the co-accused ({'; '.join(network_lines)})"] if network_lines else []
            )
            if not what and zero_lines:
                what = [f"indicators at zero ({'; '.join(zero_lines)})"]
            summary = "No behaviour of this officer pushed the score up" + (
                f"; it was carried by {' and '.join(what)}." if what else "."
            )
        sentences = [f["sentence"] for f in factors]
        names = [name for name in fired if fired[name][i]]
        why = {name: reasons[name][i] for name in names}
        parts = [PREAMBLE]
        if summary:
            parts.append(summary)
        elif sentences:
            parts.append("Indicators: " + "; ".join(sentences) + ".")
        fired_rules = [{**about[name], "reason": "; ".join(why[name])} for name in names]
        parts.extend(rule_lines(fired_rules, end="."))
        shown_context = context_lines + network_lines
        if shown_context:
            parts.append("Context, not a reason: " + "; ".join(shown_context) + ".")
        out.append(
            Explanation(
                row=i,
                officer_id=None if ids is None else ids[i],
                score=float(score[i]),
                sentences=sentences,
                factors=factors,
                rules_fired=names,
                rule_reasons=why,
                rules=fired_rules,
                text=" ".join(parts),
                context=shown_context,
                summary=summary,
            )
        )
    return out
