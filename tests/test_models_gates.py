"""One selection rule, stable choices and the promotion gate (issue 17, items 1-3).

* near-ties inside the noise of the validation splits go to the simplest candidate, and the
  margin of every choice is recorded;
* the AUC interval is a real bootstrap of the AUC;
* a model no better than chance is registered without the alias ``champion``, `ews train`
  says why in one paragraph (exit 0, 1 with --strict), `ews score` then names
  `ews models promote --force`, and the forced promotion is an audit entry and a line of the
  model card and of the audit report's checklist;
* the model card's held-out rows are the registered config's own, with each date's own
  choice beside them where it differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from _models_agency import make_agency, shared_mlflow_uri, small_config
from typer.testing import CliRunner

from ews.cli import app
from models import steps
from models.gates import promotion_gate
from models.grid import expand_grid, simplicity_key

runner = CliRunner()


# --------------------------------------------------------------------------- stable choices


def _order(grid: list[dict[str, Any]]) -> list[str]:
    return [c.name for c in sorted(expand_grid(grid), key=simplicity_key)]


def test_simplest_is_defined_per_kind() -> None:
    grid = [
        {"name": "rf", "estimator": "random_forest", "params": {"max_depth": [10, 5]}},
        {"name": "hgb", "estimator": "hist_gradient_boosting", "params": {"max_depth": [5, 3]}},
        {"name": "lr", "estimator": "logistic_regression", "params": {"C": [1.0, 0.01]}},
    ]
    assert _order(grid) == [
        "lr[C=0.01]",  # a linear model, strongest regularization first
        "lr[C=1.0]",
        "hgb[max_depth=3]",  # then boosted trees, shallow first
        "hgb[max_depth=5]",
        "rf[max_depth=5]",  # then forests
        "rf[max_depth=10]",
    ]
    leaves = [{"name": "rf", "estimator": "random_forest", "params": {"min_samples_leaf": [5, 50]}}]
    assert _order(leaves) == ["rf[min_samples_leaf=50]", "rf[min_samples_leaf=5]"]


def test_a_near_tie_goes_to_the_simplest_and_the_margin_is_recorded() -> None:
    names = ["hgb[max_depth=5]", "hgb[max_depth=3]", "lr[C=1.0]"]
    simplest = ["lr[C=1.0]", "hgb[max_depth=3]", "hgb[max_depth=5]"]
    # Chicago 2013: depth 5 ahead of depth 3 by 0.0001 of mean AUC, splits 0.02 apart
    per_split = [
        {"hgb[max_depth=5]": 0.6401, "hgb[max_depth=3]": 0.6400, "lr[C=1.0]": 0.5500},
        {"hgb[max_depth=5]": 0.6201, "hgb[max_depth=3]": 0.6200, "lr[C=1.0]": 0.5300},
    ]
    d, _ = steps.decide(per_split, names, "auc", 0.0, simplest)
    assert d.best == "hgb[max_depth=5]" and d.runner_up == "hgb[max_depth=3]"
    assert d.margin == pytest.approx(0.0001)
    assert d.se == pytest.approx(np.std([0.6401, 0.6201], ddof=1) / np.sqrt(2))
    assert d.tied == ["hgb[max_depth=3]", "hgb[max_depth=5]"]  # lr is 0.09 behind: outside
    assert d.chosen == "hgb[max_depth=3]" and d.gap == pytest.approx(0.0001)
    assert d.decided_by == steps.TIE_RULE
    # the same two with the order of the tie flipped: the same choice (stable)
    flipped = [{**s, "hgb[max_depth=3]": s["hgb[max_depth=5]"] + 1e-4} for s in per_split]
    assert steps.decide(flipped, names, "auc", 0.0, simplest)[0].chosen == "hgb[max_depth=3]"
    # a lead far beyond the noise is kept by the best, even when it is the most complex
    apart = [{**s, "hgb[max_depth=5]": s["hgb[max_depth=5]"] + 0.1} for s in per_split]
    d2, _ = steps.decide(apart, names, "auc", 0.0, simplest)
    assert d2.chosen == "hgb[max_depth=5]" and d2.tied == ["hgb[max_depth=5]"]
    assert d2.decided_by == "best, by more than the noise"
    text = steps.describe_decision(d.chosen, d.as_dict())
    assert "margin 0.0001 over the next" in text and "simplest of 2" in text


def test_auc_interval_is_a_bootstrap_of_the_auc() -> None:
    from sklearn.metrics import roc_auc_score

    from models.metrics import auc_interval

    rng = np.random.default_rng(3)
    y = rng.random(600) < 0.15
    strong = np.round(rng.random(600) + 0.5 * y, 1)  # ties on purpose
    lo, hi = auc_interval(y, strong, n_boot=400, seed=1) or (0, 0)
    assert lo < roc_auc_score(y, strong) < hi and lo > 0.5
    noise = rng.random(600)
    lo, hi = auc_interval(y, noise, n_boot=400, seed=1) or (0, 0)
    assert lo < 0.5 < hi  # chance: the interval straddles 0.5
    # one resample by hand gives what the vectorized computation gives for it
    idx = np.random.default_rng(5).integers(0, 600, size=(1, 600))
    by_hand = roc_auc_score(y[idx[0]], strong[idx[0]])
    w = np.bincount(idx[0], minlength=600)
    weighted = roc_auc_score(y, strong, sample_weight=w)
    assert by_hand == pytest.approx(weighted)
    assert auc_interval(y, strong, n_boot=0) is None
    assert auc_interval(np.zeros(10), np.arange(10.0), n_boot=50) is None


def _records(auc_ci: list[float], model_tp: int, ci_tp: list[float]) -> list[dict[str, object]]:
    return [
        {"label": "l", "test_date": "2015-01-01", "kind": "rule", "method": "cmpd",
         "flagged": 20, "tp": 6, "precision": 0.3},
        {"label": "l", "test_date": "2015-01-01", "kind": "rule", "method": "weak",
         "flagged": 20, "tp": 2, "precision": 0.1},
        {"label": "l", "test_date": "2015-01-01", "kind": "model", "method": "m", "auc": 0.6,
         "auc_ci95": auc_ci,
         "vs_rules": {"cmpd": {"flagged": 20, "rule_tp": 6, "model_tp": model_tp,
                               "ci95_pct_more_tp": ci_tp},
                      "weak": {"flagged": 20, "rule_tp": 2, "model_tp": 9}}},
    ]  # fmt: skip


def test_the_gate_checks_chance_and_the_best_rule() -> None:
    ok = promotion_gate(_records([0.55, 0.66], 5, [-40.0, 10.0]), "l", "m")
    assert ok["passed"], ok  # one fewer than cmpd, but inside the interval
    chance = promotion_gate(_records([0.45, 0.66], 8, [0.0, 50.0]), "l", "m")
    assert not chance["passed"] and "does not lie above 0.5" in chance["reasons"][0]
    worse = promotion_gate(_records([0.55, 0.66], 2, [-90.0, -20.0]), "l", "m")
    assert not worse["passed"] and "cmpd" in worse["reasons"][0]  # the best rule, not weak
    assert "2 with the outcome against the rule's 6" in worse["reasons"][0]
    assert "best rule, cmpd, flagged 20 officers, 6 of whom" in worse["rules"][0]
    assert not promotion_gate(_records([0.55, 0.66], 5, []), "l", "other")["passed"]


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def workspace(ews_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_MLFLOW_URI", shared_mlflow_uri())
    get_settings.cache_clear()
    return ews_home


def _config(tmp_path: Path) -> Path:
    config = small_config(rules=["cmpd", "best_single"])
    config["splitter"] = {**config["splitter"], "test_dates": ["2014-01-01", "2015-01-01"]}  # type: ignore[dict-item]
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_chance_model_is_not_promoted_until_forced(workspace: Path, tmp_path: Path) -> None:
    from models import registry

    pkg = make_agency(tmp_path / "pkg", officers=200, seed=11, signal=False)
    assert runner.invoke(app, ["ingest", str(pkg), "--agency", "chance"]).exit_code == 0
    cfg = _config(tmp_path)
    trained = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert trained.exit_code == 0, trained.output
    out = trained.stdout
    assert "NOT PROMOTED: ews-chance-sustained v1" in out
    paragraph = out.split("NOT PROMOTED: ", 1)[1]
    assert "WITHOUT the alias champion" in paragraph and "What the rules achieve" in paragraph
    assert "ews models promote ews-chance-sustained 1 --force --reason TEXT" in paragraph
    assert "not promoted" in trained.stderr
    assert "margin" in out and "choices (precision@10%" in out  # every choice's margin
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    gate = results["gates"]["sustained"]
    assert gate["passed"] is False and gate["reasons"]
    assert all(s["decision"]["rule"] == steps.TIE_RULE for s in results["selection"])
    assert "margin" in results["deployment"][0]["decision"]
    (row,) = [r for r in registry.list_models() if r["agency"] == "chance"]
    assert row["aliases"] == []  # registered, without the alias
    assert (registry.gate_of(row["name"], row["version"]) or {})["passed"] is False

    strict = runner.invoke(app, ["train", "--config", str(cfg), "--no-register", "--strict"])
    assert strict.exit_code == 1 and "would not be promoted" in strict.stdout

    score = runner.invoke(app, ["score", "--as-of", "2017-01-01", "--agency", "chance"])
    assert score.exit_code == 1
    assert "none passed the promotion gate" in score.output
    assert "ews models promote ews-chance-sustained 1 --force --reason TEXT" in score.output

    name = row["name"]
    plain = runner.invoke(app, ["models", "promote", name, "1"])
    assert plain.exit_code == 1 and "did not pass the promotion gate" in plain.output
    assert runner.invoke(app, ["models", "promote", name, "1", "--force"]).exit_code == 2
    reason = "pilot for the chief, with the rules run beside it"
    forced = runner.invoke(app, ["models", "promote", name, "1", "--force", "--reason", reason])
    assert forced.exit_code == 0, forced.output
    (row,) = [r for r in registry.list_models() if r["agency"] == "chance"]
    assert row["aliases"] == ["champion"]
    assert "promoted by force" in forced.output

    from sqlalchemy import select

    from ews.audit import verify
    from ews.db import AuditLog, open_app_database

    db = open_app_database()
    try:
        with db.session() as s:
            entries = list(s.scalars(select(AuditLog).where(AuditLog.action == "promote --force")))
        assert len(entries) == 1
        (e,) = entries
        assert e.agency == "chance" and e.detail["reason"] == reason
        assert e.detail["gate"] == "failed" and e.resource == f"model {name} v1"
        assert verify(db).ok

        from models.audit_report import build_report

        report = build_report("chance", db=db)
    finally:
        db.dispose()
    card = report.data["champion"]
    assert card["override"]["reason"] == reason and card["gate"]["passed"] is False
    (item,) = [i for i in report.data["checklist"] if i["ask"].startswith("Validated on held")]
    assert item["status"] == "not met" and reason in item["figure"]
    assert "did not pass the promotion gate" in item["figure"]
    from models.audit_report import render_html

    html = render_html(report.data)
    assert "Promoted by override" in html
    assert reason in html


def test_the_card_shows_the_registered_configs_own_rows(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever each test date chose, the card's held-out rows, its comparison with the rules
    and the bias audit are the registered config's; a date whose own choice differs says so."""
    import models.experiment
    from models.audit_report import champion_card, held_out_audit
    from models.experiment import load_config, run_experiment

    pkg = make_agency(tmp_path / "pkg", officers=200, seed=5)
    assert runner.invoke(app, ["ingest", str(pkg), "--agency", "card"]).exit_code == 0
    choose = models.experiment._Run.choose

    def deploy_another(self: models.experiment._Run, label: str) -> None:
        choose(self, label)  # then deploy a config the latest split did not choose
        last = self.choices[label][self.plan.splits[label][-1].test_as_of]
        other = next(c.name for c in self.checked.candidates if c.name != last)
        decision, scores, used = self.deploy_choice[label]
        decision.chosen = other
        self.deployed[label] = other

    monkeypatch.setattr(models.experiment._Run, "choose", deploy_another)
    cfg = load_config(_config(tmp_path), agency="card")
    result = run_experiment(cfg, progress=False)
    folder = workspace / "experiments" / result.config_hash
    result.save(folder / "results.json")
    result.save_predictions(folder / "predictions.parquet")
    deployed = result.champions["sustained"].candidate["name"]
    recs = [r for r in result.records if r["kind"] == "model" and r["method"] == deployed]
    assert all(r["deployed"] and r["auc_ci95"] for r in recs)  # intervals for the deployed
    assert result.gates["sustained"]["method"] == deployed
    from models import registry

    card = champion_card("card", workspace, load=False, label="sustained")
    if card is None:  # not promoted on this agency: promote by force to read its card
        reg = result.champions["sustained"].registered or {}
        registry.promote(reg["name"], reg["version"])
        card = champion_card("card", workspace, load=False, label="sustained")
    assert card is not None and card["candidate"] == deployed
    assert [s["method"] for s in card["splits"]] == [deployed] * 2
    by_date = {r["test_date"]: r for r in recs}
    for s in card["splits"]:
        assert s["precision"] == pytest.approx(by_date[s["test_date"]]["precision"], abs=1e-4)
    latest = card["splits"][-1]
    assert latest["split_choice"] != deployed  # the latest date chose another config
    assert any(
        latest["test_date"] in line and latest["split_choice"] in line
        for line in card["differences"]
    )
    held = card["_private"]["held"]
    assert set(held["method"]) == {deployed}
    from ews.store import Workspace

    bias = held_out_audit(card, Workspace().snapshot("card"), min_group=5)
    assert set(bias["chosen"].values()) == {deployed}


