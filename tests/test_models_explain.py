"""Explanations: contributions add up to the margin; sentences are exact and supportive."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.explain import contributions, describe_factor, explain, model_margin
from models.rules import make_rule

FEATURES = [
    "complaint_90d_count",
    "complaint_180d_count",
    "use_of_force_90d_count",
    "use_of_force_180d_count",
    "complaint_1y_sustained",
    "tenure_years",
]
DESCRIPTIONS = {
    "use_of_force_180d_count": "{value} use-of-force reports in the last 6 months",
    "complaint_180d_count": "{value} complaints in the last 6 months",
    "use_of_force_90d_count": "{value} use-of-force reports in the last 90 days",
}


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 600
    X = pd.DataFrame(rng.poisson(1.5, (n, len(FEATURES))).astype(float), columns=FEATURES)
    X["tenure_years"] = rng.uniform(0, 25, n)
    X.loc[X.index[::9], "complaint_1y_sustained"] = np.nan
    logit = 0.8 * X["use_of_force_180d_count"] + 0.5 * X["complaint_180d_count"] - 4
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return X, y


def _models() -> dict[str, Any]:
    return {
        "lr": make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()),
        "rf": make_pipeline(
            SimpleImputer(), RandomForestClassifier(30, max_depth=5, random_state=0)
        ),
        "hgb": HistGradientBoostingClassifier(max_iter=30, random_state=0),
    }


@pytest.mark.parametrize("name", ["lr", "rf", "hgb"])
def test_contributions_add_up_to_the_margin(
    name: str, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = data
    model = _models()[name].fit(X, y)
    c = contributions(model, X)
    assert c.shape == X.shape and list(c.columns) == FEATURES and c.index.equals(X.index)
    total = c.sum(axis=1).to_numpy() + c.attrs["base_value"]
    np.testing.assert_allclose(total, model_margin(model, X), atol=1e-6)
    assert c.attrs["method"] == ("linear" if name == "lr" else "tree")
    # The informative indicator carries the most weight on average.
    assert c.abs().mean().idxmax() in {"use_of_force_180d_count", "complaint_180d_count"}


def test_large_forests_fall_back_to_path_attribution(
    data: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.explain as ex

    X, y = data
    model = _models()["rf"].fit(X, y)
    assert ex.tree_shap_cost(model[-1], 10) > 0
    monkeypatch.setattr(ex, "TREE_SHAP_BUDGET", 0.0)
    c = contributions(model, X)
    assert c.attrs["method"] == "tree_path"
    total = c.sum(axis=1).to_numpy() + c.attrs["base_value"]
    np.testing.assert_allclose(total, model_margin(model, X), atol=1e-6)
    assert contributions(model, X.iloc[:5], tree_exact=True).attrs["method"] == "tree"


def test_linear_contributions_are_coef_times_centered_input(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = data
    model = _models()["lr"].fit(X, y)
    c = contributions(model, X.iloc[:5])
    Z = model[:-1].transform(X.iloc[:5])  # scaled: training mean is 0
    np.testing.assert_allclose(c.to_numpy(), model[-1].coef_.ravel() * Z)
    assert c.attrs["base_value"] == pytest.approx(model[-1].intercept_[0])


def test_generic_fallback_adds_up(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    model = _Bumpy()
    c = contributions(model, X.iloc[:4].fillna(0), background=X.iloc[:30].fillna(0))
    assert c.attrs["method"] == "kernel"
    total = c.sum(axis=1).to_numpy() + c.attrs["base_value"]
    np.testing.assert_allclose(total, model_margin(model, X.iloc[:4]), atol=1e-6)


def test_protected_and_non_numeric_inputs_refused(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    model = _models()["lr"].fit(X, y)
    with pytest.raises(ValueError, match="protected"):
        contributions(model, X.assign(sex=1.0))
    with pytest.raises(ValueError, match="numeric"):
        contributions(model, X.assign(unit="12"))


class _Bumpy:
    """A non-linear, non-tree model (only predict_proba): needs the generic explainer."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        a = X.to_numpy(dtype=float)
        z = np.sin(a[:, 0]) * a[:, 3] + 0.1 * a[:, 5] - 1
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


class _Fixed:
    """A stand-in linear model with known coefficients, for exact sentences."""

    def __init__(self, coef: list[float]) -> None:
        self.coef_ = np.array([coef])
        self.intercept_ = np.array([-1.0])

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return X.to_numpy(dtype=float) @ self.coef_.ravel() + self.intercept_[0]


