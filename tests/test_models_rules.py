"""Rules as scikit-learn estimators: the estimator contract, presets, config, sentences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.rules import (
    RULE_PRESETS,
    BestSingleRule,
    PeerOutlierRule,
    ThresholdRule,
    format_value,
    make_rule,
)


@parametrize_with_checks([ThresholdRule(), PeerOutlierRule(), BestSingleRule()])
def test_sklearn_estimator_contract(estimator: object, check: Any) -> None:
    check(estimator)


COLUMNS = [
    "complaint_90d_count",
    "complaint_180d_count",
    "complaint_1y_count",
    "use_of_force_90d_count",
    "use_of_force_180d_count",
    "use_of_force_1y_count",
    "use_of_force_1y_count_unit_pct",
    "complaint_1y_count_unit_pct",
    "use_of_force_180d_count_unit_z",
]
DESCRIPTIONS = {
    "complaint_180d_count": "{value} complaints in the last 180 days",
    "use_of_force_90d_count": "{value} use-of-force reports in the last 90 days",
}


@pytest.fixture
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.DataFrame(
        [
            [0, 4, 5, 0, 1, 2, 50.0, 99.0, 0.1],  # cmpd: complaints
            [2, 2, 2, 3, 3, 6, 97.0, 70.0, 2.5],  # cmpd: force; miami: both; iapro: force
            [1, 1, 1, 0, 0, 0, 10.0, 20.0, -0.5],  # nothing
            [0, 0, 0, 2, 2, 2, np.nan, 95.0, np.nan],  # iapro: complaints pct
            [0, 3, 3, 3, 3, 3, 80.0, 80.0, 1.0],  # cmpd: both
        ],
        columns=COLUMNS,
    )
    y = np.array([1, 1, 0, 0, 1])
    return X, y


def test_presets_flag_the_expected_rows(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    expected = {
        "cmpd": [1, 1, 0, 0, 1],
        "miami_dade": [0, 1, 0, 0, 1],
        "iapro_top_percentile": [1, 1, 0, 1, 0],
    }
    for name, flags in expected.items():
        rule = make_rule(name).fit(X, y)
        assert rule.predict(X).tolist() == flags, name
        assert ((rule.decision_function(X) > 0).astype(int)).tolist() == flags, name
        assert rule.get_params()["name"] == name


def test_decision_function_ranks_by_conditions_then_distance(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = frame
    d = make_rule("cmpd").fit(X, y).decision_function(X)
    assert d[4] > d[0] > 0 and d[4] > d[1] > 0  # two conditions beat one
    more = X.iloc[[0]].assign(complaint_180d_count=6)
    assert (
        make_rule("cmpd").fit(X, y).decision_function(more)[0] > d[0]
    )  # further past ranks higher
    assert d[2] < 0 and d[3] < 0


def test_explain_row_sentences(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    rule = make_rule("cmpd").fit(X, y)
    assert rule.explain_row(X.iloc[0], DESCRIPTIONS) == [
        "3 or more complaints in the last 180 days (this officer: 4)"
    ]
    assert rule.explain_row(X.iloc[[4]], DESCRIPTIONS) == [
        "3 or more complaints in the last 180 days (this officer: 3)",
        "3 or more use-of-force reports in the last 90 days (this officer: 3)",
    ]
    assert rule.explain_row(X.iloc[1].to_dict()) == [
        "use_of_force_90d_count >= 3 (this officer: 3)"
    ]
    assert rule.explain_row(X.iloc[2]) == []
    assert rule.describe(DESCRIPTIONS) == (
        "3 or more complaints in the last 180 days or 3 or more use-of-force reports in the "
        "last 90 days"
    )
    assert rule.fired(X).shape == (5, 2)


def test_positions_with_arrays_and_all_combination() -> None:
    X = np.array([[1.0, 5.0], [3.0, 5.0], [3.0, 1.0], [np.nan, 9.0]])
    y = np.array([0, 1, 0, 1])
    rule = ThresholdRule(
        [{"column": 0, "op": ">=", "value": 2}, {"column": 1, "op": ">", "value": 4}],
        combine="all",
    ).fit(X, y)
    assert rule.predict(X).tolist() == [0, 1, 0, 0]  # missing never satisfies
    assert rule.explain_row(X[1]) == ["x0 >= 2 (this officer: 3)", "x1 > 4 (this officer: 5)"]
    with pytest.raises(ValueError, match="no column names"):
        ThresholdRule([{"column": "a", "op": ">=", "value": 1}]).fit(X, y)


def test_best_single_rule_learns_on_training_data_only() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.1).astype(int)
    X = pd.DataFrame(
        {
            "complaint_1y_count": rng.poisson(1 + 3 * y),  # informative
            "use_of_force_1y_count": rng.poisson(2, n),  # noise
            "tenure_years": rng.uniform(0, 30, n),  # not a count: never a candidate
        }
    )
    rule = BestSingleRule().fit(X, y)
    assert rule.rule_["column"] == "complaint_1y_count"
    assert 0.01 <= rule.train_flag_rate_ <= 0.10
    flags = X["complaint_1y_count"] >= rule.rule_["value"]
    assert rule.train_precision_ == pytest.approx(y[flags].mean())
    # Exhaustive check of the criterion.
    best = max(
        (y[X[c] >= k].mean(), c, k)
        for c in ["complaint_1y_count", "use_of_force_1y_count"]
        for k in range(1, 11)
        if 0.01 <= (X[c] >= k).mean() <= 0.10
    )
    assert rule.train_precision_ == pytest.approx(best[0])
    # Refit on other labels changes the choice: fit uses only what it is given.
    y2 = (X["use_of_force_1y_count"] >= 5).astype(int).to_numpy()
    assert BestSingleRule().fit(X, y2).rule_["column"] == "use_of_force_1y_count"


def test_make_rule_from_config_and_errors(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    rule = make_rule(
        {
            "all": [
                {"column": "complaint_1y_count", "op": ">=", "value": 2},
                {"column": "use_of_force_1y_count", "op": ">=", "value": 3},
            ],
            "name": "both",
        }
    )
    assert rule.fit(X, y).predict(X).tolist() == [0, 1, 0, 0, 1]
    assert rule.name == "both"
    peer = make_rule(
        {"peer_outlier": {"indicators": ["use_of_force_180d_count"], "pct": None, "z": 2}}
    )
    assert peer.fit(X, y).predict(X).tolist() == [0, 1, 0, 0, 0]
    assert isinstance(make_rule({"best_single": {"max_k": 3}}), BestSingleRule)
    assert set(RULE_PRESETS) >= {"cmpd", "miami_dade", "iapro_top_percentile", "best_single"}
    assert clone(make_rule("cmpd")).get_params() == make_rule("cmpd").get_params()
    with pytest.raises(ValueError, match="unknown rule preset"):
        make_rule("nope")
    with pytest.raises(ValueError, match="exactly one of"):
        make_rule({"any": [], "all": []})
    with pytest.raises(ValueError, match="op must be one of"):
        make_rule({"any": [{"column": "a", "op": "=>", "value": 1}]})
    with pytest.raises(ValueError, match="does not have"):
        make_rule({"any": [{"column": "missing", "op": ">=", "value": 1}]}).fit(X, y)


def test_protected_attributes_are_refused(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    with pytest.raises(ValueError, match="protected"):
        make_rule("cmpd").fit(X.assign(race_black=0), y)


def test_sentences_with_feature_spec_templates(frame: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = frame
    templates = {
        "complaint_180d_count": "{value:.0f} complaints in the last 180 days",
        "use_of_force_1y_count_unit_pct": (
            "use-of-force reports in the last year: higher than {value:.0f}% of the other "
            "officers of unit {unit}"
        ),
    }
    assert make_rule("cmpd").fit(X, y).explain_row(X.iloc[0], templates) == [
        "3 or more complaints in the last 180 days (this officer: 4)"
    ]
    assert make_rule("iapro_top_percentile").fit(X, y).explain_row(X.iloc[1], templates) == [
        "use-of-force reports in the last year: higher than 95% of the other officers of "
        "their unit (this officer: 97)"
    ]


def test_templates_read_in_the_singular_for_one() -> None:
    from models.rules import render_template

    t = "{value:.0f} use-of-force reports in the last year"
    assert render_template(t, value=1.0) == "1 use-of-force report in the last year"
    assert render_template(t, value=11) == "11 use-of-force reports in the last year"
    assert render_template("{value:.0f} complaints in 90 days", value=1) == "1 complaint in 90 days"


def test_a_condition_on_a_network_share_reads_plainly() -> None:
    """A network share's template quotes another column of the row; a rule's reason (true of
    every officer it flags) names the column and the threshold instead."""
    from features.spec import default_spec

    templates = {c.name: c.description_template for c in default_spec().columns}
    share = "complaint_network_3y_complaint_career_sustained_share"
    count = "complaint_network_3y_count"
    X = pd.DataFrame({share: [0.6, 0.2], count: [5.0, 5.0]})
    rule = ThresholdRule(
        [{"column": share, "op": ">=", "value": 0.5}, {"column": count, "op": ">=", "value": 4}],
        combine="all",
    ).fit(X, [1, 0])
    assert rule.explain_row(X.iloc[0], templates) == [
        f"{share} >= 0.5 (this officer: 0.6)",
        "4 or more co-accused in the last 3 years (this officer: 5)",
    ]


def test_describe_reads_as_a_sentence_fitted_or_not() -> None:
    words = {
        "complaint_180d_count": "{value:.0f} complaints in the last 180 days",
        "use_of_force_90d_count": "{value:.0f} use-of-force reports in the last 90 days",
        "use_of_force_1y_count": "{value:.0f} use-of-force reports in the last year",
        "complaint_1y_count": "{value:.0f} complaints in the last year",
    }
    assert make_rule("cmpd").describe(words) == (
        "3 or more complaints in the last 180 days or 3 or more use-of-force reports in the "
        "last 90 days"
    )
    assert make_rule("iapro_top_percentile").describe(words) == (
        "in the top 5% of their unit for use-of-force reports in the last year or in the top "
        "5% of their unit for complaints in the last year"
    )
    z = make_rule({"peer_outlier": {"indicators": ["complaint_1y_count"], "pct": None, "z": 2}})
    assert z.describe(words) == (
        "2 or more standard deviations above the mean of their unit for complaints in the last year"
    )
    assert "1% to 10% of officers" in make_rule("best_single").describe(words)
    X = pd.DataFrame({"complaint_180d_count": [0, 3, 1, 5, 0, 2], "x": [0] * 6})
    fitted = make_rule("best_single").fit(X, np.array([0, 1, 0, 1, 0, 0]))
    k = format_value(fitted.rule_["value"])
    assert fitted.describe(words).startswith(f"{k} or more complaints in the last 180 days")


def test_best_single_counts_are_those_of_the_rows_by_k_table() -> None:
    """The histogram count of "value >= k" (and of its positives) that BestSingleRule
    searches equals the plain rows x k comparison table, NaN, fractions, negatives and
    infinities included; and the rule it learns is the one the table's search picks."""
    from models.rules import _at_least_counts

    rng = np.random.default_rng(7)
    n, max_k = 3000, 10
    values = np.floor(rng.exponential(2.0, n)) + np.where(rng.random(n) < 0.2, 0.5, 0.0)
    values[rng.random(n) < 0.1] = np.nan
    values[:5] = [-1.0, np.inf, -np.inf, 10.0, 40.0]
    positive = rng.random(n) < 0.3
    ks = np.arange(1, max_k + 1, dtype=float)
    table = values[:, None] >= ks[None, :]
    n_flag, tp = _at_least_counts(values, positive, max_k)
    assert n_flag.tolist() == table.sum(axis=0).tolist()
    assert tp.tolist() == (table & positive[:, None]).sum(axis=0).tolist()
    assert n_flag[0] > n_flag[-1] > 0

    X = pd.DataFrame(
        {
            "a_count": np.floor(rng.exponential(1.0, n)),
            "b_count": np.floor(rng.exponential(3.0, n) + 2.0 * positive),
        }
    )
    rule = BestSingleRule(max_k=max_k).fit(X, positive.astype(int))
    best: tuple = ()
    for j, col in enumerate(X.columns):
        flags = X[col].to_numpy()[:, None] >= ks[None, :]
        for kk in range(max_k):
            m, hit = int(flags[:, kk].sum()), int((flags[:, kk] & positive).sum())
            rate = m / n
            key = (-max(0.01 - rate, rate - 0.10, 0.0), hit / m if m else 0.0, hit, -j, -kk)
            if not best or key > best[0]:
                best = (key, col, kk + 1)
    assert rule.rule_ == {"column": best[1], "op": ">=", "value": float(best[2])}
