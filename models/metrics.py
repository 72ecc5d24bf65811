"""Evaluation metrics for early-intervention lists, and model selection.

An EIS is judged by the short list it hands to supervisors, so the headline
metrics are precision and recall among the top k% (or top n) of officers by
score. Two rules apply everywhere here:

* **Ties at the cutoff are broken deterministically**: officers are ordered by
  score (highest first), then by a random order drawn from ``seed``. The same
  inputs and seed always give the same list, and tied officers are not
  favoured by their row position.
* The list size for top k% is ``ceil(k / 100 * n)`` (at least one officer).

:func:`compare_to_rule` answers the question agencies ask: "flagging as many
officers as our current rule, how many more of them go on to have the outcome,
and how many fewer do not?", with a bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = [
    "auc_interval",
    "bootstrap_intervals",
    "compare_to_rule",
    "evaluate_scores",
    "rank_order",
    "selection_scores",
    "select_model",
    "top_flags",
]


def _binary(y: ArrayLike, what: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-d array of 0/1 labels, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if pd.isna(arr).any():
        raise ValueError(f"{what}: contains missing values; drop unlabeled rows first")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{what}: expected 0/1 labels, got values {sorted(values)[:5]}")
    return arr.astype(np.int8)


def _scores(score: ArrayLike, n: int, what: str = "score") -> np.ndarray:
    arr = np.asarray(score, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"{what}: expected {n} scores (one per label), got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{what}: contains NaN; every officer needs a score")
    return arr


def rank_order(score: ArrayLike, seed: int = 0) -> np.ndarray:
    """Row indices from highest to lowest score; ties in a seeded random order."""
    s = np.asarray(score, dtype=float)
    tiebreak = np.random.default_rng(seed).permutation(len(s))
    return np.lexsort((tiebreak, -s))


def top_flags(score: ArrayLike, n_flag: int, seed: int = 0) -> np.ndarray:
    """Boolean mask of the ``n_flag`` highest-scored rows (ties broken as in :func:`rank_order`)."""
    s = np.asarray(score, dtype=float)
    flags = np.zeros(len(s), dtype=bool)
    flags[rank_order(s, seed)[: max(0, int(n_flag))]] = True
    return flags


def _list_size(k: float, n: int) -> int:
    return max(1, math.ceil(k / 100.0 * n - 1e-9))


def evaluate_scores(
    y: ArrayLike,
    score: ArrayLike,
    ks: Iterable[float] = (1, 5, 10),
    top_n: int | Sequence[int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Precision/recall at top k% and top n, ROC AUC, average precision and Brier score.

    Keys: ``n``, ``n_positive``, ``base_rate``, ``precision@{k}%``, ``recall@{k}%``,
    ``flagged@{k}%``, ``precision@top{n}``, ``recall@top{n}``, ``roc_auc``,
    ``average_precision`` and ``brier``. Values that cannot be defined are NaN:
    recall, ROC AUC and average precision with no positive (or, for ROC AUC, no
    negative) label; Brier when the scores are not probabilities in [0, 1]
    (rules and margins are rankings, not probabilities).
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    yb = _binary(y)
    n = len(yb)
    if n == 0:
        raise ValueError("y: no rows to evaluate")
    s = _scores(score, n)
    order = rank_order(s, seed)
    hits = np.cumsum(yb[order])
    n_pos = int(yb.sum())
    out: dict[str, Any] = {"n": n, "n_positive": n_pos, "base_rate": n_pos / n}

    def at(m: int, label: str) -> None:
        m = min(m, n)
        tp = int(hits[m - 1])
        out[f"precision@{label}"] = tp / m
        out[f"recall@{label}"] = tp / n_pos if n_pos else math.nan

    for k in ks:
        if not 0 < k <= 100:
            raise ValueError(f"ks: each k is a percentage in (0, 100], got {k}")
        label = f"{k:g}%"
        m = _list_size(k, n)
        out[f"flagged@{label}"] = m
        at(m, label)
    tops = [] if top_n is None else [top_n] if isinstance(top_n, int) else list(top_n)
    for m in tops:
        if m < 1:
            raise ValueError(f"top_n: must be at least 1, got {m}")
        at(m, f"top{m}")
    both = 0 < n_pos < n
    out["roc_auc"] = float(roc_auc_score(yb, s)) if both else math.nan
    out["average_precision"] = float(average_precision_score(yb, s)) if n_pos else math.nan
    is_prob = bool(s.min() >= 0.0 and s.max() <= 1.0)
    out["brier"] = float(brier_score_loss(yb, s)) if is_prob else math.nan
    return out


def _pct(gain: np.ndarray | float, base: np.ndarray | float) -> np.ndarray:
    g = np.asarray(gain, dtype=float)
    b = np.asarray(base, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, 100.0 * g / np.where(b > 0, b, 1.0), np.nan)


def _ci(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return (float(lo), float(hi))


def _draws(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap resamples of ``n`` officers, chunk by chunk: ``n_boot`` rows of ``n``
    row indices drawn with replacement from ``default_rng(seed)``, about four million at a
    time. Every interval of this module draws its resamples here, so intervals that share
    ``n``, ``n_boot`` and ``seed`` see the same resamples."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        yield rng.integers(0, n, size=(b, n), dtype=np.int64)


def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n): how many times each officer is drawn in each resample."""
    b = idx.shape[0]
    cells = (idx + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(cells, minlength=b * n).reshape(b, n)


class _Ranked:
    """One model's scores in rank order (:func:`rank_order`): what each of its bootstrap
    intervals needs, per chunk of resamples, from the officers' multiplicities."""

    def __init__(self, yb: np.ndarray, s: np.ndarray, seed: int) -> None:
        self.order = rank_order(s, seed)
        y = yb[self.order]
        self.positives = np.flatnonzero(y)  # the ranks of the positive officers
        self.pos_order = self.order[self.positives]  # those officers
        self.pos_upto = np.cumsum(y, dtype=np.int64)  # positive officers ranked up to r
        by_rank = s[self.order]
        # rank order keeps equal scores together: per positive officer, the last rank of
        # its run of equal scores and the last rank of the run before (-1 for the first)
        new_run = np.r_[True, by_rank[1:] != by_rank[:-1]]
        run = np.cumsum(new_run) - 1
        last = np.flatnonzero(np.r_[new_run[1:], True])
        runs = run[self.positives]
        self.run_end = last[runs]
        self.run_before = np.where(runs > 0, last[np.maximum(runs - 1, 0)], -1)

    def cumulate(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per resample: the draws up to each rank (inclusive), the draws of each positive
        officer (in rank order) and of the positive officers up to each of them, after a
        leading 0 (so ``cum_pos[:, pos_upto[r]]`` is the positive draws up to rank r)."""
        cum_n = np.cumsum(np.take(counts, self.order, axis=1), axis=1)
        drawn = np.take(counts, self.pos_order, axis=1)
        cum_pos = np.zeros((len(counts), drawn.shape[1] + 1), dtype=np.int64)
        np.cumsum(drawn, axis=1, out=cum_pos[:, 1:])
        return cum_n, drawn, cum_pos

    def _tp(self, cum_pos: np.ndarray, rows: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Positive draws up to ``ranks`` (-1: none) of the resamples ``rows``."""
        upto = np.where(ranks >= 0, self.pos_upto[np.maximum(ranks, 0)], 0)
        return cum_pos[rows, upto]

    def top_tp(self, cum_n: np.ndarray, cum_pos: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Positives among the ``m[b, j]`` best-ranked draws of resample ``b``: the draws of
        the ranks before the rank where the m-th draw falls, and as many copies of that
        rank's officer as it takes to reach m (0 where m is 0)."""
        rows = np.arange(len(cum_n), dtype=np.int64)[:, None]
        pos = np.empty(m.shape, dtype=np.int64)
        for i, (cum, want) in enumerate(zip(cum_n, np.maximum(m, 1), strict=True)):
            pos[i] = np.searchsorted(cum, want, side="left")
        before_n = np.where(pos > 0, cum_n[rows, np.maximum(pos - 1, 0)], 0)
        before_tp = self._tp(cum_pos, rows, pos - 1)
        at_pos = self._tp(cum_pos, rows, pos) - before_tp > 0  # the officer at pos is positive
        return np.where(m > 0, before_tp + (m - before_n) * at_pos, 0)

    def auc(self, cum_n: np.ndarray, drawn: np.ndarray, cum_pos: np.ndarray) -> np.ndarray:
        """Per resample, the ROC AUC: the Mann-Whitney statistic, each officer counted as
        many times as drawn, a negative with the same score one half; NaN with one class.
        Summed over the positive officers only: each draw of one wins over the negatives
        ranked after its run of equal scores and half of those in its run."""
        rows = np.arange(len(cum_n), dtype=np.int64)[:, None]
        n_pos = cum_pos[:, -1]
        n_neg = cum_n[:, -1] - n_pos
        neg_end = cum_n[:, self.run_end] - self._tp(cum_pos, rows, self.run_end[None, :])
        before = np.maximum(self.run_before, 0)
        neg_before = np.where(
            self.run_before >= 0,
            cum_n[:, before] - self._tp(cum_pos, rows, self.run_before[None, :]),
            0,
        )
        below = n_neg[:, None] - neg_end  # negatives with a strictly lower score
        tied = neg_end - neg_before  # negatives with the same score
        wins = (drawn * (2 * below + tied)).sum(axis=1).astype(float) / 2.0  # whole halves
        denom = n_pos.astype(float) * n_neg.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, wins / np.where(denom > 0, denom, 1.0), np.nan)


def bootstrap_intervals(
    y: ArrayLike,
    scores: Mapping[str, ArrayLike],
    rule_flags: Mapping[str, ArrayLike],
    n_boot: int = 1000,
    seed: int = 0,
    auc: bool = True,
) -> dict[str, dict[str, Any]]:
    """The bootstrap intervals of several models on the same officers, in one pass over the
    resamples: per model name, ``auc_ci95`` (as :func:`auc_interval` gives it; None without
    ``auc``) and ``rules``: per rule name, ``ci95_pct_more_tp`` and ``ci95_pct_fewer_fp`` (as
    :func:`compare_to_rule` gives them against that rule's flags).

    Every interval is drawn from the same resamples (``n_boot`` rows of officers drawn with
    replacement from ``seed``), each held as how many times it draws each officer: a
    model's draws in rank order are then a gather and a cumulative sum rather than a sort
    of every resample, and the rules' counts are shared by the models. The model flags its
    best-ranked draws, as many as the rule flags in that resample. Every count is a whole
    number, so the figures do not depend on the order of the sums."""
    yb = _binary(y)
    n = len(yb)
    if n_boot < 0:
        raise ValueError(f"n_boot: must be >= 0, got {n_boot}")
    models = {k: _Ranked(yb, _scores(s, n, f"scores[{k!r}]"), seed) for k, s in scores.items()}
    rules: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, flags in rule_flags.items():
        rf = np.asarray(flags)
        if rf.shape != (n,):
            raise ValueError(f"rule_flags[{name!r}]: expected {n} flags, got shape {rf.shape}")
        rf = rf.astype(bool)
        rules[name] = (np.flatnonzero(rf), np.flatnonzero(rf & (yb == 1)))
    names = list(rules)
    empty = {"ci95_pct_more_tp": None, "ci95_pct_fewer_fp": None}
    out: dict[str, dict[str, Any]] = {
        k: {"auc_ci95": None, "rules": {r: dict(empty) for r in names}} for k in models
    }
    if n_boot == 0 or not models or n == 0:
        return out
    with_auc = auc and 0 < int(yb.sum()) < n
    aucs: dict[str, list[np.ndarray]] = {k: [] for k in models}
    more: dict[str, list[np.ndarray]] = {k: [] for k in models}
    fewer: dict[str, list[np.ndarray]] = {k: [] for k in models}
    for idx in _draws(n, n_boot, seed):
        counts = _multiplicities(idx, n)
        # per rule (columns): the draws it flags and how many of them are positive
        m = np.zeros((len(counts), len(names)), dtype=np.int64)
        r_tp = np.zeros_like(m)
        for j, r in enumerate(names):
            m[:, j] = counts[:, rules[r][0]].sum(axis=1)
            r_tp[:, j] = counts[:, rules[r][1]].sum(axis=1)
        for k, ranked in models.items():
            cum_n, drawn, cum_pos = ranked.cumulate(counts)
            if with_auc:
                aucs[k].append(ranked.auc(cum_n, drawn, cum_pos))
            if names:
                m_tp = ranked.top_tp(cum_n, cum_pos, m)
                r_fp, m_fp = m - r_tp, m - m_tp
                more[k].append(_pct(m_tp - r_tp, r_tp))
                fewer[k].append(_pct(r_fp - m_fp, r_fp))
    for k in models:
        if with_auc:
            out[k]["auc_ci95"] = _ci(np.concatenate(aucs[k]))
        if names:
            p_tp, p_fp = np.concatenate(more[k]), np.concatenate(fewer[k])
            for j, r in enumerate(names):
                out[k]["rules"][r] = {
                    "ci95_pct_more_tp": _ci(p_tp[:, j]),
                    "ci95_pct_fewer_fp": _ci(p_fp[:, j]),
                }
    return out


def auc_interval(
    y: ArrayLike, score: ArrayLike, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """A 95% percentile bootstrap interval of the ROC AUC: officers are resampled with
    replacement ``n_boot`` times (seeded); resamples with a single class are left out. None
    when ``n_boot`` is 0 or the AUC is undefined (one class).

    Vectorized (:func:`bootstrap_intervals`): in each resample an officer counts as many
    times as drawn, and the AUC is the weighted Mann-Whitney statistic over the distinct
    scores (ties count one half)."""
    yb = _binary(y)
    n = len(yb)
    s = _scores(score, n)
    if n_boot <= 0 or not 0 < int(yb.sum()) < n:
        return None
    found: tuple[float, float] | None = bootstrap_intervals(yb, {"m": s}, {}, n_boot, seed)["m"][
        "auc_ci95"
    ]
    return found


def compare_to_rule(
    y: ArrayLike,
    model_score: ArrayLike,
    rule_flags: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare a model with a rule at equal volume, with a bootstrap 95% interval.

    The model flags as many officers as the rule does (its top ``flagged``,
    ties broken as in :func:`rank_order`). Returned keys:

    * ``flagged``: officers flagged by the rule (and so by the model);
    * ``rule_tp``, ``rule_fp``, ``model_tp``, ``model_fp``: flagged officers
      with / without the outcome;
    * ``extra_tp``: additional true positives of the model (``model_tp - rule_tp``);
      ``fewer_fp``: fewer false positives (``rule_fp - model_fp``);
    * ``pct_more_tp`` = 100 * extra_tp / rule_tp and ``pct_fewer_fp`` = 100 * fewer_fp /
      rule_fp;
      None when the rule has no true (resp. false) positive, where a
      percentage is undefined;
    * ``ci95_pct_more_tp``, ``ci95_pct_fewer_fp``: (low, high) percentile
      bootstrap intervals; rows (officers) are resampled with replacement,
      the rule's flags stay with their officer and the model again flags as
      many as the rule does in the resample. Resamples where the percentage is
      undefined are left out; None when none is defined or ``n_boot`` is 0.

    With no officer flagged by the rule, every count is 0 and every
    percentage and interval None.
    """
    yb = _binary(y)
    n = len(yb)
    s = _scores(model_score, n, "model_score")
    rf = np.asarray(rule_flags)
    if rf.shape != (n,):
        raise ValueError(f"rule_flags: expected {n} flags, got shape {rf.shape}")
    rf = rf.astype(bool)
    if n_boot < 0:
        raise ValueError(f"n_boot: must be >= 0, got {n_boot}")
    flagged = int(rf.sum())
    order = rank_order(s, seed)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    model_flags = rank < flagged
    rule_tp = int((yb & rf).sum())
    model_tp = int(yb[model_flags].sum())
    rule_fp, model_fp = flagged - rule_tp, flagged - model_tp
    out: dict[str, Any] = {
        "flagged": flagged,
        "rule_tp": rule_tp,
        "rule_fp": rule_fp,
        "model_tp": model_tp,
        "model_fp": model_fp,
        "extra_tp": model_tp - rule_tp,
        "fewer_fp": rule_fp - model_fp,
        "pct_more_tp": None,
        "pct_fewer_fp": None,
        "ci95_pct_more_tp": None,
        "ci95_pct_fewer_fp": None,
        "n_boot": n_boot,
        "seed": seed,
    }
    if flagged == 0:
        return out
    p_tp = _pct(model_tp - rule_tp, rule_tp)
    p_fp = _pct(rule_fp - model_fp, rule_fp)
    out["pct_more_tp"] = None if np.isnan(p_tp) else float(p_tp)
    out["pct_fewer_fp"] = None if np.isnan(p_fp) else float(p_fp)
    if n_boot == 0:
        return out

    # the model flags its best-ranked draws, as many as the rule flags in the resample
    found = bootstrap_intervals(yb, {"model": s}, {"rule": rf}, n_boot, seed, auc=False)
    out.update(found["model"]["rules"]["rule"])
    return out


def _as_table(results: Any, metric: str) -> pd.DataFrame:
    """Normalize results to a frame with columns model, value (one row per split)."""
    if isinstance(results, pd.DataFrame):
        if "model" not in results.columns or metric not in results.columns:
            raise ValueError(f"results: a frame needs columns 'model' and {metric!r}")
        return pd.DataFrame({"model": results["model"], "value": results[metric]})
    if not isinstance(results, Mapping):
        raise ValueError("results: expected {model: [metrics per split]} or a DataFrame")
    rows = []
    for model, per_split in results.items():
        splits = per_split.values() if isinstance(per_split, Mapping) else per_split
        for m in splits:
            if metric not in m:
                raise ValueError(f"results[{model!r}]: a split lacks metric {metric!r}")
            rows.append({"model": model, "value": m[metric]})
    if not rows:
        raise ValueError("results: no model has any split result")
    return pd.DataFrame(rows)


def selection_scores(
    results: Any, metric: str = "precision@10%", penalty: float = 0.5
) -> pd.DataFrame:
    """Per model: mean, std (population) and count of ``metric`` across splits, and
    the selection score ``mean - penalty * std``, best first (ties by name).

    ``results`` is ``{model: [metrics dict per split]}``, ``{model: {split: metrics}}``
    or a DataFrame with a ``model`` column and one column per metric. NaN values
    (a split where the metric is undefined) are ignored.
    """
    if penalty < 0:
        raise ValueError(f"penalty: must be >= 0, got {penalty}")
    table = _as_table(results, metric)
    table["value"] = pd.to_numeric(table["value"], errors="coerce").astype(float)
    g = table.groupby("model", sort=True)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0).fillna(0.0), "n_splits": g.count()})
    out["score"] = out["mean"] - penalty * out["std"]
    out = out.reset_index().sort_values(
        ["score", "model"], ascending=[False, True], na_position="last"
    )
    return out.reset_index(drop=True)


def select_model(
    results_by_model_and_split: Any, metric: str = "precision@10%", penalty: float = 0.5
) -> str:
    """Name of the model with the best ``mean - penalty * std`` of ``metric`` across splits.

    Rewarding stability as well as level picks a model that holds up over
    time rather than one that was lucky in one year. See :func:`selection_scores`.
    """
    table = selection_scores(results_by_model_and_split, metric, penalty)
    if table["score"].isna().all():
        raise ValueError(f"select_model: {metric!r} is undefined (NaN) for every model")
    return str(table["model"].iloc[0])