def test_sentences_for_a_hand_built_case() -> None:
    X = pd.DataFrame(
        {
            "use_of_force_180d_count": [4.0, 0.0],
            "complaint_180d_count": [3.0, 1.0],
            "tenure_years": [2.0, 20.0],
            "use_of_force_90d_count": [1.0, 0.0],
        }
    )
    context = pd.DataFrame(
        {
            "officer_id": ["A17", "B02"],
            "unit": ["12", "7"],
            "rank": ["police officer", "sergeant"],
            "use_of_force_180d_count_unit_ratio": [3.1, 0.0],
            "complaint_180d_count_rank_ratio": [1.5, 0.5],
            "complaint_180d_count_unit_ratio": [2.0, 0.5],
            "complaint_90d_count": [1.0, 0.0],  # only a rule reads it
        }
    )
    model = _Fixed([1.0, 0.5, -0.1, 0.01])
    with_90d = X.assign(complaint_90d_count=[1.0, 0.0])
    rules = {
        "cmpd": make_rule("cmpd").fit(X, [1, 0]),
        "miami_dade": make_rule("miami_dade").fit(with_90d, [1, 0]),
    }
    (a, b) = explain(
        model, X, DESCRIPTIONS, context=context, rules=rules, top_k=2, background=X.iloc[[1]]
    )
    # Contributions relative to officer B: force 4.0, tenure 1.8, complaints 1.0, ...
    # tenure is an attribute: context beside the reasons, never a reason
    assert a.officer_id == "A17"
    assert a.sentences == [
        "4 use-of-force reports in the last 6 months, 3.1 times the average of unit 12",
        "3 complaints in the last 6 months, 2.0 times the average of unit 12",
    ]
    assert [f["feature"] for f in a.factors] == [
        "use_of_force_180d_count",
        "complaint_180d_count",
    ]
    assert a.context == ["tenure_years: 2"]
    assert a.factors[0]["contribution"] == pytest.approx(4.0)
    assert a.factors[0]["peer_ratio"] == 3.1 and a.factors[0]["peer_group"] == "unit 12"
    assert a.rules_fired == ["cmpd"]
    assert a.rule_reasons == {
        "cmpd": ["3 or more complaints in the last 6 months (this officer: 3)"]
    }
    assert a.text == (
        "Suggested for a supportive review (not a finding). Indicators: 4 use-of-force reports "
        "in the last 6 months, 3.1 times the average of unit 12; 3 complaints in the last 6 "
        "months, 2.0 times the average of unit 12. Also meets the Charlotte-Mecklenburg-style "
        "threshold rule: 3 or more complaints in the last 6 months (this officer: 3). Context, "
        "not a reason: tenure_years: 2."
    )
    # the rule travels in words: its title and the whole rule, beside what the officer met
    assert a.rules == [
        {
            "name": "cmpd",
            "title": "Charlotte-Mecklenburg-style threshold rule",
            "description": "3 or more complaints in the last 6 months or 3 or more "
            "use-of-force reports in the last 90 days",
            "reason": "3 or more complaints in the last 6 months (this officer: 3)",
        }
    ]
    assert a.score == pytest.approx(model.decision_function(X)[0])
    # Officer B is the reference: nothing pushes toward a flag, no rule fires.
    assert b.sentences == [] and b.rules_fired == [] and b.factors == []
    assert b.to_dict()["officer_id"] == "B02"


def test_an_indicator_and_its_peer_statistics_are_one_reason() -> None:
    X = pd.DataFrame(
        {
            "use_of_force_180d_count": [4.0, 0.0],
            "use_of_force_180d_count_unit_ratio": [3.1, 0.0],
            "use_of_force_180d_count_unit_z": [2.5, -0.5],
            "complaint_180d_count_rank_pct": [90.0, 10.0],  # its count is not an input
            "tenure_years": [2.0, 20.0],
        }
    )
    context = pd.DataFrame({"officer_id": ["A17", "B02"], "unit": ["12", "7"]})
    model = _Fixed([1.0, 0.5, 0.2, 0.01, -0.1])
    (a, _) = explain(model, X, DESCRIPTIONS, context=context, top_k=3, background=X.iloc[[1]])
    # force: 4.0 + 0.5 * 3.1 + 0.2 * 3.0 = 6.15; complaint percentile 0.8; tenure 1.8 (context)
    assert [f["feature"] for f in a.factors] == [
        "use_of_force_180d_count",
        "complaint_180d_count_rank_pct",
    ]
    assert a.context == ["tenure_years: 2"]
    assert a.factors[0]["contribution"] == pytest.approx(6.15)
    assert a.factors[0]["inputs"] == [
        "use_of_force_180d_count",
        "use_of_force_180d_count_unit_ratio",
        "use_of_force_180d_count_unit_z",
    ]
    assert a.sentences[0] == (
        "4 use-of-force reports in the last 6 months, 3.1 times the average of unit 12"
    )
    assert sum(f["contribution"] for f in a.factors) == pytest.approx(6.15 + 0.8)


