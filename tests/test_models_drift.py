"""`ews drift` on a synthetic agency with injected drift (one unit's use-of-force rate doubles,
the excessive-force complaint category is recoded) and on an undisturbed later period of the
same generator; dates outside the data; the history in the database, on /api/drift and on the
reviewers' Drift page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from _drift_agency import make_drift_agency
from _models_agency import shared_mlflow_uri, small_config
from typer.testing import CliRunner

from ews.cli import app

runner = CliRunner()
AGENCY = "drifty"
DAY = "2015-01-01"  # a year after the change, two after the champion's label cutoff


def _run(args: list[str]) -> Any:
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A workspace with the calm agency ingested, a champion trained on it, then the drifted
    version ingested as the agency's current snapshot; both checks run once."""
    from ews.settings import get_settings
    from ews.store import Workspace

    tmp = tmp_path_factory.mktemp("drift")
    home = tmp / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EWS_HOME", str(home))
        mp.setenv("EWS_MLFLOW_URI", shared_mlflow_uri())
        mp.delenv("EWS_DATABASE_URL", raising=False)
        get_settings.cache_clear()
        calm = make_drift_agency(tmp / "calm", drift=False)
        drifted = make_drift_agency(tmp / "drifted", drift=True)
        assert _run(["ingest", str(calm), "--agency", AGENCY]).exit_code == 0
        config = small_config(labels=["sustained_or_force"], refit_champion=False)
        config["splitter"] = {
            "test_dates": ["2012-01-01", "2013-01-01"],
            "label_window": "1y",
            "train_history": "4y",
            "train_every": "1y",
            "inner_splits": 1,
        }
        (tmp / "experiment.yaml").write_text(yaml.safe_dump(config))
        trained = _run(["train", "--config", str(tmp / "experiment.yaml")])
        assert trained.exit_code == 0, trained.output
        calm_id = Workspace().snapshot(AGENCY).id
        assert _run(["ingest", str(drifted), "--agency", AGENCY]).exit_code == 0
        world: dict[str, Any] = {"home": home, "calm_id": calm_id}
        world["calm"] = _run(["drift", "--as-of", DAY, "--snapshot", calm_id])
        world["calm_json"] = json.loads((home / "drift" / AGENCY / DAY / "drift.json").read_text())
        world["drifted"] = _run(["drift", "--as-of", DAY])
        world["drifted_json"] = json.loads(
            (home / "drift" / AGENCY / DAY / "drift.json").read_text()
        )
        yield world
        get_settings.cache_clear()


def _print(name: str, summary: dict[str, Any]) -> None:
    scores, precision = summary["score_drift"], summary["precision"]
    print(
        f"{name}: {len(summary['drifted_columns'])} of {summary['columns']} columns drifted "
        f"({summary['drifted_share']:.1%}); score PSI {scores['psi']}, "
        f"KS p {scores['ks_pvalue']}; "
        f"precision@{precision['k_pct']:g}% {precision['precision_at_k']} "
        f"(validation {precision['validation_precision_at_k']}); alert {summary['alert']}"
    )


def test_injected_drift_is_caught(world: dict[str, Any]) -> None:
    result, summary = world["drifted"], world["drifted_json"]
    _print("drifted", summary)
    for row in summary["per_column"]:
        if row["drifted"]:
            value = row["p_value"] if row["stat_kind"] == "p-value" else row["distance"]
            print(f"  {row['column']}: {row['method']} {row['stat_kind']} {value}")
    assert result.exit_code == 3, result.output
    assert summary["alert"] and "input columns drifted" in summary["alert_reasons"][0]
    drifted = set(summary["drifted_columns"])
    # the doubled use-of-force rate of unit u1 and the recoded excessive-force category
    assert {"use_of_force_90d_count", "use_of_force_180d_count", "use_of_force_1y_count"} <= drifted
    assert {"force_complaint_90d_count", "force_complaint_180d_count"} <= drifted
    assert "force_complaint_1y_count" in drifted
    # nothing else moved: every drifted column is about force (use of force or the category)
    assert all(c.startswith(("use_of_force", "force_complaint")) for c in drifted), drifted
    # the means say which way: force complaints vanish (recoded), use of force goes up
    rows = {r["column"]: r for r in summary["per_column"]}
    assert rows["force_complaint_90d_count"]["current_mean"] == 0
    uof = rows["use_of_force_1y_count"]
    assert uof["current_mean"] > uof["reference_mean"]
    # the statistic is a p-value or a distance, each in its own field, named
    untested = [r for r in summary["per_column"] if r["method"] is None]
    assert all(r["note"].startswith("no value at the") for r in untested)
    assert len(untested) < 5
    for r in summary["per_column"]:
        if r["method"] is None:
            continue
        assert r["stat_kind"] in ("p-value", "distance")
        assert (r["p_value"] is None) != (r["distance"] is None)
        assert r["method"] and r["threshold"] is not None
    # the same alert does not fire at a 30% threshold: 25-ish% of the columns drift
    looser = _run(["drift", "--as-of", DAY, "--max-share", "0.3"])
    assert looser.exit_code == 0, looser.output


