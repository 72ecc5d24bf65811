"""The credentialing reviewer's audit report: built on a small trained and scored agency,
every section carries figures computed here independently, the file is whole (no script, no
external reference) and its PDF is a PDF; intervention outcomes on a hand-built case whose
answer is known; in-sample disparities refused on a real registered champion; the reviewers'
pages (reviewer 200, supervisor the 403 of every reviewers' page)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import statistics
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ews.cli import app
from tests._models_agency import make_agency, small_config

runner = CliRunner()
AGENCY = "reportville"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An agency ingested, trained (results and test predictions written), scored at its
    deployment date and, with look-ahead allowed, at an in-sample date; reviews and accesses
    written into its application database."""
    from ews.db import AppDatabase, FlagStatus, Review, ScoringRun
    from ews.settings import get_settings

    root = tmp_path_factory.mktemp("report")
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("EWS_HOME", str(home))
    mp.setenv("EWS_MLFLOW_URI", f"sqlite:///{root / 'mlflow.db'}")
    get_settings.cache_clear()
    try:
        pkg = make_agency(root / "pkg", officers=240)
        _ok(["ingest", str(pkg), "--agency", AGENCY])
        cfg = root / "experiment.yaml"
        config = small_config(labels=["sustained_or_force"], agency=AGENCY)
        cfg.write_text(yaml.safe_dump(config))
        _ok(["train", "--config", str(cfg)])
        results_path = next((home / "experiments").glob("*/results.json"))
        results = json.loads(results_path.read_text())
        deploy = results["deployment"][0]
        as_of = dt.date.fromisoformat(deploy["as_of"])
        _ok(["score", "--as-of", as_of.isoformat(), "--agency", AGENCY, "--no-explain"])
        db = AppDatabase(get_settings().app_database_url)
        with db.session() as s:
            run = s.query(ScoringRun).filter_by(agency=AGENCY, as_of_date=as_of).one()
            scored_at = run.scored_at
        flags = pd.read_parquet(home / "flags" / AGENCY / f"{as_of.isoformat()}.parquet")
        flagged = flags.loc[flags["flagged"], "officer_id"].tolist()
        # reviews: the first 6 flags reviewed after 1..6 days; two of them get an
        # intervention (training), one is dismissed with a reason
        waits = [1, 2, 3, 4, 5, 6]
        with db.write() as s:
            for i, (oid, days) in enumerate(zip(flagged[:6], waits, strict=True)):
                at = scored_at + dt.timedelta(days=days)
                steps = [("new", "under_review", None, None)]
                if i < 2:
                    steps.append(("under_review", "intervention_assigned", "training", None))
                if i == 2:
                    steps.append(("under_review", "dismissed", None, "explained by the beat"))
                last = None
                for frm, to, kind, reason in steps:
                    r = Review(
                        at=at,
                        agency=AGENCY,
                        officer_id=oid,
                        as_of_date=as_of,
                        reviewer="sgt.lee",
                        from_status=frm,
                        status=to,
                        intervention_type=kind,
                        due_date=as_of + dt.timedelta(days=90) if kind else None,
                        reason=reason,
                    )
                    s.add(r)
                    s.flush()
                    last = (to, r.id)
                assert last is not None
                s.add(
                    FlagStatus(
                        agency=AGENCY,
                        officer_id=oid,
                        as_of_date=as_of,
                        status=last[0],
                        updated_at=at,
                        first_reviewed_at=at,
                        due_date=as_of + dt.timedelta(days=90) if i < 2 else None,
                        last_review_id=last[1],
                    )
                )
        for actor, role, action in (
            ("auditor", "reviewer", "read"),
            ("auditor", "reviewer", "read"),
            ("sgt.lee", "supervisor", "read"),
            ("sgt.lee", "supervisor", "not_found"),
            ("sgt.lee", "supervisor", "denied"),
        ):
            db.audit(actor, role, action, "/test", agency=AGENCY)
        yield {
            "home": home,
            "db": db,
            "pkg": pkg,
            "results": results,
            "results_path": results_path,
            "as_of": as_of,
            "flagged": flagged,
            "waits": waits,
            "root": root,
        }
        db.dispose()
    finally:
        mp.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def report(world: dict[str, Any]) -> Any:
    from models.audit_report import build_report

    drift = [
        {
            "as_of": "2017-01-01",
            "created_at": "2017-01-02T10:00:00",
            "model": "ews-reportville-sustained_or_force v1",
            "reference_dates": ["2015-01-01", "2016-01-01"],
            "columns": 40,
            "drifted_columns": ["complaint_1y_count", "use_of_force_1y_count", "x"],
            "drifted_share": 0.075,
            "score_drift": 0.123,
            "precision_at_k": None,
            "validation_precision_at_k": 0.41,
            "alert": True,
            "threshold": 0.05,
        }
    ]
    return build_report(AGENCY, db=world["db"], drift_rows=drift, min_group=10)


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}"')
    return html[start : html.index("</section>", start)]


