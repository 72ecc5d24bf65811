"""Metrics: top-k precision/recall with deterministic ties, equal-volume rule comparison."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.metrics import (
    auc_interval,
    bootstrap_intervals,
    compare_to_rule,
    evaluate_scores,
    rank_order,
    select_model,
    selection_scores,
    top_flags,
)


def test_top_k_by_hand() -> None:
    # 20 officers; scores descending 19..0; positives at ranks 0, 2, 5, 15.
    y = np.zeros(20, dtype=int)
    y[[0, 2, 5, 15]] = 1
    score = np.arange(20, 0, -1) / 20.0
    m = evaluate_scores(y, score, ks=(5, 10, 30), top_n=[3, 6])
    assert m["flagged@5%"] == 1 and m["precision@5%"] == 1.0 and m["recall@5%"] == 0.25
    assert m["flagged@10%"] == 2 and m["precision@10%"] == 0.5
    assert m["flagged@30%"] == 6 and m["precision@30%"] == pytest.approx(3 / 6)
    assert m["precision@top3"] == pytest.approx(2 / 3) and m["recall@top3"] == 0.5
    assert m["recall@top6"] == 0.75
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score))
    assert m["n"] == 20 and m["n_positive"] == 4 and m["base_rate"] == 0.2
    assert 0 <= m["brier"] <= 1


def test_ties_are_deterministic_and_not_by_row_position() -> None:
    score = np.zeros(1000)
    a, b = rank_order(score, seed=1), rank_order(score, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, np.arange(1000))
    assert not np.array_equal(a, rank_order(score, seed=2))
    # Ties never beat a higher score.
    s = np.array([1.0, 2.0, 2.0, 0.5])
    assert set(rank_order(s, 0)[:2]) == {1, 2}
    assert top_flags(s, 3).tolist() == [True, True, True, False]


def test_undefined_values_are_nan() -> None:
    m = evaluate_scores([0, 0, 0, 0], [3.0, 2.0, 1.0, 0.0], ks=(50,))
    assert m["precision@50%"] == 0.0
    assert math.isnan(m["recall@50%"]) and math.isnan(m["roc_auc"])
    assert math.isnan(m["average_precision"])
    assert math.isnan(m["brier"])  # margins are not probabilities


@pytest.mark.parametrize(
    ("y", "score", "message"),
    [
        ([0, 2], [0.1, 0.2], "0/1"),
        ([0, 1], [0.1], "expected 2 scores"),
        ([0, 1], [0.1, np.nan], "NaN"),
    ],
)
def test_bad_input_refused(y: list, score: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_scores(y, score)


def test_compare_to_rule_counts() -> None:
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    model = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3, 0.0, 0.05])
    rule = np.array([1, 0, 1, 1, 0, 0, 0, 0], dtype=bool)  # 1 TP, 2 FP
    r = compare_to_rule(y, model, rule, n_boot=200, seed=3)
    assert r["flagged"] == 3
    assert (r["rule_tp"], r["rule_fp"], r["model_tp"], r["model_fp"]) == (1, 2, 3, 0)
    assert (r["extra_tp"], r["fewer_fp"]) == (2, 2)
    assert r["pct_more_tp"] == 200.0 and r["pct_fewer_fp"] == 100.0
    lo, hi = r["ci95_pct_fewer_fp"]
    assert lo <= 100.0 <= hi
    assert r == compare_to_rule(y, model, rule, n_boot=200, seed=3)


def test_compare_to_rule_edge_cases() -> None:
    y = np.array([1, 0, 0, 1])
    r = compare_to_rule(y, [0.4, 0.3, 0.2, 0.1], [0, 0, 0, 0], n_boot=50)
    assert r["flagged"] == 0 and r["model_tp"] == 0
    assert r["pct_more_tp"] is None and r["ci95_pct_more_tp"] is None
    r = compare_to_rule(y, [0.4, 0.3, 0.2, 0.1], [0, 1, 0, 0], n_boot=50)
    assert r["rule_tp"] == 0 and r["model_tp"] == 1
    assert r["pct_more_tp"] is None  # no rule TP: a percentage is undefined
    assert r["pct_fewer_fp"] == 100.0


def test_bootstrap_interval_covers_truth_and_is_fast() -> None:
    rng = np.random.default_rng(0)
    n = 13000
    y = (rng.random(n) < 0.05).astype(int)
    model = y * 1.0 + rng.normal(0, 0.8, n)
    rule = (y * 0.5 + rng.normal(0, 0.8, n)) > 1.6
    t = time.perf_counter()
    r = compare_to_rule(y, model, rule, n_boot=1000, seed=0)
    elapsed = time.perf_counter() - t
    assert r["flagged"] == int(rule.sum()) > 0
    assert r["model_tp"] > r["rule_tp"]
    lo, hi = r["ci95_pct_more_tp"]
    assert lo < r["pct_more_tp"] < hi and lo > 0
    assert elapsed < 30


def _by_hand(y: np.ndarray, score: np.ndarray, rule: np.ndarray, n_boot: int, seed: int) -> dict:
    """The bootstrap intervals the straightforward way: resample by resample, the same
    draws (one chunk: n x n_boot is far below the chunk size), the model flagging the draws
    it ranks best, as many as the rule flags in the resample; the AUC by scikit-learn."""
    n = len(y)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n), dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[rank_order(score, seed)] = np.arange(n)
    more, fewer, aucs = [], [], []
    for row in idx:
        yy, flags = y[row], rule[row]
        m = int(flags.sum())
        r_tp = int((yy & flags).sum())
        m_tp = int(yy[np.argsort(rank[row], kind="stable")[:m]].sum())
        more.append(100.0 * (m_tp - r_tp) / r_tp if r_tp else np.nan)
        fewer.append(100.0 * (m_tp - r_tp) / (m - r_tp) if m - r_tp else np.nan)
        aucs.append(roc_auc_score(yy, score[row]) if 0 < yy.sum() < n else np.nan)

    def ci(values: list[float]) -> tuple[float, float] | None:
        finite = np.array(values)[np.isfinite(values)]
        return tuple(float(v) for v in np.percentile(finite, [2.5, 97.5])) if len(finite) else None

    return {"auc": ci(aucs), "more": ci(more), "fewer": ci(fewer)}


def test_bootstrap_intervals_are_those_of_each_resample_by_hand() -> None:
    rng = np.random.default_rng(11)
    n, n_boot, seed = 80, 300, 4
    y = (rng.random(n) < 0.2).astype(np.int8)
    scores = {
        "smooth": rng.random(n) + 0.6 * y,
        "ties": np.round(rng.random(n) + 0.4 * y, 1),  # runs of equal scores
    }
    rules = {"narrow": rng.random(n) < 0.1, "wide": (rng.random(n) + 0.3 * y) > 0.7}
    found = bootstrap_intervals(y, scores, rules, n_boot=n_boot, seed=seed)
    for name, score in scores.items():
        for rule_name, rule in rules.items():
            hand = _by_hand(y, score, rule, n_boot, seed)
            assert None not in (hand["auc"], hand["more"], hand["fewer"])
            got = found[name]["rules"][rule_name]
            assert got["ci95_pct_more_tp"] == pytest.approx(hand["more"], rel=1e-12)
            assert got["ci95_pct_fewer_fp"] == pytest.approx(hand["fewer"], rel=1e-12)
            alone = compare_to_rule(y, score, rule, n_boot=n_boot, seed=seed)
            assert alone["ci95_pct_more_tp"] == got["ci95_pct_more_tp"]
            assert alone["ci95_pct_fewer_fp"] == got["ci95_pct_fewer_fp"]
        assert found[name]["auc_ci95"] == pytest.approx(hand["auc"], rel=1e-12)
        assert auc_interval(y, score, n_boot=n_boot, seed=seed) == found[name]["auc_ci95"]
    # no resample, or a rule that flags no one: no interval
    none = bootstrap_intervals(y, scores, {"none": np.zeros(n, bool)}, n_boot=n_boot, seed=seed)
    assert none["ties"]["rules"]["none"] == {"ci95_pct_more_tp": None, "ci95_pct_fewer_fp": None}
    zero = bootstrap_intervals(y, scores, rules, n_boot=0, seed=seed)
    assert zero["smooth"]["auc_ci95"] is None
    assert zero["smooth"]["rules"]["wide"]["ci95_pct_more_tp"] is None


def test_select_model_penalizes_instability() -> None:
    results = {
        "steady": [{"precision@10%": 0.30}, {"precision@10%": 0.32}],
        "jumpy": [{"precision@10%": 0.10}, {"precision@10%": 0.60}],
    }
    # jumpy: mean 0.35, std 0.25 -> 0.225 at penalty 0.5; steady: 0.31 - 0.005 = 0.305.
    assert select_model(results) == "steady"
    assert select_model(results, penalty=0.0) == "jumpy"
    table = selection_scores(results, penalty=1.0)
    assert table["model"].tolist() == ["steady", "jumpy"]
    assert table.loc[0, "score"] == pytest.approx(0.31 - 0.01)
    assert select_model({"a": {"2017": {"auc": 0.7}}, "b": {"2017": {"auc": 0.8}}}, "auc") == "b"
    with pytest.raises(ValueError, match="lacks metric"):
        select_model(results, metric="auc")