def test_undisturbed_later_period_is_not_flagged(world: dict[str, Any]) -> None:
    result, summary = world["calm"], world["calm_json"]
    _print("calm", summary)
    assert result.exit_code == 0, result.output
    assert not summary["alert"] and summary["drifted_share"] < 0.1
    assert not summary["score_drift"]["drifted"]
    assert "vs 2009-01-01, 2010-01-01, 2011-01-01, 2012-01-01: " in result.output


def test_report_and_precision(world: dict[str, Any]) -> None:
    summary = world["drifted_json"]
    # the outcome window after 2015-01-01 is covered by the data (to 2015-12-31)
    precision = summary["precision"]
    assert precision["matured"] and precision["k_pct"] == 10.0
    assert 0 <= precision["precision_at_k"] <= 1
    assert 0 <= precision["validation_precision_at_k"] <= 1
    scores = summary["score_drift"]
    assert {"psi", "ks_statistic", "ks_pvalue", "flag_rate_reference", "flag_rate_current"} <= set(
        scores
    )
    html = (world["home"] / "drift" / AGENCY / DAY / "drift.html").read_text()
    assert f"<title>ews drift report: {AGENCY}, ews-{AGENCY}-sustained_or_force v" in html
    assert "<script" not in html and "http" not in html  # self-contained, nothing fetched
    assert len(html) < 200_000
    assert '<th scope="col">p-value</th>' in html and '<th scope="col">Distance</th>' in html
    assert "Precision@10.0%" in html and "Population stability index" in html
    assert "Reference dates" in html and DAY in html


def test_dates_outside_the_data_are_refused(world: dict[str, Any]) -> None:
    for day in ("2016-01-02", "2030-06-01", "1990-01-01"):
        result = _run(["drift", "--as-of", day])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if not line.startswith("[")]
        # one line: the date, what the data cover, which dates to give
        assert len(lines) == 1, lines
        assert re.fullmatch(
            rf"error: the date {day} is outside the data \(events reported 1995-\d\d-\d\d \.\. "
            r"2015-12-31\): give a date from 1995-\d\d-\d\d to 2016-01-01",
            lines[0],
        ), lines
        assert "Warning" not in result.output and "empty column" not in result.output
    bad = _run(["drift", "--as-of", DAY, "--reference", "1980-01-01"])
    assert bad.exit_code == 2 and "the reference date 1980-01-01 is outside" in bad.output


def test_history_in_the_database(world: dict[str, Any]) -> None:
    from models.drift import drift_history

    rows = drift_history(AGENCY)
    assert len(rows) >= 3  # calm, drifted, looser (the order of the tests above)
    keys = {
        "as_of",
        "created_at",
        "model",
        "reference_dates",
        "columns",
        "drifted_columns",
        "drifted_share",
        "score_drift",
        "precision_at_k",
        "validation_precision_at_k",
        "alert",
        "threshold",
    }
    assert all(keys <= set(r) for r in rows)
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)  # newest first
    calm = next(r for r in rows if not r["alert"] and r["threshold"] == 0.2)
    alert = next(r for r in rows if r["alert"])
    assert alert["drifted_columns"] == len(world["drifted_json"]["drifted_columns"])
    assert calm["reference_dates"] == ["2009-01-01", "2010-01-01", "2011-01-01", "2012-01-01"]
    assert alert["as_of"] == DAY and re.fullmatch(
        r"ews-drifty-sustained_or_force v\d+", alert["model"]
    )
    assert drift_history(AGENCY, limit=1) == rows[:1]
    assert drift_history("nowhere") == []
    # every run wrote its audit entry with it
    from sqlalchemy import select

    from ews.db import AuditLog, open_app_database

    db = open_app_database()
    try:
        with db.session() as s:
            entries = list(s.scalars(select(AuditLog).where(AuditLog.resource == "ews drift")))
        assert {e.detail["drift_run"] for e in entries} >= set(ids)
    finally:
        db.dispose()


