"""Each named step of the experiment (models.steps) on its own, and the pipeline's new modes:
no selection, every model registered, configs refused before any work."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _models_agency import make_agency, shared_mlflow_uri, small_config

from models import steps
from models.experiment import ExperimentConfig, ExperimentError, run_experiment

TRIAGE_SPEC = Path(__file__).resolve().parents[1] / "models" / "specs" / "triage_peer.yaml"


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_agency(tmp_path_factory.mktemp("steps") / "pkg", officers=160)


def _config(**overrides: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(small_config(**overrides))


def _one_split(**splitter: Any) -> ExperimentConfig:
    base = small_config()["splitter"]
    assert isinstance(base, dict)
    return _config(splitter={**base, "test_dates": ["2015-01-01"], **splitter})


# --------------------------------------------------------------------------- check config


def test_check_config_resolves_a_valid_config(agency: Path) -> None:
    checked = steps.check_config(_config(rules=["cmpd", "best_single"]), agency)
    assert [name for name, _ in checked.rules] == ["cmpd", "best_single"]
    assert list(checked.labels) == ["sustained"]
    assert [c.name for c in checked.candidates] == [
        "lr[C=0.1]",
        "lr[C=1.0]",
        "rf[max_depth=4,min_samples_leaf=5,n_estimators=30]",
    ]


def test_check_config_lists_every_problem(agency: Path) -> None:
    cfg = _config(
        feature_spec=str(TRIAGE_SPEC),
        rules=["cmpd", "iapro_top_percentile", "best_single"],
        cohort={"require_assignment": "shift"},
        labels=["sustained", {"name": "sued", "any_of": [{"event_type": "lawsuit"}]}],
    )
    with pytest.raises(steps.ConfigProblems) as err:
        steps.check_config(cfg, agency)
    lines = str(err.value).splitlines()
    assert (
        "rule 'cmpd' needs complaint_180d_count, use_of_force_90d_count, which feature spec "
        "'triage_peer' does not build" in lines
    ), lines
    assert any("iapro_top_percentile" in line and "_unit_pct" in line for line in lines)
    assert not any("best_single" in line for line in lines)  # the spec has *_count columns
    assert any("label 'sued': the data hold no lawsuit events" in line for line in lines)
    assert any("require_assignment 'shift'" in line and "rank, unit" in line for line in lines)
    assert len(lines) == 4


def test_a_bad_config_is_refused_before_any_work(
    agency: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import features.build
    import features.labels

    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("work started")

    monkeypatch.setattr(features.build, "build_features", no_work)
    monkeypatch.setattr(features.labels, "build_labels", no_work)
    cfg = _config(feature_spec=str(TRIAGE_SPEC), rules=["cmpd"])
    with pytest.raises(ExperimentError, match="refused before any work") as err:
        run_experiment(cfg, agency, tracking=False, progress=False)
    assert "which X does not have" not in str(err.value)
    assert "complaint_180d_count" in str(err.value)


def test_rule_columns() -> None:
    from models.rules import make_rule

    cols = ["complaint_1y_count", "complaint_1y_count_unit_pct"]
    assert steps.rule_columns(make_rule("best_single"), cols) == []
    assert steps.rule_columns(make_rule("best_single"), ["age_years"]) == ["*_count"]
    peer = make_rule({"peer_outlier": {"indicators": ["complaint_1y_count"], "z": 2}})
    assert steps.rule_columns(peer, cols) == ["complaint_1y_count_unit_z"]
    assert steps.rule_columns(make_rule({"peer_outlier": {"peer": "rank"}}), cols) == ["*_rank_pct"]
    rule = make_rule({"any": [{"column": "complaint_1y_count", "op": ">=", "value": 2}]})
    assert steps.rule_columns(rule, cols) == []


# --------------------------------------------------------------------------- plan splits


def test_plan_splits_dates_and_label_requests(agency: Path) -> None:
    plan = steps.plan_splits(_one_split(inner_splits=1), agency, ["sustained"], deploy=False)
    (sp,) = plan.splits["sustained"]
    assert sp.train_as_of == [date(y, 1, 1) for y in range(2010, 2015)]
    (inner,) = plan.inner["sustained"][date(2015, 1, 1)]
    assert inner.test_as_of == date(2014, 1, 1)
    assert inner.train_as_of == [date(y, 1, 1) for y in range(2010, 2014)]
    assert plan.selects and plan.deploy == {}
    assert plan.feature_dates() == [date(y, 1, 1) for y in range(2010, 2016)]
    assert plan.label_requests() == {
        # outer training labels, and the validation labels, as known at the test date
        ("sustained", date(2015, 1, 1)): {date(y, 1, 1) for y in range(2010, 2015)},
        # inner training labels as known at the validation date
        ("sustained", date(2014, 1, 1)): {date(y, 1, 1) for y in range(2010, 2014)},
        # the outer test labels: everything in the data
        ("sustained", None): {date(2015, 1, 1)},
    }
    assert plan.n_fits(3) == 6


def test_plan_without_selection(agency: Path) -> None:
    plan = steps.plan_splits(_one_split(inner_splits=0), agency, ["sustained"], deploy=True)
    assert plan.inner["sustained"] == {date(2015, 1, 1): []}
    assert not plan.selects and plan.deploy == {}  # nothing chosen, nothing to deploy
    assert set(plan.label_requests()) == {("sustained", date(2015, 1, 1)), ("sustained", None)}


def test_plan_with_deployment(agency: Path) -> None:
    plan = steps.plan_splits(_one_split(inner_splits=1), agency, ["sustained"], deploy=True)
    deploy = plan.deploy["sustained"]
    assert deploy is not None and deploy.test_as_of == date(2017, 1, 1)  # data end + 1 day
    assert date(2017, 1, 1) not in plan.feature_dates()  # nothing is evaluated there
    assert date(2016, 1, 1) in plan.feature_dates()  # its newest training date


# --------------------------------------------------------------------------- features, labels


@pytest.fixture(scope="module")
def built(agency: Path) -> tuple[Any, Any, Any, Any]:
    cfg = _one_split(inner_splits=1)
    checked = steps.check_config(cfg, agency)
    plan = steps.plan_splits(cfg, agency, list(checked.labels), deploy=False)
    feats = steps.build_features(agency, plan, checked.spec, checked.cohort)
    labels = steps.build_labels(agency, plan, checked.labels, checked.cohort)
    return checked, plan, feats, labels


def test_build_features_covers_the_plan_and_drops_empty_columns(agency: Path, built: Any) -> None:
    checked, plan, feats, _ = built
    days = {d.date() for d in feats.frame["as_of_date"].drop_duplicates()}
    assert days == set(plan.feature_dates())
    assert "race" not in feats.columns and "officer_id" not in feats.columns
    train = feats.frame[feats.frame["as_of_date"].dt.year < 2015]
    assert all(train[c].notna().any() for c in feats.columns)
    assert all(train[c].isna().all() for c in feats.left_out)
    # a prebuilt frame missing a planned date is refused
    partial = feats.frame[feats.frame["as_of_date"].dt.year != 2012]
    with pytest.raises(ExperimentError, match="2012-01-01"):
        steps.build_features(agency, plan, checked.spec, checked.cohort, prebuilt=partial)


def test_build_labels_one_query_per_cutoff_and_maturity(built: Any) -> None:
    _, plan, _, labels = built
    assert len(labels.calls) == len(plan.label_requests()) == 3
    dates = [date(2013, 1, 1)]
    mature = labels.get("sustained", dates, date(2014, 1, 1)).set_index("officer_id")["label"]
    later = labels.get("sustained", dates, date(2015, 1, 1)).set_index("officer_id")["label"]
    assert (mature <= later.loc[mature.index]).all()  # a finding only ever arrives later
    assert mature.sum() < later.sum()
    with pytest.raises(ExperimentError, match="not built"):
        labels.get("sustained", dates, date(2001, 1, 1))


# --------------------------------------------------------------------------- fit, evaluate


def test_fit_candidates_and_evaluate(built: Any) -> None:
    from sklearn.metrics import roc_auc_score

    checked, plan, feats, labels = built
    (sp,) = plan.splits["sustained"]
    seen: list[str] = []
    fit = steps.fit_candidates(sp, "sustained", feats, labels, checked.candidates, seen.append)
    assert seen == [c.name for c in checked.candidates]
    assert set(fit.models) == set(seen)
    assert {d.year for d in fit.train["as_of_date"]} == set(range(2010, 2015))
    assert set(fit.test["as_of_date"]) == {pd.Timestamp(2015, 1, 1)}
    evals = steps.evaluate(fit, [10], seed=0)
    for name, ev in evals.items():
        assert len(ev.score) == len(fit.test)
        assert ev.metrics["roc_auc"] == pytest.approx(roc_auc_score(fit.y_test, ev.score)), name
    # the scores are each model's own predict on the test matrix, on whatever threads
    # (evaluate predicts on one OpenMP thread), and that matrix holds matrix()'s values
    assert fit.X_test.equals(steps.matrix(fit.test, fit.columns))
    for name, model in fit.models.items():
        plain = model.predict_proba(steps.matrix(fit.test, fit.columns))[:, 1]
        assert np.array_equal(evals[name].score, plain), name
    preds = steps.predictions(fit, evals)
    assert len(preds) == len(fit.test) * len(evals)
    assert set(preds.columns) == {"officer_id", "as_of_date", "label", "method", "score", "outcome"}


def test_fit_candidates_with_a_single_class(built: Any) -> None:
    checked, plan, feats, labels = built
    (sp,) = plan.splits["sustained"]
    frames = {k: v.assign(label=0) for k, v in labels.frames.items()}
    seen: list[str] = []
    fit = steps.fit_candidates(
        sp, "sustained", feats, steps.Labels(frames), checked.candidates, seen.append
    )
    assert fit.single_class and fit.models == {} and len(seen) == len(checked.candidates)
    assert steps.evaluate(fit, [10], seed=0) == {}


# --------------------------------------------------------------------------- select


def test_select_by_mean_minus_penalty_times_spread() -> None:
    names = ["a", "b"]
    steady = [{"a": 0.50, "b": 0.30}, {"a": 0.50, "b": 0.80}]  # b: higher mean, wide spread
    # b's lead (0.05) is inside its own noise (standard error 0.25): the simplest, a
    assert steps.select(steady, names, "m", penalty=0.0)[0] == "a"
    assert steps.select(steady, names, "m", penalty=0.0, simplest_first=["b", "a"])[0] == "b"
    assert steps.select(steady, names, "m", penalty=2.0)[0] == "a"
    clear = [{"a": 0.50, "b": 0.70}, {"a": 0.50, "b": 0.72}]  # b ahead far beyond its noise
    assert steps.select(clear, names, "m", penalty=0.0)[0] == "b"
    chosen, scores = steps.select([], names, "m", penalty=0.5)
    assert chosen is None and scores == {"a": [], "b": []}  # no validation split: no choice
    assert steps.select([{"a": None, "b": None}], names, "m", 0.5)[0] == "a"


# --------------------------------------------------------------------------- compare with rules


def test_rules_and_equal_volume_comparison(built: Any) -> None:
    checked, plan, feats, labels = built
    (sp,) = plan.splits["sustained"]
    fit = steps.fit_candidates(sp, "sustained", feats, labels, checked.candidates)
    bad = {"name": "ghost", "any": [{"column": "complaint_180d_count", "op": ">=", "value": 1}]}
    # a column empty on these training dates: the rules naming it are kept with an error
    fewer = dataclasses.replace(
        fit, columns=[c for c in fit.columns if c != "complaint_180d_count"]
    )
    rules = steps.fit_rules(fewer, [("cmpd", "cmpd"), ("ghost", bad)], [10])
    cmpd, ghost = rules
    assert cmpd.rule is None and "complaint_180d_count" in (cmpd.error or "")
    assert ghost.rule is None
    rules = steps.fit_rules(fit, [("best_single", "best_single")], [10])
    (best,) = rules
    assert best.error is None and best.flags.sum() > 0
    evals = steps.evaluate(fit, [10], seed=0)
    score = next(iter(evals.values())).score
    vs = steps.compare_with_rules(fit.y_test, score, rules, n_boot=0, seed=0)
    assert vs["best_single"]["flagged"] == int(best.flags.sum())
    assert vs["best_single"]["rule_tp"] == int((best.flags & (fit.y_test == 1)).sum())
    # the equal-volume fields are named for what they are
    c = vs["best_single"]
    assert c["extra_tp"] == c["model_tp"] - c["rule_tp"]
    assert c["fewer_fp"] == c["rule_fp"] - c["model_fp"]
    # the learned condition is recorded in words
    words = {"complaint_1y_count": "{value:.0f} complaints in the last year"}
    (best,) = steps.fit_rules(fit, [("best_single", "best_single")], [10], words)
    assert best.condition == best.rule.describe(words) and " or more " in best.condition


def test_rules_that_cannot_fire_or_flag_the_same_officers_are_named() -> None:
    from models.rules import make_rule

    # force-only data: the complaint half of the CMPD rule never holds
    X = pd.DataFrame(
        {
            "complaint_180d_count": [0.0, 0.0, 0.0, np.nan],
            "use_of_force_90d_count": [4.0, 0.0, 3.0, 1.0],
            "complaint_90d_count": [0.0, 0.0, 0.0, 0.0],
        }
    )
    y = np.array([1, 0, 1, 0])
    words = {"complaint_180d_count": "{value:.0f} complaints in the last 180 days"}
    cmpd = make_rule("cmpd").fit(X, y)
    assert steps.idle_conditions(cmpd, [X.iloc[:2], X.iloc[2:]], words) == [
        "3 or more complaints in the last 180 days"
    ]
    miami = make_rule("miami_dade").fit(X, y)
    flags = np.asarray(cmpd.predict(X)).astype(bool)
    results = [
        steps.RuleResult("cmpd", cmpd, flags, {}, idle=["3 or more complaints in 180 days"]),
        steps.RuleResult("miami_dade", miami, np.asarray(miami.predict(X)).astype(bool), {}),
        steps.RuleResult("none", None, np.zeros(4, bool), {}, error="no column"),
    ]
    assert steps.rule_notes(results, "sustained 2014-01-01") == [
        "sustained 2014-01-01: rule cmpd cannot fire on these data for: 3 or more complaints "
        "in 180 days",
        "sustained 2014-01-01: rules cmpd and miami_dade flag the same officers",
    ]
    results[1].flags[1] = True  # one officer apart: no longer the same
    assert len(steps.rule_notes(results, "x")) == 1


# --------------------------------------------------------------------------- the pipeline


def test_no_selection_evaluates_every_candidate_and_chooses_none(agency: Path) -> None:
    cfg = _one_split(inner_splits=0)
    result = run_experiment(cfg, agency, tracking=False, progress=False)
    models = [r for r in result.records if r["kind"] == "model"]
    assert len(models) == len(cfg.grid[0].params["C"]) + 1
    assert not any(r["selected"] for r in models)
    assert result.selection == [] and result.champions == {}
    assert any("none chosen" in n for n in result.notes)
    assert result.predictions is not None
    assert len(result.predictions) == sum(r["n_test"] for r in models)


def test_progress_lines_name_each_step_and_split(agency: Path) -> None:
    lines: list[str] = []
    run_experiment(_one_split(inner_splits=1), agency, tracking=False, progress=lines.append)
    text = "\n".join(lines)
    assert "checking the config" in text and "building features for 6 as-of dates" in text
    assert "sustained 2015-01-01: choosing on 1 validation split(s)" in text
    assert "sustained 2015-01-01 (split 1/1): 3 candidates, 5 training dates; chosen " in text
    assert "6/6 fits" in text and lines[-1].endswith("done")


def test_features_and_rule_warnings_are_said_once(agency: Path) -> None:
    """Empty and constant features are named once, as progress; a rule's warning once with
    its test dates, not per split; the count of label queries is progress, not a note."""
    never = {"any": [{"column": "force_complaint_1y_count", "op": ">=", "value": 2}]}
    cfg = _config(
        grid=[{"estimator": "logistic_regression", "name": "lr", "params": {"C": [1.0]}}],
        rules=["cmpd", {**never, "name": "never"}],
        splitter={**small_config()["splitter"], "inner_splits": 0},  # type: ignore[dict-item]
    )
    lines: list[str] = []
    result = run_experiment(cfg, agency, tracking=False, progress=lines.append)
    said = "\n".join(lines + result.notes)
    assert "features carry no information on this data" in said
    for name in ("force_complaint_career_days_since", "force_complaint_1y_count"):
        assert len(re.findall(rf"\b{name}\b", said)) == 1, name  # (the rule says it in words)
    rule = [n for n in result.notes if "rule never" in n]
    assert rule == [
        "sustained: rule never cannot fire on these data for: 2 or more excessive-force "
        "complaints in the last year (test dates 2014-01-01, 2015-01-01)"
    ]
    assert not any("labels built" in n or "left out" in n for n in result.notes)


def test_registry_all_registers_every_model_with_its_cutoff(
    agency: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import registry
    from models.scoring import check_lookahead

    uri = shared_mlflow_uri()
    monkeypatch.setenv("EWS_MLFLOW_URI", uri)
    from ews.settings import get_settings

    get_settings.cache_clear()
    base = small_config()["splitter"]
    assert isinstance(base, dict)
    cfg = _config(
        splitter={**base, "test_dates": ["2014-01-01", "2015-01-01"], "inner_splits": 0},
        registry="all",
        rules=["cmpd"],
    )
    result = run_experiment(cfg, agency, tracking=True, progress=False)
    get_settings.cache_clear()
    d = result.to_dict()
    assert len(d["registered"]) == 2 * 3 and result.champions == {}
    assert len({(r["name"], r["version"]) for r in d["registered"]}) == 6
    assert len({r["run_id"] for r in d["registered"]}) == 1  # one run for all
    reg = d["registered"][-1]
    loaded = registry.load_model(f"{reg['name']}/{reg['version']}", uri=uri)
    assert loaded.tags["ews.label_known_by"] == "2015-01-01"
    assert loaded.tags["ews.as_of"] == "2015-01-01"
    assert loaded.config is not None and loaded.config["registry"] == "all"
    assert loaded.rules is not None and set(loaded.rules) == {"cmpd"}
    assert loaded.background is not None and list(loaded.background.columns) == list(
        loaded.feature_names
    )
    X = loaded.background
    fitted = next(c for c in result.fitted if (c.registered or {}).get("version") == reg["version"])
    assert np.allclose(loaded.model.predict_proba(X), fitted.model.predict_proba(X))
    # scoring before the label cutoff would look ahead; on or after it would not
    assert "2015-01-01" in (check_lookahead(loaded.name, "1", loaded.tags, date(2014, 6, 1)) or "")
    assert check_lookahead(loaded.name, "1", loaded.tags, date(2015, 1, 1)) is None
    assert "no label cutoff" in (check_lookahead("m", "1", {}, date(2015, 1, 1)) or "")


def test_text_table_fits_100_columns() -> None:
    from models.report import text_table

    long = "hgb[l2_regularization=1.0,learning_rate=0.05,max_depth=5,max_iter=300]"
    records = [
        {"label": "sustained_or_force", "test_date": "2014-01-01", "method": m, "kind": k,
         "selected": s, "flagged": 12345, "tp": 1234, "fp": 11111, "precision": 0.1,
         "recall": 0.25, "auc": 0.8}
        for m, k, s in [("iapro_top_percentile", "rule", False), (long, "model", True),
                        ("lr[C=0.01]", "model", False)]
    ]  # fmt: skip
    text = text_table(records, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "m1" in text and "m2" in text and long in text  # the legend names each model
    row = next(line for line in text.splitlines() if line.startswith("2014-01-01  m1"))
    assert "*" in row and "0.800" in row


def test_text_table_words_each_rule_once_and_the_learned_rule_per_label() -> None:
    from models.report import text_table

    def rule(method: str, day: str, condition: str, label: str = "sustained") -> dict[str, Any]:
        return {"label": label, "test_date": day, "method": method, "kind": "rule",
                "selected": False, "condition": condition}  # fmt: skip

    cmpd = "3 or more complaints in the last 180 days or 3 or more use-of-force reports " * 2
    four, five = (
        "4 or more complaints in the last 3 years",
        "5 or more complaints in the last 3 years",
    )
    text = text_table(
        [
            rule("cmpd", "2013-01-01", cmpd),
            rule("cmpd", "2014-01-01", cmpd),
            rule("best_single", "2013-01-01", four),
            rule("best_single", "2014-01-01", five),
            rule("best_single", "2015-01-01", five),
            rule("cmpd", "2013-01-01", cmpd, "force"),
            rule("best_single", "2013-01-01", four, "force"),  # the same rule, another label
        ],
        width=100,
    )
    legend = text.split("rules:")[1]
    assert legend.count("cmpd:") == 1 and max(len(line) for line in legend.splitlines()) <= 100
    lines = [" ".join(line.split()) for line in re.split(r"\n  (?! )", legend.strip())]
    assert f"best_single (learned for sustained, test dates 2013-01-01): {four}" in lines
    both = "2014-01-01, 2015-01-01"
    assert f"best_single (learned for sustained, test dates {both}): {five}" in lines
    assert f"best_single (learned for force, test dates 2013-01-01): {four}" in lines
    assert len(lines) == 4  # cmpd once, each learned rule once per label


def test_registry_all_with_a_refit_champion_keeps_every_evaluated_model(
    agency: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.experiment

    registered: list[Any] = []
    monkeypatch.setattr(
        models.experiment, "register", lambda result, **kw: registered.append(result)
    )
    cfg = _config(registry="all", rules=["cmpd"])
    result = run_experiment(cfg, agency, tracking=True, progress=False)
    assert registered == [result]
    champ = result.champions["sustained"]
    assert champ.as_of == date(2017, 1, 1)  # refit as of the day after the data end
    # every model evaluated on a test split is registered besides the refit champion
    evaluated = {(r["test_date"], r["method"]) for r in result.records if r["kind"] == "model"}
    assert {(c.as_of.isoformat(), c.candidate["name"]) for c in result.fitted} == evaluated


def test_registry_all_hands_each_model_to_the_registrar_as_its_set_is_fitted(
    agency: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tracking and `registry: all`, the models of every outer split's training set go
    to the registering process (registry.save_ahead) when the set is fitted, before any
    split is evaluated, each with the background sample its split registers (the example
    its signature is read from); the deployment refit, fitted later, is not among them."""
    from models import experiment as exp
    from models import registry

    handed: list[tuple[Any, pd.DataFrame, int]] = []
    lines: list[str] = []

    def save_ahead(models: list[tuple[Any, pd.DataFrame]]) -> int:
        handed.extend((m, x, len(lines)) for m, x in models)
        return len(models)

    monkeypatch.setattr(registry, "save_ahead", save_ahead)
    monkeypatch.setattr(registry, "warm_up", lambda: None)
    monkeypatch.setattr(exp, "register", lambda result, **kw: {})
    result = run_experiment(_config(registry="all"), agency, tracking=True, progress=lines.append)
    registered = [*result.fitted]
    assert registered and len(result.champions) == 1
    by_id: dict[int, tuple[pd.DataFrame, int]] = {}
    for m, x, n in handed:  # the first hand-off of each (save_ahead skips a model sent)
        by_id.setdefault(id(m), (x, n))
    for c in registered:
        example, said = by_id[id(c.model)]
        pd.testing.assert_frame_equal(example, c.background)
        assert not any("evaluated" in line for line in lines[:said])  # at fit time
    refit = result.champions["sustained"].model
    assert id(refit) not in by_id
    # without tracking nothing is handed over
    handed.clear()
    run_experiment(_config(registry="all"), agency, tracking=False, progress=False)
    assert handed == []