def test_network_indicators_read_as_counts_of_co_accused() -> None:
    from features.spec import default_spec

    descriptions = {c.name: c.description_template for c in default_spec().columns}
    share = "complaint_network_3y_complaint_career_sustained_share"
    X = pd.DataFrame(
        {
            share: [0.6, np.nan],
            "complaint_network_3y_count": [5.0, 0.0],
            "complaint_network_3y_force_complaint_career_count_max": [7.0, np.nan],
        }
    )
    model = _Fixed([1.0, 0.0, 0.1])
    (a, b) = explain(
        model, X.fillna(0.0), descriptions, top_k=3, background=X.fillna(0.0).iloc[[1]]
    )
    # another officer's record is context beside the reasons, never a reason (issue 17 item 7)
    assert a.sentences == [] and a.factors == []
    assert a.context == [
        "one of the officer's co-accused in the last 3 years had 7 excessive-force complaints",
        "3 of the officer's 5 co-accused in the last 3 years had a sustained finding",
    ]
    assert a.summary.startswith("No behaviour of this officer pushed the score up")
    assert "carried by the co-accused (one of the officer's co-accused" in a.summary
    assert b.sentences == []


def test_indicators_at_zero_are_no_reason() -> None:
    X = pd.DataFrame(
        {
            "use_of_force_180d_count": [0.0, 2.0],
            "complaint_180d_count": [3.0, 0.0],
            "tenure_years": [2.0, 20.0],
        }
    )
    # a model in which having no force report pushes toward a flag (trees can do that)
    model = _Fixed([-1.0, 0.5, -0.1])
    (a, _) = explain(model, X, DESCRIPTIONS, top_k=3, background=X.iloc[[1]])
    # contributions: force +2.0 (value 0: skipped), tenure +1.8 (context), complaints +1.5
    assert [f["feature"] for f in a.factors] == ["complaint_180d_count"]
    assert a.context == ["tenure_years: 2"]


def test_describe_factor_variants() -> None:
    assert describe_factor("x_count", 2.5, None) == "x_count: 2.5"
    assert (
        describe_factor("complaint_180d_count", 3, DESCRIPTIONS, 1.54, "rank", "sergeant")
        == "3 complaints in the last 6 months, 1.5 times the average of rank sergeant"
    )
    assert (
        describe_factor("complaint_180d_count", 3, DESCRIPTIONS, 2.0, "unit", None)
        == "3 complaints in the last 6 months, 2.0 times the unit average"
    )