def test_api_and_page(world: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.security import create_user
    from ews.db import open_app_database
    from ews.settings import get_settings

    db = open_app_database()
    try:
        tokens = {
            "reviewer": create_user(db, "drift.reviewer", "reviewer", AGENCY),
            "ds": create_user(db, "drift.ds", "data_scientist", AGENCY),
            "sgt": create_user(db, "drift.sgt", "supervisor", AGENCY, ["u1"]),
            "other": create_user(db, "drift.other", "reviewer", "elsewhere"),
        }
    finally:
        db.dispose()
    with TestClient(create_app(get_settings())) as c:

        def get(who: str, url: str, **params: Any) -> Any:
            return c.get(url, params=params, headers={"Authorization": f"Bearer {tokens[who]}"})

        ok = get("reviewer", "/api/drift", agency=AGENCY)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["count"] >= 3 and body["data"][0]["id"] > body["data"][-1]["id"]
        assert get("ds", "/api/drift", agency=AGENCY).status_code == 200
        # a supervisor's role may not read it (the house's 403 for a role); another agency's
        # reviewer gets the 404 of a missing agency
        assert get("sgt", "/api/drift", agency=AGENCY).status_code == 403
        missing = get("reviewer", "/api/drift", agency="nowhere")
        assert missing.status_code == 404
        other = get("other", "/api/drift", agency=AGENCY)
        assert (other.status_code, other.json()) == (404, missing.json())
        assert get("reviewer", "/api/drift", agency=AGENCY, limit=0).status_code == 422
        assert get("reviewer", "/api/drift", agency="../etc").status_code == 422
        run = next(r for r in body["data"] if r["alert"])
        report = get("reviewer", f"/api/drift/{run['id']}/report")
        assert report.status_code == 200 and "<title>ews drift report" in report.text
        assert "default-src 'none'" in report.headers["content-security-policy"]
        assert get("other", f"/api/drift/{run['id']}/report").status_code == 404
        assert get("reviewer", "/api/drift/999999/report").status_code == 404
        assert get("sgt", f"/api/drift/{run['id']}/report").status_code == 403

        # the page: signed in by cookie, a table with a caption and headers, links by id
        c.post(
            "/signin", data={"token": tokens["reviewer"]}, headers={"Origin": "http://testserver"}
        )
        page = c.get("/drift")
        assert page.status_code == 200
        assert f"<caption>Drift checks of {AGENCY}, newest first</caption>" in page.text
        assert '<th scope="col">Alert</th>' in page.text
        assert f'href="/drift/{run["id"]}/report"' in page.text
        assert 'href="/drift" aria-current="page"' in page.text  # in the reviewers' nav
        assert '<label>Agency <select name="agency">' in page.text
        linked = c.get(f"/drift/{run['id']}/report")
        assert linked.status_code == 200 and "<title>ews drift report" in linked.text
        c.cookies.clear()
        c.post("/signin", data={"token": tokens["sgt"]}, headers={"Origin": "http://testserver"})
        assert c.get("/drift").status_code == 403
        assert 'href="/drift"' not in c.get("/flags").text


def _summary(agency: str, as_of: str, alert: bool) -> dict[str, Any]:
    return {
        "agency": agency,
        "model": "ews-x-sustained v2",
        "model_name": "ews-x-sustained",
        "model_version": "2",
        "snapshot_id": "abc",
        "as_of": as_of,
        "reference_dates": ["2019-01-01", "2020-01-01"],
        "columns": 10,
        "drifted_columns": ["a", "b", "c"] if alert else [],
        "drifted_share": 0.3 if alert else 0.0,
        "score_drift": {
            "psi": 0.05,
            "ks_pvalue": 0.5,
            "drifted": False,
            "flag_rate_reference": 0.05,
            "flag_rate_current": 0.06,
        },
        "precision": {"k_pct": 10.0, "precision_at_k": None, "validation_precision_at_k": 0.4},
        "alert": alert,
        "thresholds": {"max_share": 0.2, "score_psi": 0.2},
        "report_path": f"drift/{agency}/{as_of}/drift.html",
    }


def test_history_on_any_database(db_url: str) -> None:
    from ews.db import AppDatabase
    from models.drift import drift_history, store_run

    db = AppDatabase(db_url)
    try:
        first = store_run(_summary("x", "2021-01-01", False), db)
        second = store_run(_summary("x", "2022-01-01", True), db)
        store_run(_summary("y", "2022-01-01", True), db)
        rows = drift_history("x", db=db)
        assert [r["id"] for r in rows] == [second, first]
        assert rows[0]["alert"] is True and rows[0]["drifted_columns"] == 3
        assert rows[0]["precision_at_k"] is None and rows[0]["validation_precision_at_k"] == 0.4
        assert rows[1]["reference_dates"] == ["2019-01-01", "2020-01-01"]
    finally:
        db.dispose()


def test_score_drift_statistics() -> None:
    import numpy as np

    from models.drift import psi, score_drift

    rng = np.random.default_rng(0)
    ref = rng.beta(2, 5, 5000)
    same = rng.beta(2, 5, 2000)
    shifted = np.clip(rng.beta(2, 5, 2000) + 0.15, 0, 1)
    assert psi(ref, same) < 0.02
    assert psi(ref, shifted) > 0.2
    calm = score_drift(ref, same, 5.0, 0.2)
    moved = score_drift(ref, shifted, 5.0, 0.2)
    assert not calm["drifted"] and moved["drifted"]
    assert moved["ks_pvalue"] < 1e-6 < calm["ks_pvalue"]
    assert calm["flag_rate_reference"] == pytest.approx(0.05, abs=0.001)
    assert moved["flag_rate_current"] > 0.15
