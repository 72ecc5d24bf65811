"""`ews train`, `ews score`, `ews evaluate`, `ews models` end to end in a fresh workspace."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _models_agency import make_agency, shared_mlflow_uri, small_config
from typer.testing import CliRunner

from ews.cli import app

runner = CliRunner()


@pytest.fixture
def workspace(ews_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_MLFLOW_URI", shared_mlflow_uri())
    get_settings.cache_clear()
    return ews_home


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_without_data_says_ingest_first(workspace: Path) -> None:
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 1
    assert "ews ingest" in result.output


def test_train_score_evaluate_promote(workspace: Path, tmp_path: Path) -> None:
    pkg = make_agency(tmp_path / "pkg")
    from test_supervisor_pages import with_names  # officers' names and badges: never exported

    with_names(pkg)
    _ok(["ingest", str(pkg), "--agency", "clitest"])
    cfg = tmp_path / "experiment.yaml"
    config = small_config(rules=["cmpd", "best_single"])
    config["splitter"] = {**config["splitter"], "test_dates": ["2015-01-01"], "inner_splits": 1}  # type: ignore[dict-item]
    cfg.write_text(yaml.safe_dump(config))

    out = _ok(["train", "--config", str(cfg), "--out", str(tmp_path / "run")])
    assert "champion" in out and "ews-clitest-sustained" in out
    assert "{" not in out.split("results:")[1]  # the timings too are plain text
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # progress: a line per step and split as it happens, then a table that fits 100 columns
    assert "building features for" in out and "sustained 2015-01-01 (split 1/1)" in out
    lines = out.splitlines()
    table = lines[lines.index("label sustained") : lines.index("models:")]
    assert len(table) >= 2 + 2 + 3  # header, rule lines, model lines
    assert max(len(line) for line in table) <= 100
    assert "m1" in out and "lr[C=0.1]" in out  # short names with their legend
    # every test prediction is written, and reproduces the metrics of the results
    from sklearn.metrics import roc_auc_score

    preds = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    models = [r for r in results["records"] if r["kind"] == "model"]
    assert set(preds["method"]) == {r["method"] for r in models}
    for r in models:
        part = preds[(preds["method"] == r["method"]) & (preds["label"] == r["label"])]
        assert len(part) == r["n_test"] and part["officer_id"].is_unique
        assert roc_auc_score(part["outcome"], part["score"]) == pytest.approx(r["auc"])
    # --json: the same results on stdout for machines, progress and warnings on stderr
    as_json = runner.invoke(
        app,
        ["train", "--config", str(cfg), "--out", str(tmp_path / "j"), "--no-register", "--json"],
    )
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["results_path"] == str(tmp_path / "j" / "results.json")
    assert [r["method"] for r in body["records"]] == [r["method"] for r in results["records"]]
    assert "building features for" in as_json.stderr
    reg = results["champions"]["sustained"]["registered"]
    name, version, run_id = reg["name"], reg["version"], reg["run_id"]
    assert name == "ews-clitest-sustained"

    # The deployed champion was chosen and trained on the newest matured data only.
    (deploy,) = results["deployment"]
    last_event = pd.read_parquet(pkg / "events.parquet")["reported_date"].max()
    assert deploy["as_of"] == (pd.Timestamp(last_event) + pd.Timedelta(days=1)).date().isoformat()
    newest = date.fromisoformat(deploy["train_as_of"][-1])
    assert newest.replace(year=newest.year + 1) <= date.fromisoformat(deploy["as_of"])
    champion = results["champions"]["sustained"]
    assert champion["train_dates"] == deploy["train_as_of"]
    assert champion["candidate"]["name"] == deploy["chosen"]
    # the champion registered, and why, as printed
    assert f"registered {deploy['chosen']} as {name} v{version} (alias champion)" in out
    assert "why: best precision@10% mean - 0.5 x std over" in out

    listing = _ok(["models", "list"])
    assert "ews-clitest-sustained" in listing and "champion" in listing
    from models import registry

    # the SQLite store read directly says what the MLflow client says
    assert registry.list_models() == registry.list_models(fast=False)
    assert registry.list_models()[0]["aliases"] == ["champion"]

    # The champion's training labels count outcomes known up to the deployment date: scoring
    # before it would look ahead, and is refused unless asked for.
    refused = runner.invoke(app, ["score", "--as-of", "2016-01-01"])
    assert refused.exit_code == 1, refused.output
    assert f"outcomes known up to {deploy['as_of']}" in refused.output
    assert "--allow-lookahead" in refused.output
    allowed = _ok(["score", "--as-of", "2016-01-01", "--allow-lookahead", "--no-explain"])
    assert "warning: look-ahead" in allowed

    # scores only inside the data: a date far past its end is refused (exit 2), naming the
    # data end and the freshness allowed, and nothing is stored
    data_end = pd.Timestamp(last_event).date()
    stale = runner.invoke(app, ["score", "--as-of", "2030-01-01"])
    assert stale.exit_code == 2, stale.output
    assert f"data end {data_end}" in stale.output and "92 days" in stale.output
    assert "--max-staleness" in stale.output
    assert not (workspace / "flags" / "clitest" / "2030-01-01.parquet").exists()

    flags_csv = tmp_path / "flags.csv"
    _ok(["score", "--as-of", deploy["as_of"], "--out", str(flags_csv)])
    flags = pd.read_csv(flags_csv)
    n = len(flags)
    assert flags["flagged"].sum() == math.ceil(0.05 * n)
    assert list(flags["rank"]) == list(range(1, n + 1))
    assert flags["score"].is_monotonic_decreasing
    flagged = flags[flags["flagged"]]
    assert flagged["explanation"].str.len().min() > 0
    assert set(flags["model_version"].astype(str)) == {version}
    assert set(flags["model_name"]) == {name}
    assert set(flags["as_of_date"].astype(str).str[:10]) == {deploy["as_of"]}
    assert all(isinstance(json.loads(r), list) for r in flags["rules_fired"])

    # the audit defaults to the only agency and prints tables, not Python reprs
    audit = _ok(["audit", "disparities", "--min-group", "5"])
    assert f"clitest as of {deploy['as_of']}" in audit and "lowest/highest" in audit
    assert "{" not in audit and max(len(line) for line in audit.splitlines()) <= 100

    # drift of the inputs at the deployment date against the champion's training dates
    # (this agency hires nobody: its officers age, so tenure and the career counts drift,
    # and at the default threshold, more than 20% of the columns, `ews drift` alerts: exit 3)
    day = deploy["as_of"]
    alert = runner.invoke(app, ["drift", "--as-of", day])
    assert alert.exit_code == 3, alert.output
    assert "drifted: tenure_years" in alert.output and "ALERT: " in alert.output
    out = _ok(["drift", "--as-of", day, "--max-share", "0.6", "--score-psi", "5"])
    # the newest 4 training dates (the drift setting max_reference_dates)
    ref_dates = champion["train_dates"][-4:]
    assert f"{name} v{version} at {day} vs {', '.join(ref_dates)}" in out
    folder = workspace / "drift" / "clitest" / day
    report = json.loads((folder / "drift.json").read_text())
    assert report["officers_current"] > 0 and report["columns"] > 0
    assert {c["column"] for c in report["per_column"]} <= set(results["feature_columns"])
    assert all("method" in c and "drifted" in c for c in report["per_column"])
    assert report["thresholds"]["max_share"] == 0.6 and not report["alert"]
    assert (folder / "drift.html").stat().st_size > 0
    refused = runner.invoke(app, ["drift", "--as-of", champion["train_dates"][-1]])
    assert refused.exit_code == 1 and "is a reference date" in refused.output
    saved = workspace / "flags" / "clitest" / f"{deploy['as_of']}.parquet"
    assert saved.is_file()

    # Same code path as training: the champion applied to freshly built features gives
    # exactly the scores that `ews score` wrote.
    from ews.store import Workspace
    from features.build import build_features

    snap = Workspace().snapshot("clitest")
    assert set(flags["snapshot_id"]) == {snap.id}
    champ = registry.load_champion(name)
    feats = build_features(snap, [date.fromisoformat(deploy["as_of"])]).set_index("officer_id")
    X = feats.loc[flags["officer_id"].astype(str), champ.feature_names].astype(float)
    assert np.allclose(champ.model.predict_proba(X)[:, 1], flags["score"].to_numpy())

    report = tmp_path / "report"
    _ok(["evaluate", "--results", str(tmp_path / "run" / "results.json"), "--out", str(report)])
    page = (report / "evaluation.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "training years only" in page
    ev = json.loads((report / "evaluation.json").read_text())
    assert ev["metrics_table"] and ev["config_hash"] == results["config_hash"]
    _ok(["evaluate", "--run", run_id, "--out", str(tmp_path / "report2")])
    assert (tmp_path / "report2" / "evaluation.html").is_file()
    # no name or badge in an export: the flags, the predictions, the evaluation
    exported = [flags_csv, report / "evaluation.html", report / "evaluation.json"]
    for path in exported:
        assert "Zebulon" not in path.read_text() and "ZQ-" not in path.read_text(), path
    assert not {"name", "badge"} & (set(flags.columns) | set(preds.columns))
    assert not preds.astype(str).apply(lambda c: c.str.contains("Zebulon|ZQ-")).any().any()

    _ok(["models", "promote", name, version, "--alias", "challenger"])
    assert registry.resolve(f"{name}@challenger") == (name, version)
    bad = runner.invoke(app, ["models", "promote", name, "999"])
    assert bad.exit_code == 1 and "no version 999" in bad.output
    bad = runner.invoke(app, ["evaluate", "--run", "x", "--results", str(cfg), "--out", "x"])
    assert bad.exit_code == 2 and "exactly one of" in bad.output
    bad = runner.invoke(app, ["score", "--as-of", "2016-13-01"])
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_a_config_refused_before_any_work_is_bad_input(workspace: Path, tmp_path: Path) -> None:
    _ok(["ingest", str(make_agency(tmp_path / "pkg", officers=30)), "--agency", "clitest"])
    spec = Path(__file__).resolve().parents[1] / "models" / "specs" / "triage_peer.yaml"
    cases = {
        "is a YAML mapping": "- just a list\n",
        "invalid experiment config": yaml.safe_dump(small_config(n_boot="many")),
        # the rule needs columns the feature spec does not build: refused before any work
        "refused before any work": yaml.safe_dump(
            small_config(feature_spec=str(spec), rules=["cmpd"])
        ),
        "unknown agency 'elsewhere'": yaml.safe_dump(small_config(agency="elsewhere")),
    }
    for says, text in cases.items():
        cfg = tmp_path / "experiment.yaml"
        cfg.write_text(text)
        result = runner.invoke(app, ["train", "--config", str(cfg), "--no-register"])
        assert result.exit_code == 2, (says, result.output)
        assert says in result.output, (says, result.output)
        assert "building features" not in result.output


def test_score_with_a_champion_per_label_names_the_option_that_chooses(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import registry

    def two_champions(uri: str | None = None, **kw: object) -> list[dict[str, object]]:
        return [
            {"name": f"ews-a-{label}", "version": "1", "aliases": ["champion"], "agency": "a",
             "label": label}
            for label in ("sustained", "force")
        ]  # fmt: skip

    monkeypatch.setattr(registry, "list_models", two_champions)
    for command in (["score"], ["drift"]):
        result = runner.invoke(app, [*command, "--as-of", "2015-01-01"])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "several models have the alias 'champion': choose one with" in text
        assert "--model ews-a-sustained (sustained); --model ews-a-force (force)" in text


def test_models_list_never_folds_a_name_however_many_versions(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is what `ews models promote NAME VERSION` takes: a crowded registry (CI's
    shared one held 19 versions) must not break it over two lines of the table."""
    from models import registry

    rows = [
        {
            "name": f"ews-agency{i:02d}-sustained_or_force",
            "version": str(v),
            "aliases": ["champion"] if v == 1 else [],
            "label": "sustained_or_force",
            "candidate": "hgb[learning_rate=0.05,max_iter=200,max_leaf_nodes=15]",
            "snapshot_id": "s" * 16,
            "spec_hash": "h" * 12,
            "config_hash": "c" * 12,
            "seed": 0,
        }
        for i in range(10)
        for v in (1, 2)
    ]
    monkeypatch.setattr(registry, "list_models", lambda *a, **k: [dict(r) for r in rows])
    listing = _ok(["models", "list"])
    for r in rows:
        assert f"{r['name']} v{r['version']}" in listing