def test_report_sections_carry_the_figures(world: dict[str, Any], report: Any) -> None:
    html, data = report.html, report.data
    for anchor in (
        "checklist",
        "coverage",
        "rules",
        "champion",
        "bias",
        "drift",
        "workflow",
        "access",
        "outcomes",
    ):
        assert f'<section id="{anchor}"' in html, anchor
    # coverage: rows of the package, counted here
    events = pd.read_parquet(world["pkg"] / "events.parquet")
    cov = _section(html, "coverage")
    assert f"{len(events):,}" in cov and ">240<" in cov
    n_force = int((events["event_type"] == "use_of_force").sum())
    assert f"{n_force:,}" in cov
    # rules in words
    rules = _section(html, "rules")
    assert (
        "3 or more complaints in the last 180 days or 3 or more use-of-force reports in the "
        "last 90 days" in rules
    )
    assert "in the top 5% of their unit for use-of-force reports in the last year" in rules
    # the champion's card: features and training dates of the registered model
    from models import registry

    loaded = registry.load_model("champion", agency=AGENCY)
    card = data["champion"]
    assert card["features"]["count"] == len(loaded.feature_names)
    assert f"Features: {len(loaded.feature_names)} inputs" in html
    assert card["train_dates"] == loaded.tags["ews.train_dates"].split(",")
    assert card["label_cutoff"] == loaded.tags["ews.label_known_by"]
    # validation per split: the registered config's own record at each test date
    chosen = [r for r in world["results"]["records"] if r["kind"] == "model" and r["deployed"]]
    assert {r["method"] for r in chosen} == {card["candidate"]} == {loaded.tags["ews.candidate"]}
    assert {s["test_date"] for s in card["splits"]} == {r["test_date"] for r in chosen}
    for r in chosen:
        split = next(s for s in card["splits"] if s["test_date"] == r["test_date"])
        assert split["precision"] == pytest.approx(r["precision"], abs=1e-4)
        assert split["tp"] == r["tp"]
    # calibration: Brier of the registered method's test predictions, computed here
    preds = pd.read_parquet(world["results_path"].with_name("predictions.parquet"))
    for r in chosen:
        part = preds[
            (preds["method"] == r["method"])
            & (pd.to_datetime(preds["as_of_date"]) == pd.Timestamp(r["test_date"]))
        ]
        brier = float(((part["score"] - part["outcome"]) ** 2).mean())
        assert card["calibration"]["brier"][r["test_date"]] == pytest.approx(brier, abs=1e-4)
        # the held-out audit flags the top 5% of the same predictions
        k = math.ceil(0.05 * len(part) - 1e-9)
        assert data["bias"]["flagged_per_date"][r["test_date"]] == k
    # equal-volume comparison and its intervals, as recorded
    vs = {(c["test_date"], c["rule"]): c for c in card["vs_rules"]}
    for r in chosen:
        for rule, c in r["vs_rules"].items():
            row = vs[(r["test_date"], rule)]
            assert row["model_tp"] == c["model_tp"] == c["rule_tp"] + c["extra_tp"]
            assert row["extra_tp"] == c["extra_tp"] and row["fewer_fp"] == c["fewer_fp"]
    assert "% more (95% CI)" in html


