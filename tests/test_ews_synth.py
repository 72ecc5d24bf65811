"""The synthetic agency generator: valid packages, determinism, a truth kept outside the
package, and counts that follow the documented model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from ews.contract import read_normalized
from ews.synth import RATES, SynthReport, synthesize, truth_path
from ews.validate import validate_package

PACKAGE_FILES = {"officers.parquet", "events.parquet", "assignments.parquet"}


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthReport]:
    """2,000 officers over 4 years (2010-2013): enough for the statistical checks."""
    out = tmp_path_factory.mktemp("synth") / "agency"
    return out, synthesize(out, officers=2000, years=4, seed=7, quiet=True)


def test_small_package_is_valid_and_truth_is_outside(tmp_path: Path) -> None:
    out = tmp_path / "small"
    report = synthesize(out, officers=300, years=3, seed=1, quiet=True)
    result = validate_package(out)
    assert result.ok, result.report_lines(10)
    assert {p.name for p in out.iterdir()} == PACKAGE_FILES
    assert report.truth == truth_path(out) == tmp_path / "small.truth.parquet"
    assert report.truth.is_file() and report.truth.parent != out
    pkg = read_normalized(out)
    assert len(pkg.officers) == report.officers == 300
    assert len(pkg.events) == report.events == sum(report.events_by_type.values())
    assert len(pkg.assignments) == report.assignments
    assert "propensity" not in pkg.officers.columns


def test_csv_format_matches_parquet(tmp_path: Path) -> None:
    synthesize(tmp_path / "p", officers=200, years=2, seed=5, quiet=True)
    synthesize(tmp_path / "c", officers=200, years=2, seed=5, fmt="csv", quiet=True)
    assert {p.name for p in (tmp_path / "c").iterdir()} == {
        "officers.csv",
        "events.csv",
        "assignments.csv",
    }
    result = validate_package(tmp_path / "c")
    assert result.ok, result.report_lines(10)
    parquet = read_normalized(tmp_path / "p").events
    csv = pd.read_csv(tmp_path / "c" / "events.csv", dtype=str, keep_default_na=False)
    assert len(csv) == len(parquet)
    assert list(csv["event_id"]) == list(parquet["event_id"])
    assert list(csv["finding_date"].replace("", None).dropna()) == list(
        parquet["finding_date"].dropna().dt.strftime("%Y-%m-%d")
    )


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        synthesize(tmp_path / name, officers=150, years=2, seed=seed, quiet=True)
    for f in [*sorted(PACKAGE_FILES)]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert truth_path(tmp_path / "a").read_bytes() == truth_path(tmp_path / "b").read_bytes()
    assert (tmp_path / "a" / "events.parquet").read_bytes() != (
        tmp_path / "c" / "events.parquet"
    ).read_bytes()


def test_knowledge_time(agency: tuple[Path, SynthReport]) -> None:
    out, _ = agency
    ev = read_normalized(out).events
    start, end = pd.Timestamp("2010-01-01"), pd.Timestamp("2014-01-01")
    assert ev["reported_date"].max() < end  # extracted on the first day after the period
    assert (ev["reported_date"] >= ev["event_date"]).all()
    cr = ev[ev["event_type"] == "complaint"]
    final = cr[cr["finding"] != "pending"]
    assert final["finding_date"].notna().all()
    assert (final["finding_date"] > final["reported_date"]).all()
    assert final["finding_date"].max() < end
    delay = (final["finding_date"] - final["reported_date"]).dt.days
    assert 120 < delay.median() < 540  # months, not days
    pending = cr[cr["finding"] == "pending"]
    assert pending["finding_date"].isna().all()
    # findings still open at extraction: mostly complaints of the last year
    assert len(pending) > 0.05 * len(cr)
    assert (pending["reported_date"] >= start + pd.DateOffset(years=2)).mean() > 0.9
    # complaints are reported a few days after the incident
    assert (cr["reported_date"] - cr["event_date"]).dt.days.median() <= 7
    assert (cr["category"].str.startswith("05").fillna(False)).mean() > 0.1


def test_counts_follow_exposure_times_propensity(agency: tuple[Path, SynthReport]) -> None:
    out, _ = agency
    truth = pd.read_parquet(truth_path(out))
    truth = truth[truth["active_days"] > 0]
    ev = read_normalized(out).events
    ev["year"] = ev["event_date"].dt.year
    counts = ev.groupby(["officer_id", "year", "event_type"]).size().unstack(fill_value=0)
    df = truth.merge(counts, left_on=["officer_id", "year"], right_index=True, how="left")
    df = df.fillna(0)
    exposure_years = df["exposure"] * df["active_days"] / 365.25
    expected_uof = RATES["use_of_force"] * exposure_years * df["propensity"]
    # by deciles of the expected count, observed and expected agree: within 4 Poisson
    # standard deviations (plus 5% slack), a generous but real tolerance
    bins = pd.qcut(expected_uof, 10, labels=False)
    obs = df["use_of_force"].groupby(bins).sum()
    exp = expected_uof.groupby(bins).sum()
    ok = (obs - exp).abs() < 4 * exp**0.5 + 0.05 * exp
    assert ok.all(), pd.DataFrame({"obs": obs, "exp": exp})
    assert abs(obs.sum() / exp.sum() - 1) < 0.05
    assert obs.iloc[-1] > 5 * obs.iloc[0]
    # propensity matters for force, not for arrests (both per exposure-year)
    high = df["propensity"] > df["propensity"].quantile(0.8)
    low = df["propensity"] < df["propensity"].quantile(0.2)
    uof_rate = df["use_of_force"] / exposure_years
    arrest_rate = df["arrest"] / exposure_years
    assert uof_rate[high].mean() > 2.5 * uof_rate[low].mean()
    assert abs(arrest_rate[high].mean() / arrest_rate[low].mean() - 1) < 0.1
    assert abs(arrest_rate.mean() / RATES["arrest"] - 1) < 0.1


def test_careers_and_sec3b_records(agency: tuple[Path, SynthReport]) -> None:
    out, report = agency
    pkg = read_normalized(out)
    off = pkg.officers.set_index("officer_id")
    truth = pd.read_parquet(truth_path(out))
    p0 = truth[truth["year"] == 2010].set_index("officer_id")["propensity"]
    separated = off["separation_date"].notna()
    assert 0.05 < separated.mean() < 0.4
    # higher propensity, likelier to leave
    assert separated[p0 > p0.median()].mean() > separated[p0 <= p0.median()].mean()
    ev = pkg.events
    for kind in ("lawsuit", "termination", "resignation_under_investigation"):
        assert report.events_by_type[kind] > 0, kind
    term = ev[ev["event_type"] == "termination"]
    assert (term["event_date"].to_numpy() == off.loc[term["officer_id"], "separation_date"]).all()
    decert = ev[ev["event_type"] == "decertification"]
    assert decert["officer_id"].isin(term["officer_id"]).all()
    judged = ev[ev["event_type"] == "civil_judgment"]
    assert judged["case_id"].isin(ev.loc[ev["event_type"] == "lawsuit", "case_id"]).all()
    # demographics independent of propensity: near parity
    by_sex = p0.groupby(off.loc[p0.index, "sex"]).mean()
    assert abs(by_sex["MALE"] / by_sex["FEMALE"] - 1) < 0.15
    # assignments: everyone has a unit and a rank from the appointment day
    a = pkg.assignments
    first = a.groupby(["officer_id", "kind"])["start_date"].min().unstack()
    assert (first["unit"] == off.loc[first.index, "appointed_date"]).all()
    assert (first["rank"] == off.loc[first.index, "appointed_date"]).all()
    assert set(a.loc[a["kind"] == "rank", "value"]) <= {"POLICE OFFICER", "SERGEANT", "LIEUTENANT"}
    assert a.groupby("officer_id").size().max() > 2  # transfers and promotions happen


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        synthesize(tmp_path / "x", officers=10, years=1, seed=0, fmt="xlsx")
    with pytest.raises(ValueError, match="positive"):
        synthesize(tmp_path / "x", officers=0, years=1, seed=0)


def test_cli_synth(tmp_path: Path) -> None:
    from ews import cli_sources

    app = typer.Typer()
    cli_sources.register(app)
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["synth", str(out), "--officers", "60", "--years", "2"])
    assert result.exit_code == 0, result.output
    assert "officers: 60" in result.output
    assert {p.name for p in out.iterdir()} == PACKAGE_FILES
    bad = runner.invoke(app, ["synth", str(out), "--format", "xml"])
    assert bad.exit_code == 2 and "parquet or csv" in bad.output
    help_text = runner.invoke(app, ["synth", "--help"]).output
    assert "propensity" in help_text


def test_events_per_officer_year(agency: tuple[Path, SynthReport]) -> None:
    """About 13-14 events per active officer-year, as the module documents."""
    _, report = agency
    per_year = report.events / report.active_officer_years
    assert 12.0 < per_year < 15.5
    assert report.events_by_type["arrest"] > report.events_by_type["complaint"] * 10


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_chunked_agency_is_valid_with_unique_ids(tmp_path: Path, fmt: str) -> None:
    """Officers generated and written in chunks (a million officers fit in a few GiB): a
    valid package, ids unique across chunks, the same model (events per officer-year, the
    mix of event types), and the same files for the same seed."""
    report = synthesize(tmp_path / "c", 2000, 4, seed=7, fmt=fmt, quiet=True, chunk_officers=700)
    result = validate_package(tmp_path / "c")
    assert result.ok, result.report_lines(10)
    if fmt == "csv":
        ev = pd.read_csv(tmp_path / "c" / "events.csv", dtype=str, keep_default_na=False)
        off = pd.read_csv(tmp_path / "c" / "officers.csv", dtype=str)
        assert (ev["event_id"] != "event_id").all()  # one header, not one per chunk
        assert len(ev) == report.events and len(off) == 2000
        return
    pkg = read_normalized(tmp_path / "c")
    assert pkg.officers["officer_id"].is_unique and len(pkg.officers) == report.officers == 2000
    assert pkg.officers["officer_id"].iloc[[0, 700, 1999]].tolist() == [
        "O000001",
        "O000701",
        "O002000",
    ]
    ev = pkg.events
    assert ev["event_id"].is_unique and len(ev) == report.events
    assert len(pkg.assignments) == report.assignments
    cases = ev[ev["event_type"] == "complaint"]["case_id"]
    assert cases.is_unique  # one officer per case, across chunks too
    lawsuits = ev.loc[ev["event_type"] == "lawsuit", "case_id"]
    assert lawsuits.is_unique
    judged = ev.loc[ev["event_type"] == "civil_judgment", "case_id"]
    assert judged.isin(lawsuits).all()
    # every chunk has officers and events; the whole follows the documented rates
    assert ev["officer_id"].str[1:].astype(int).gt(1400).any()
    assert 12.0 < report.events / report.active_officer_years < 15.5
    one = synthesize(tmp_path / "one", 2000, 4, seed=7, quiet=True)
    for kind, n in one.events_by_type.items():
        if n > 200:
            assert abs(report.events_by_type[kind] / n - 1) < 0.15, kind
    truth = pd.read_parquet(truth_path(tmp_path / "c"))
    assert len(truth) == 2000 * 4 and truth["officer_id"].nunique() == 2000
    synthesize(tmp_path / "again", 2000, 4, seed=7, quiet=True, chunk_officers=700)
    for f in sorted(PACKAGE_FILES):
        assert (tmp_path / "c" / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f