def test_the_chicago_table_prints_the_margin_of_every_choice() -> None:
    from benchmarks.chicago import ChicagoResult, format_chicago

    per_split = [{"hgb[d=5]": 0.6401, "hgb[d=3]": 0.6400}, {"hgb[d=5]": 0.6201, "hgb[d=3]": 0.62}]
    d, _ = steps.decide(per_split, ["hgb[d=5]", "hgb[d=3]"], "auc", 0.5, ["hgb[d=3]", "hgb[d=5]"])
    sel = [{"label": "sustained", "test_date": "2013-01-01", "chosen": d.chosen,
            "decision": d.as_dict()}]  # fmt: skip
    text = format_chicago(ChicagoResult([], [], sel, {}, {}))
    line = next(x for x in text.splitlines() if "2013-01-01" in x)
    assert "hgb[d=3]: the simplest of 2" in line and "margin 0.0001 over the next" in line


def test_the_chicago_run_prints_each_stage_with_its_load_average() -> None:
    """Part of every benchmark's figures: each stage's time beside the load average at its
    start and end (the machine may be shared), taken from the stage timer itself."""
    from benchmarks.chicago import ChicagoResult, format_chicago
    from benchmarks.common import StageTimes

    times = StageTimes()
    with times.stage("convert"):
        sum(range(1000))
    before, after = times.loads["convert"]
    assert len(before) == len(after) == 3
    timed = [
        {
            "stage": "convert",
            "seconds": times.seconds["convert"],
            "cpu_seconds": times.cpu_seconds["convert"],
            "load_before": list(before),
            "load_after": list(after),
        }
    ]
    text = format_chicago(ChicagoResult([], [], [], {}, {}, timed=timed))
    line = next(x for x in text.splitlines() if x.strip().startswith("convert"))
    assert f"load average {', '.join(f'{x:g}' for x in before)} before" in line
    assert "baseline, same run:" in text
    assert "Time of this run" not in format_chicago(ChicagoResult([], [], [], {}, {}))