def test_bias_audit_is_held_out_and_side_by_side(world: dict[str, Any], report: Any) -> None:
    data = report.data
    bias = data["bias"]
    assert bias["available"] is True
    assert bias["methods"][0] == "champion" and "cmpd" in bias["methods"]
    # held out: every test date is on or before the cutoff of the model that predicted it
    for d in bias["test_dates"]:
        split = next(s for s in data["champion"]["splits"] if s["test_date"] == d)
        assert split["labels_known_by"] <= d
    # every method flags the same number of officer-dates (equal volume)
    assert len({o["flagged"] for o in bias["overall"].values()}) == 1
    # the champion's held-out precision and flag rate by sex, recomputed from the predictions
    preds = pd.read_parquet(world["results_path"].with_name("predictions.parquet"))
    preds["as_of_date"] = pd.to_datetime(preds["as_of_date"])
    parts = []
    for d, method in bias["chosen"].items():
        part = preds[(preds["method"] == method) & (preds["as_of_date"] == pd.Timestamp(d))]
        k = bias["flagged_per_date"][d]
        parts.append(part.assign(flag=part["score"].rank(ascending=False, method="first") <= k))
    held = pd.concat(parts)
    precision = held.loc[held["flag"], "outcome"].mean()
    assert bias["overall"]["champion"]["precision"] == pytest.approx(precision, abs=1e-4)
    officers = pd.read_parquet(world["pkg"] / "officers.parquet")[["officer_id", "sex"]]
    held = held.merge(officers, on="officer_id")
    rates = held.groupby("sex")["flag"].mean()
    groups = {g["group"]: g for g in bias["by"]["sex"]["champion"]["groups"]}
    for sex, rate in rates.items():
        assert groups[sex]["flag_rate"] == pytest.approx(rate, abs=1e-4)
    section = _section(report.html, "bias")
    assert "In-sample dates (before a model's label cutoff) are not used" in section
    assert "cmpd" in section and "<svg" in section


def test_workflow_access_drift_and_checklist(world: dict[str, Any], report: Any) -> None:
    data, html = report.data, report.html
    w = data["workflow"]["totals"]
    n_flags = len(world["flagged"])
    assert w["flagged"] == n_flags and w["reviewed"] == 6
    assert w["share_reviewed"] == pytest.approx(6 / n_flags)
    assert w["median_days_to_review"] == pytest.approx(statistics.median(world["waits"]))
    assert data["workflow"]["interventions_by_type"] == {"training": 2}
    assert data["workflow"]["dismissals_by_reason"] == {"explained by the beat": 1}
    section = _section(html, "workflow")
    assert f"{6 / n_flags:.0%}" in section and "explained by the beat" in section
    acc = data["access"]
    assert acc["by_role"]["reviewer"]["read"] >= 2
    assert acc["by_role"]["supervisor"] == {"read": 1, "not_found": 1, "denied": 1}
    assert acc["refusals"] >= 2 and acc["chain"]["ok"] is True
    assert "audit chain intact" in _section(html, "access")
    drift = _section(html, "drift")
    assert "2017-01-01" in drift and "ALERT" in drift and "3 of 40" in drift
    # the checklist: each answer links to a section that exists
    anchors = set(re.findall(r'\bid="([a-z_-]+)"', html))
    assert {i["evidence"] for i in data["checklist"]} <= anchors
    statuses = {i["ask"].split(" (")[0]: i["status"] for i in data["checklist"]}
    assert statuses["Every flag is reviewed by a supervisor"] in ("not met", "not measurable")
    assert statuses["The model is monitored for drift"] == "not met"  # the newest alerted
    assert statuses["Every access is documented and the record is tamper-evident"] == "met"
    # held-out validation is answered from the promotion gate stored on the champion itself
    gate = data["champion"]["gate"]
    item = next(i for i in data["checklist"] if i["ask"].startswith("Validated on held-out"))
    assert gate is not None and item["status"] == ("met" if gate["passed"] else "not met")
    assert "promotion gate" in item["figure"] and data["champion"]["name"] in item["figure"]
    # no drift rows: said so, not an empty table
    from models.audit_report import render_html

    quiet = render_html({**data, "drift": []})
    assert "No drift checks recorded" in _section(quiet, "drift")


@pytest.fixture(scope="module")
def written(world: dict[str, Any], report: Any, tmp_path_factory: Any) -> dict[str, Path]:
    """The report's files, written once (WeasyPrint takes its time)."""
    from models.audit_report import write_report

    return write_report(report, tmp_path_factory.mktemp("out"), home=world["home"])