def test_evaluate_scores_candidates_in_threads_as_one_after_another() -> None:
    """Candidates scored two at a time (threads) give every score and metric bit for bit as
    scored one after another: each model still predicts on one thread."""
    from models.grid import make_estimator

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.poisson(2.0, (900, 4)).astype(float), columns=list("abcd"))
    frame["label"] = (frame["a"] + rng.normal(0, 1.5, 900) > 3).astype(int)
    train, test = frame.iloc[:600], frame.iloc[600:]
    X, y = train[list("abcd")], train["label"].to_numpy()
    models = {
        "lr": make_estimator("logistic_regression", {"C": 0.5}, seed=0).fit(X, y),
        "rf": make_estimator(
            "random_forest", {"n_estimators": 30, "max_depth": 4}, seed=1, n_jobs=1
        ).fit(X, y),
        "hgb": make_estimator("hist_gradient_boosting", {"max_iter": 20}, seed=2).fit(X, y),
    }
    fit = steps.SplitFit(None, "y", train, test, list("abcd"), models)  # type: ignore[arg-type]
    one = steps.evaluate(fit, [10], seed=3, threads=1)
    two = steps.evaluate(fit, [10], seed=3, threads=2)
    assert list(one) == list(two) == ["lr", "rf", "hgb"]
    for name in one:
        assert one[name].score.tobytes() == two[name].score.tobytes()
        assert one[name].metrics == two[name].metrics