def test_explain_is_fast_for_a_large_department(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    model = _models()["lr"].fit(X, y)
    big = pd.concat([X] * 22, ignore_index=True)  # 13,200 officers
    import time

    t = time.process_time()  # CPU seconds: the work done, not the other tests' load
    out = explain(model, big, DESCRIPTIONS, top_k=3)
    assert len(out) == len(big)
    assert time.process_time() - t < 10
    assert all(len(e.factors) <= 3 for e in out)
    assert all(f["contribution"] > 0 for e in out for f in e.factors)


@pytest.mark.slow
def test_end_to_end_on_a_synthetic_agency(tmp_path: Any) -> None:
    """Real features and templates: rules and a model explained with unit context."""
    from ews.synth import synthesize
    from features.build import build_features
    from features.labels import build_labels
    from features.spec import default_spec
    from models.inputs import numeric_feature_columns

    synthesize(tmp_path / "pkg", officers=200, years=5, seed=3, quiet=True)
    dates = ["2013-01-01", "2014-01-01"]
    frame = build_features(tmp_path / "pkg", dates).merge(
        build_labels(tmp_path / "pkg", dates, "sustained_or_force"),
        on=["officer_id", "as_of_date"],
    )
    cols = numeric_feature_columns(frame)
    assert "unit" not in cols and "officer_id" not in cols
    train = frame[frame["as_of_date"] == frame["as_of_date"].min()]
    test = frame[frame["as_of_date"] == frame["as_of_date"].max()].reset_index(drop=True)
    model = make_pipeline(
        SimpleImputer(keep_empty_features=True), StandardScaler(), LogisticRegression(max_iter=500)
    ).fit(train[cols], train["label"])
    rules = {n: make_rule(n).fit(train[cols], train["label"]) for n in ("iapro_top_percentile",)}
    descriptions = {c.name: c.description_template for c in default_spec().columns}
    out = explain(
        model,
        test[cols],
        descriptions,
        context=test[["officer_id", "unit", "rank"]],
        rules=rules,
    )
    assert [e.officer_id for e in out] == test["officer_id"].tolist()
    flagged = rules["iapro_top_percentile"].predict(test[cols]) == 1
    assert [bool(e.rules_fired) for e in out] == flagged.tolist()
    sentences = [s for e in out for s in e.sentences]
    assert sentences and not any("{" in s for s in sentences)
    units = set(test["unit"].dropna())
    assert any(f"unit {u}" in s for s in sentences for u in units)


def _cut(src: Any, dst: Any, t: pd.Timestamp) -> None:
    """The package as it was known at ``t`` (CONTRACT.md, knowledge time)."""
    from ews.contract import read_normalized, write_normalized

    pkg = read_normalized(src)
    off = pkg.officers[pkg.officers["appointed_date"] < t].copy()
    off.loc[off["separation_date"] >= t, "separation_date"] = pd.NaT
    ev = pkg.events[
        (pkg.events["reported_date"].fillna(pkg.events["event_date"]) < t)
        & pkg.events["officer_id"].isin(off["officer_id"])
    ].copy()
    late = ev["finding_date"] >= t
    ev.loc[late, "finding"] = None
    ev.loc[late, "finding_date"] = pd.NaT
    asg = pkg.assignments[
        (pkg.assignments["start_date"] < t) & pkg.assignments["officer_id"].isin(off["officer_id"])
    ].copy()
    asg.loc[asg["end_date"] >= t, "end_date"] = pd.NaT
    write_normalized(dst, off, ev, asg)


@pytest.mark.slow
def test_explanations_do_not_change_when_the_future_is_cut(tmp_path: Any) -> None:
    """Knowledge time: explanations at t from the full package equal those from the
    package cut at t (events, findings, officers and assignments known only before t)."""
    from ews.synth import synthesize
    from features.build import build_features
    from features.spec import default_spec
    from models.inputs import numeric_feature_columns

    t = pd.Timestamp("2013-07-01")
    synthesize(tmp_path / "full", officers=150, years=5, seed=5, quiet=True)
    _cut(tmp_path / "full", tmp_path / "cut", t)
    full = build_features(tmp_path / "full", [t.date()])
    cut = build_features(tmp_path / "cut", [t.date()])
    cols = numeric_feature_columns(full)
    rng = np.random.default_rng(0)
    y = (full["complaint_1y_count"].fillna(0) + rng.random(len(full)) > 1.5).astype(int)
    model = make_pipeline(
        SimpleImputer(keep_empty_features=True), StandardScaler(), LogisticRegression(max_iter=500)
    ).fit(full[cols], y)
    rules = {"cmpd": make_rule("cmpd").fit(full[cols], y)}
    descriptions = {c.name: c.description_template for c in default_spec().columns}

    def texts(frame: pd.DataFrame) -> list[tuple[Any, str]]:
        frame = frame.sort_values("officer_id").reset_index(drop=True)
        out = explain(
            model,
            frame[cols],
            descriptions,
            context=frame[["officer_id", "unit", "rank"]],
            rules=rules,
            background=full[cols],
        )
        return [(e.officer_id, e.text) for e in out]

    from ews.contract import read_normalized

    assert len(read_normalized(tmp_path / "cut").events) < len(
        read_normalized(tmp_path / "full").events
    )
    result = texts(full)
    assert sum("Indicators:" in text for _, text in result) > len(result) // 4
    assert result == texts(cut)


def test_attributes_and_exposure_are_context_never_reasons() -> None:
    """Tenure, age, arrests made and time since the last event may drive a score, but the
    explanation names them as context beside the reasons, never as a reason."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from models.explain import explain, is_context

    assert is_context("tenure_years") and is_context("arrest_1y_count")
    assert is_context("complaint_career_days_since") and not is_context("complaint_1y_count")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "tenure_years": rng.uniform(1, 30, 300),
            "arrest_1y_count": rng.poisson(20, 300).astype(float),
            "complaint_1y_count": rng.poisson(1, 300).astype(float),
        }
    )
    y = ((X["tenure_years"] > 15) | (X["complaint_1y_count"] > 1)).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    descriptions = {
        "tenure_years": "{value:.1f} years of service",
        "arrest_1y_count": "{value:.0f} arrests in the last year",
        "complaint_1y_count": "{value:.0f} complaints in the last year",
    }
    out = explain(model, X, descriptions=descriptions, top_k=3)
    assert any(e.context for e in out)  # tenure drives many of these scores
    for e in out:
        assert all(not is_context(f["feature"]) for f in e.factors)
        assert not any("years of service" in s for s in e.sentences)
        if e.context:
            assert "Context, not a reason: " in e.text


def test_rules_met_for_the_same_condition_are_named_once_and_peer_rules_name_the_unit() -> None:
    from models.explain import rule_lines

    X = pd.DataFrame(
        {
            "use_of_force_90d_count": [3.0, 0.0, 0.0],
            "complaint_180d_count": [0.0, 0.0, 0.0],
            "complaint_90d_count": [0.0, 0.0, 0.0],
            "use_of_force_1y_count_unit_pct": [99.0, 97.0, 10.0],
            "complaint_1y_count_unit_pct": [10.0, 10.0, 10.0],
        }
    )
    context = pd.DataFrame({"unit": ["018", None, "007"], "officer_id": ["A", "B", "C"]})
    descriptions = {
        "use_of_force_90d_count": "{value:.0f} use-of-force reports in the last 90 days",
        "use_of_force_1y_count": "{value:.0f} use-of-force reports in the last year",
        "complaint_1y_count": "{value:.0f} complaints in the last year",
    }
    y = [1, 0, 1]
    rules = {
        "cmpd": make_rule("cmpd").fit(X, y),
        "miami_dade": make_rule("miami_dade").fit(X, y),
        "iapro_top_percentile": make_rule("iapro_top_percentile").fit(X, y),
    }
    a, b, c = explain(
        _Fixed([0.1] * 5), X, descriptions, context=context, rules=rules, background=X.iloc[[2]]
    )
    assert (
        "Also meets the Charlotte-Mecklenburg-style threshold rule and the Miami-Dade-style "
        "threshold rule: 3 or more use-of-force reports in the last 90 days (this officer: 3)."
        in a.text
    )
    assert a.text.count("3 or more use-of-force reports in the last 90 days") == 1
    assert (
        "Also meets the top-5%-of-the-unit rule (IAPro style): in the top 5% of unit 018 for "
        "use-of-force reports in the last year." in a.text
    )
    assert "cmpd" not in a.text and "iapro" not in a.text.replace("(IAPro style)", "")
    # an officer whose unit is unknown: "their unit"
    assert b.rule_reasons == {
        "iapro_top_percentile": [
            "in the top 5% of their unit for use-of-force reports in the last year"
        ]
    }
    assert c.rules_fired == []
    iapro = {r["name"]: r for r in a.rules}["iapro_top_percentile"]
    assert iapro["description"] == (
        "in the top 5% of their unit for use-of-force reports in the last year or in the top 5% "
        "of their unit for complaints in the last year"
    )
    # flags scored before rules travelled in words still read by title
    assert rule_lines([{"name": "cmpd"}, {"name": "force_watch"}]) == [
        "Also meets the Charlotte-Mecklenburg-style threshold rule and the force watch rule"
    ]


def test_key_indicators_carry_the_officer_and_the_unit_and_rank_means() -> None:
    import json

    from models.scoring import key_indicators

    features = pd.DataFrame(
        {
            "officer_id": ["a", "b", "c", "d"],
            "unit": ["12", "12", "7", None],
            "rank": ["po", "sgt", "po", "po"],
            "use_of_force_1y_count": [4.0, 0.0, 2.0, 1.0],
            "complaint_1y_count": [1.0, 3.0, np.nan, 0.0],
            "arrest_1y_count": [40.0, 10.0, 5.0, 0.0],  # exposure: never a key indicator
        }
    )
    words = {"use_of_force_1y_count": "{value:.0f} use-of-force reports in the last year"}
    rows = [json.loads(r) for r in key_indicators(features, words)]
    assert list(rows[0]) == ["use_of_force_1y_count", "complaint_1y_count"]
    force = rows[0]["use_of_force_1y_count"]
    assert force == {
        "label": "use-of-force reports in the last year",
        "officer": 4.0,
        "unit": 2.0,  # (4 + 0) / 2 in unit 12
        "rank": round(7.0 / 3, 3),  # (4 + 2 + 1) / 3 officers of rank po
    }
    assert rows[2]["complaint_1y_count"]["officer"] is None  # missing stays missing
    assert rows[3]["use_of_force_1y_count"]["unit"] is None  # no unit: no unit mean
    assert rows[1]["complaint_1y_count"]["label"] == "complaint 1y count"


def test_the_officers_own_behaviour_leads_and_the_network_is_never_a_reason() -> None:
    """Issue 17 item 7: a co-accused's record may weigh most in the score, yet the reasons
    lead with what the officer did; the co-accused stand as context."""
    from features.spec import default_spec

    descriptions = {c.name: c.description_template for c in default_spec().columns}
    net = "complaint_network_3y_complaint_career_sustained_max"
    X = pd.DataFrame(
        {
            net: [3.0, 0.0, 0.0, 0.0],
            "complaint_1y_count": [2.0, 0.0, 1.0, 0.0],
        }
    )
    model = _Fixed([5.0, 0.5])  # the network weighs ten times more than the officer's count
    a, *_ = explain(model, X, descriptions, top_k=3, background=X.iloc[[1]])
    assert [f["feature"] for f in a.factors] == ["complaint_1y_count"]
    assert a.sentences == ["2 complaints in the last year (average of the officers scored: 0.8)"]
    assert a.context == [
        "one of the officer's co-accused in the last 3 years had 3 sustained complaints"
    ]
    assert a.text.index("Indicators: 2 complaints") < a.text.index("co-accused")
    assert "Context, not a reason: one of the officer's co-accused" in a.text


def test_a_decrease_is_never_a_reason_and_every_flag_says_what_carried_it() -> None:
    """Issue 17 item 5: "-3 complaints in the last year compared with the year before" is
    no reason; an officer with no behaviour above the peers' average is told so plainly,
    with the behaviours that carried the score."""
    from features.spec import default_spec

    descriptions = {c.name: c.description_template for c in default_spec().columns}
    X = pd.DataFrame(
        {
            "complaint_1y_trend": [-3.0, 2.0, 0.0, 1.0],
            "use_of_force_1y_count": [1.0, 4.0, 3.0, 0.0],
            "complaint_3y_count": [5.0, 0.0, 1.0, 2.0],
        }
    )
    # a model (trees can do this) in which fewer complaints than the year before push up
    model = _Fixed([-2.0, 0.3, 0.1])
    a, b, c, d = explain(model, X, descriptions, top_k=3, background=X.iloc[[1]])
    for e in (a, b, c, d):
        assert not any(f["feature"].endswith("_trend") and f["value"] <= 0 for f in e.factors), (
            e.factors
        )
        assert not any("-3 complaints" in s for s in e.sentences)
    # a: the decrease pushes most, but the reason is the officer's 5 complaints in 3 years
    assert [f["feature"] for f in a.factors] == ["complaint_3y_count"]
    assert a.factors[0]["above"] and not a.summary
    # c: 1 complaint in 3 years (below the average of 2) is all that pushed up: said plainly
    assert [f["feature"] for f in c.factors] == ["complaint_3y_count"]
    assert c.factors[0]["carried"] and "No behaviour of this officer is above" in c.summary
    # d: an increase (+1 on the year before) is a reason; 2 complaints is at the average
    assert [f["feature"] for f in d.factors] == ["complaint_1y_trend", "complaint_3y_count"]
    # below the average everywhere: said plainly, with what carried the score
    X2 = pd.DataFrame({"use_of_force_1y_count": [1.0, 0.0, 5.0, 6.0]})
    model2 = _Fixed([1.0])
    e, *_ = explain(model2, X2, descriptions, top_k=3, background=X2.iloc[[1]])
    assert e.summary == (
        "No behaviour of this officer is above the average of their peers; the score was "
        "carried by: 1 use-of-force report in the last year (average of the officers "
        "scored: 3.0)."
    )
    assert e.factors[0]["carried"] and not e.factors[0]["above"]
    assert e.summary in e.text and "Indicators:" not in e.text