def test_report_files_are_whole_and_the_pdf_is_a_pdf(
    world: dict[str, Any], written: dict[str, Path]
) -> None:
    from models.audit_report import stored_report

    paths = written
    html = paths["html"].read_text()
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert json.loads(paths["json"].read_text())["agency"] == AGENCY
    assert stored_report(AGENCY, "pdf", world["home"]) is not None
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert html.count("<svg") >= 3  # charts inline


class _Tables(HTMLParser):
    """The caption and column headers of every table of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append({"caption": "", "heads": []})
        elif tag == "caption" and self.tables:
            self._in = "caption"
        elif tag == "th" and dict(attrs).get("scope") == "col" and self.tables:
            self._in = "th"
            self.tables[-1]["heads"].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "caption"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "th":
            self.tables[-1]["heads"][-1] += data
        elif self._in == "caption":
            self.tables[-1]["caption"] += data


def _squeezed(text: str) -> str:
    return re.sub(r"[\s\u00ad-]", "", text)


def _text_on_the_page(pdf: Path) -> list[str]:
    """Per page of the PDF, the text drawn inside the page (pypdf; a piece that starts right
    of the page's edge was cut off and is left out), without spaces or hyphens."""
    import pypdf

    def inside(page: Any) -> str:
        width = float(page.mediabox.width)
        seen: list[str] = []

        def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            if text.strip() and 0 <= x < width - 5:
                seen.append(text)

        page.extract_text(visitor_text=visit)
        return _squeezed("".join(seen))

    return [inside(page) for page in pypdf.PdfReader(pdf).pages]


def test_every_table_fits_the_pdf_page(report: Any, written: dict[str, Path]) -> None:
    """Every column header of every table is on an A4 page of the PDF (the table, or its
    page break, spans at most two pages): none is cut at the right margin."""
    pages = _text_on_the_page(written["pdf"])
    parsed = _Tables()
    parsed.feed(report.html)
    assert len(parsed.tables) >= 15
    for table in parsed.tables:
        heads = [_squeezed(h) for h in table["heads"] if _squeezed(h)]
        spans = [pages[i] + "".join(pages[i + 1 : i + 2]) for i in range(len(pages))]
        assert any(all(h in text for h in heads) for text in spans), (
            table["caption"],
            [h for h in heads if not any(h in p for p in pages)],
        )


def test_cli_writes_the_report(world: dict[str, Any], tmp_path: Path) -> None:
    out = _ok(["audit-report", "--agency", AGENCY, "--out", str(tmp_path), "--min-group", "10"])
    assert "checks met" in out and "Identifies officers who may require intervention" in out
    html = tmp_path / f"audit-report-{AGENCY}.html"
    assert html.is_file() and (tmp_path / f"audit-report-{AGENCY}.pdf").is_file()
    refused = runner.invoke(app, ["audit-report", "--agency", "nowhere", "--out", str(tmp_path)])
    assert refused.exit_code == 2 and "nowhere" in refused.output


def test_in_sample_disparities_refused_on_a_real_champion(world: dict[str, Any]) -> None:
    cutoff = dt.date.fromisoformat(world["results"]["deployment"][0]["train_labels_known_by"])
    early = dt.date(cutoff.year - 2, 1, 1)
    _ok(["score", "--as-of", early.isoformat(), "--agency", AGENCY, "--allow-lookahead"])
    args = ["audit", "disparities", "--agency", AGENCY, "--as-of", early.isoformat()]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert "in-sample" in refused.output and cutoff.isoformat() in refused.output
    marked = runner.invoke(app, [*args, "--allow-in-sample", "--min-group", "5"])
    assert marked.exit_code == 0 and "IN-SAMPLE" in marked.output
    held = runner.invoke(app, [*args[:-2], "--as-of", world["as_of"].isoformat()])
    assert held.exit_code == 0 and "held out" in held.output


def test_score_keeps_the_report_built(world: dict[str, Any]) -> None:
    """`ews score` ends by building the reviewers' report (a progress line before and after)
    and keeps its key; with nothing changed since, it is not built again."""
    from ews.settings import get_settings
    from models.audit_report import refresh_report, report_key, stored_key

    mp = pytest.MonkeyPatch()
    mp.setenv("EWS_BUILD_REPORTS", "true")
    get_settings.cache_clear()
    try:
        day = world["as_of"].isoformat()  # scored again: a new current run, a new key
        out = _ok(["score", "--as-of", day, "--agency", AGENCY, "--no-explain"])
        assert f"building the audit report and model card of {AGENCY}" in out
        assert f"audit report of {AGENCY} kept in" in out
        settings = get_settings()
        key = report_key(AGENCY, settings, world["db"])
        assert stored_key(AGENCY, settings.home) == key and key["runs"]
        assert refresh_report(AGENCY, settings, world["db"]) is False  # current: not built
    finally:
        mp.undo()
        get_settings.cache_clear()


def test_pages_for_reviewers_only(world: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.security import create_user
    from ews.settings import get_settings
    from models.audit_report import refresh_report

    db = world["db"]
    tokens = {
        "reviewer": create_user(db, "page.reviewer", "reviewer", AGENCY),
        "supervisor": create_user(db, "page.sgt", "supervisor", AGENCY, ["u1"]),
    }
    # what `ews score` ends with when EWS_BUILD_REPORTS is on (the suite turns it off)
    refresh_report(AGENCY, get_settings(), db)
    with TestClient(create_app(get_settings())) as c:
        c.post(
            "/signin", data={"token": tokens["supervisor"]}, headers={"Origin": "http://testserver"}
        )
        assert "Audit report" not in c.get("/flags").text  # no link to what is not theirs
        audit_log = c.get("/audit")
        assert audit_log.status_code == 403
        for url in ("/model-card", "/audit-report", "/audit-report.pdf"):
            r = c.get(url)
            assert r.status_code == 403 and r.text == audit_log.text, url
        c.post(
            "/signin", data={"token": tokens["reviewer"]}, headers={"Origin": "http://testserver"}
        )
        card = c.get("/model-card")
        assert card.status_code == 200 and "The champion" in card.text
        assert "Audit report" in card.text and "/audit-report.pdf" in card.text
        page = c.get("/audit-report")
        stored = world["home"] / "reports" / AGENCY / f"audit-report-{AGENCY}.html"
        body = stored.read_text().split("<body>", 1)[1]
        assert page.status_code == 200 and body in page.text  # the very file written
        assert "being rebuilt" not in page.text  # `ews score` kept it current
        head = page.text.split("<main", 1)[0]  # under the site header, with its PDF link
        assert "Sign out" in head and f'href="/audit-report.pdf?agency={AGENCY}"' in head
        pdf = c.get("/audit-report.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-type"] == "application/pdf"


def _outcome_world(tmp_path: Path, completed: str) -> tuple[Any, Any]:
    """20 flagged officers of unit u1 at 2018-01-01, scores in pairs 0.01 apart: o0-o9 had an
    intervention completed on ``completed`` and no adverse event after it; of their matches
    o10-o19 (no intervention), o10-o14 had a use-of-force report within the year after.
    o20, of another unit, has the nearest score of all but is no candidate. Data run to
    2020-06-30."""
    from ews.contract import write_normalized
    from ews.db import AppDatabase, FlagStatus, Review
    from ews.flagstore import save_flags
    from ews.ingest import ingest_package
    from ews.store import Workspace

    home = tmp_path / "home"
    ids = [f"o{i}" for i in range(21)]
    officers = pd.DataFrame({"officer_id": ids, "appointed_date": ["2010-01-01"] * 21})
    start = dt.date.fromisoformat(completed)
    rows = [  # adverse events of the controls, 60 days into the follow-up
        (f"e{i}", f"o{i}", "use_of_force", (start + dt.timedelta(days=60)).isoformat())
        for i in range(10, 15)
    ]
    rows += [  # the intervened officers' force reports all came before completion
        (f"b{i}", f"o{i}", "use_of_force", "2017-06-01") for i in range(10)
    ]
    rows += [("o20x", "o20", "use_of_force", (start + dt.timedelta(days=30)).isoformat())]
    rows += [("end", "o0", "arrest", "2020-06-30")]
    events = pd.DataFrame(rows, columns=["event_id", "officer_id", "event_type", "event_date"])
    snap = ingest_package(
        write_normalized(tmp_path / "pkg", officers, events), "town", workspace=Workspace(home)
    ).snapshot
    db = AppDatabase(f"sqlite:///{tmp_path / 'app.db'}")
    day = dt.date(2018, 1, 1)
    scores = [0.9 - 0.02 * i for i in range(10)] + [0.9 - 0.02 * i - 0.01 for i in range(10)]
    flags = pd.DataFrame(
        {
            "officer_id": ids,
            "unit": ["u1"] * 20 + ["u2"],
            "score": scores + [0.9],
            "rank": list(range(1, 22)),
            "flagged": [True] * 21,
            "snapshot_id": snap.id,
            "label": "sustained_or_force",
            "model_name": "m",
            "model_version": "1",
        }
    )
    save_flags("town", day, flags, home=home, db=db)
    at = dt.datetime.combine(start, dt.time(12))
    with db.write() as s:
        for i in range(10):
            last = None
            for frm, to in (
                ("new", "under_review"),
                ("under_review", "intervention_assigned"),
                ("intervention_assigned", "intervention_completed"),
            ):
                r = Review(
                    at=at if to == "intervention_completed" else at - dt.timedelta(days=90),
                    agency="town",
                    officer_id=f"o{i}",
                    as_of_date=day,
                    reviewer="sgt",
                    from_status=frm,
                    status=to,
                    intervention_type="peer_support" if to == "intervention_assigned" else None,
                )
                s.add(r)
                s.flush()
                last = r.id
            assert last is not None
            s.add(
                FlagStatus(
                    agency="town",
                    officer_id=f"o{i}",
                    as_of_date=day,
                    status="intervention_completed",
                    updated_at=at,
                    first_reviewed_at=at - dt.timedelta(days=90),
                    last_review_id=last,
                )
            )
    return db, snap


def test_intervention_outcomes_on_a_known_case(tmp_path: Path) -> None:
    from models.audit_report import intervention_outcomes, render_html

    db, snap = _outcome_world(tmp_path, "2018-06-01")
    try:
        out = intervention_outcomes(db, "town", snap, "sustained_or_force", min_pairs=10)
        assert out["available"] is True and out["pairs"] == 10 and out["completed"] == 10
        assert out["treated_rate"] == 0.0 and out["control_rate"] == 0.5
        assert out["difference"] == -0.5
        low, high = out["ci95"]
        assert low <= -0.5 <= high and high < 0  # the interval excludes no difference
        assert out["matched_on_unit"] == 10 and out["unmatched"] == 0
        too_few = intervention_outcomes(db, "town", snap, "sustained_or_force", min_pairs=11)
        assert too_few["available"] is False and "too few" in too_few["why"]
        # in the report: the rates, the difference and the caveat
        data: dict[str, Any] = {"outcomes": out}
        html = render_html(_minimal(data))
        section = _section(html, "outcomes")
        assert "-50 points" in section and "Observational, not causal" in section
        assert "50%" in section and "0%" in section
    finally:
        db.dispose()


def test_intervention_outcomes_wait_for_the_follow_up(tmp_path: Path) -> None:
    from models.audit_report import intervention_outcomes

    db, snap = _outcome_world(tmp_path, "2019-12-01")  # a year after: past the data's end
    try:
        out = intervention_outcomes(db, "town", snap, "sustained_or_force", min_pairs=1)
        assert out["available"] is False and out["not_yet_covered"] == 10
        assert out["pairs"] == 0 and "fewer than 1" in out["why"]
    finally:
        db.dispose()


def _minimal(extra: dict[str, Any]) -> dict[str, Any]:
    """The smallest report data the template renders (an agency with nothing yet)."""
    data: dict[str, Any] = {
        "agency": "town",
        "generated_at": "now",
        "snapshot_id": "s",
        "coverage": [],
        "rules": [],
        "champion": None,
        "bias": {"available": False, "why": "no champion"},
        "drift": [],
        "workflow": {
            "data": [],
            "count": 0,
            "totals": {
                "flagged": 0,
                "reviewed": 0,
                "share_reviewed": None,
                "open": 0,
                "overdue": 0,
                "by_status": {},
                "median_days_to_review": None,
            },
            "interventions_by_type": {},
            "completed_by_type": {},
            "dismissals_by_reason": {},
            "review_days": 14,
        },
        "access": {
            "entries": 0,
            "first": None,
            "last": None,
            "by_role": {},
            "actions": [],
            "refusals": 0,
            "chain": {"ok": True, "summary": "audit chain intact: 0 entries"},
        },
        "outcomes": {"available": False, "why": "none", "completed": 0, "pairs": 0},
        "min_group": 20,
        "checklist": [],
    }
    data.update(extra)
    return data


def test_api_serves_the_report_figures(world: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.security import create_user
    from ews.settings import get_settings

    db = world["db"]
    reviewer = create_user(db, "api.reviewer", "reviewer", AGENCY)
    other = create_user(db, "api.other", "reviewer", "elsewhere")
    with TestClient(create_app(get_settings())) as c:
        url, q = "/api/audit/report", {"agency": AGENCY}
        r = c.get(url, params=q, headers={"Authorization": f"Bearer {reviewer}"})
        assert r.status_code == 200 and r.json()["agency"] == AGENCY
        assert r.json()["workflow"]["totals"]["reviewed"] == 6
        hidden = c.get(url, params=q, headers={"Authorization": f"Bearer {other}"})
        nowhere = c.get(
            url, params={"agency": "nowhere"}, headers={"Authorization": f"Bearer {other}"}
        )
        assert hidden.status_code == 404 and hidden.text == nowhere.text


def test_timeliness_is_a_share_of_the_closed_windows(world: dict[str, Any]) -> None:
    """Per unit and per supervisor, and the checklist's "timely": at least 80% of the flags
    whose review window has closed reviewed within it, not one review."""
    from ews.reviews import review_summary
    from models.audit_report import checklist

    db = world["db"]
    later = dt.date.today() + dt.timedelta(days=60)  # every window closed
    summary = review_summary(db, AGENCY, 14, today=later)
    t = summary["totals"]
    n_flags = t["flagged"]  # of every current run (other tests score more dates)
    assert n_flags >= len(world["flagged"])
    assert t["due"] == n_flags and t["reviewed_in_time"] == 6  # reviewed after 1..6 days
    assert sum(g["flagged"] for g in summary["by_unit"]) == n_flags
    assert sum(g["in_time"] for g in summary["by_unit"]) == 6
    assert all(g["flagged"] for g in summary["by_supervisor"])
    strict = review_summary(db, AGENCY, 3, today=later)  # a 3-day window: 3 of 6 in time
    assert strict["totals"]["reviewed_in_time"] == 3

    def timely(totals: dict[str, Any]) -> dict[str, Any]:
        workflow = {**_minimal({})["workflow"], "count": 1, "totals": totals}
        items = checklist(_minimal({"workflow": workflow}))
        return next(i for i in items if i["ask"].startswith("Reviews are timely"))

    one = timely({**t, "flagged": 304, "reviewed": 1, "due": 304, "reviewed_in_time": 1})
    assert one["status"] == "not met" and "1 of 304" in one["figure"]
    most = timely({**t, "flagged": 10, "reviewed": 8, "due": 10, "reviewed_in_time": 8})
    assert most["status"] == "met" and "(80%)" in most["figure"]
    early = timely({**t, "flagged": 10, "reviewed": 0, "due": 0, "reviewed_in_time": 0})
    assert early["status"] == "not measurable"


def test_access_counts_the_sign_ins_of_every_agency_accounts(world: dict[str, Any]) -> None:
    """A reviewer created without --agency signs in under no agency: still counted."""
    from models.audit_report import access_summary

    db = world["db"]
    before = access_summary(db, AGENCY)["sign_ins"]
    db.audit("all.reviewer", "reviewer", "sign_in", "/signin", agency=None)
    db.audit("other.sgt", "supervisor", "sign_in", "/signin", agency="elsewhere")
    after = access_summary(db, AGENCY)
    assert after["by_role"]["reviewer"]["sign_in"] == before.get("reviewer", 0) + 1
    assert after["sign_ins"]["reviewer"] == before.get("reviewer", 0) + 1
    # another agency's supervisor is not this agency's
    assert after["sign_ins"].get("supervisor", 0) == before.get("supervisor", 0)
