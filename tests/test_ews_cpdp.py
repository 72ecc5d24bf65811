"""The CPDP adapter: exact mapping on a tiny hand-built CPDP folder, and counts on the real
2018 release."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from ews.adapters.cpdp import convert_cpdp
from ews.contract import ContractError, read_normalized

# the same folder as tests/conftest.py's CHICAGO (the shared data, never copied in the repo)
CHICAGO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chicago-cpdp-2018"

OFFICERS = [
    ["UID", "birth_year", "race", "gender", "appointed_date", "resignation_date", "current_rank",
     "current_unit"],
    ["100001", "1970.0", "WHITE", "MALE", "2000-01-01", "", "SERGEANT OF POLICE", "7.0"],
    ["100002", "", "BLACK", "FEMALE", "2005-06-01", "2001-01-01", "", ""],  # resigned before
    ["100003", "1980.0", "WHITE", "MALE", "", "", "POLICE OFFICER", "1.0"],  # no appointment
    ["100004", "", "", "", "1995-03-01", "2016-05-01", "", ""],
]  # fmt: skip
ALLEGATIONS = [
    ["UID", "cr_id", "complaint_date", "incident_date", "closed_date", "complaint_code",
     "complaint_category", "final_finding", "final_outcome"],
    ["100001.0", "C1", "2010-05-01", "2010-04-20", "2011-01-15", "05A",
     "EXCESSIVE FORCE:  ARRESTEE", "SU", "5 DAY SUSPENSION"],
    ["100002.0", "C1", "2010-05-01", "2010-04-20", "2011-01-15", "05A",
     "EXCESSIVE FORCE:  ARRESTEE", "NS", "NO ACTION TAKEN"],
    # incident after the complaint; finding without closed date
    ["100001.0", "C2", "2012-03-01", "2012-03-05", "", "10J", "NEGLECT OF DUTY", "NAF",
     "NO ACTION TAKEN"],
    # incident in 1919; closed before filed
    ["100001.0", "C3", "2013-01-10", "1919-01-01", "2012-12-01", "03E", "ILLEGAL SEARCH", "UN",
     "NO ACTION TAKEN"],
    # blank finding and code
    ["100004.0", "C4", "2014-02-01", "2014-01-01", "2014-06-01", "", "", "", "Unknown"],
    ["100003.0", "C5", "2014-02-01", "2014-01-01", "2014-06-01", "05A", "X", "SU", "REPRIMAND"],
    ["100004.0", "C6", "2009-02-01", "2009-01-15", "2009-09-01", "09A", "VERBAL ABUSE", "EX",
     "NO ACTION TAKEN"],
    ["100004.0", "C7", "2009-03-01", "", "2009-10-01", "09A", "VERBAL ABUSE", "DIS", ""],
]  # fmt: skip
TRR = [
    ["trr_id", "UID", "rank", "unit", "injured", "duty_status", "in_uniform", "trr_date",
     "firearm_used", "taser"],
    ["10", "100001.0", "POLICE OFFICER", "7", "Yes", "Yes", "Yes", "2011-02-02", "1", "0"],
    ["11", "", "DETENTION AIDE", "7", "No", "Yes", "Yes", "2011-02-03", "0", "0"],
    ["12", "100003.0", "POLICE OFFICER", "1", "No", "Yes", "Yes", "2011-02-04", "0", "1"],
]  # fmt: skip
UNITS = [
    ["UID", "unit", "unit_start_date", "unit_end_date"],
    ["100001", "12.0", "2000-01-01", "2005-12-31"],
    ["100001", "7.0", "2006-01-10", "2018-06-01"],  # gap before; placeholder end
    ["100004", "3.0", "1995-03-01", "2010-01-01"],
    ["100004", "5.0", "2009-06-01", "2016-05-01"],  # overlaps the previous
    ["100003", "1.0", "1990-01-01", "2018-06-01"],
]
RANKS = [
    ["UID", "year", "cleaned_rank", "pay_grade", "salary"],
    ["100001.0", "2016.0", "POLICE OFFICER", "D|1", "1.0"],
    ["100001.0", "2015.0", "POLICE OFFICER", "D|1", "1.0"],
    ["100001.0", "2017.0", "SERGEANT", "D|1", "1.0"],
    ["100004.0", "2010.0", "POLICE OFFICER", "D|1", "1.0"],
    ["100004.0", "2012.0", "POLICE OFFICER", "D|1", "1.0"],
    ["100002.0", "2016.0", "POLICE OFFICER", "D|1", "1.0"],
    ["100002.0", "2017.0", "POLICE OFFICER", "D|1", "1.0"],
    ["100003.0", "2017.0", "POLICE OFFICER", "D|1", "1.0"],
]


def _write(folder: Path, name: str, rows: list[list[str]]) -> None:
    with gzip.open(folder / f"{name}.csv.gz", "wt", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.fixture
def cpdp_src(tmp_path: Path) -> Path:
    src = tmp_path / "cpdp"
    src.mkdir()
    for name, rows in [
        ("cpd_officers", OFFICERS),
        ("cpd_allegations", ALLEGATIONS),
        ("cpd_trr", TRR),
        ("cpd_unit_history", UNITS),
        ("cpd_rank_year", RANKS),
    ]:
        _write(src, name, rows)
    return src


def _d(s: str | None) -> pd.Timestamp:
    return pd.Timestamp(s) if s else pd.NaT


def _records(df: pd.DataFrame, cols: list[str]) -> list[tuple]:
    out = []
    for row in df[cols].itertuples(index=False):
        out.append(tuple(None if pd.isna(v) else v for v in row))
    return out


def test_officers_mapping(cpdp_src: Path, tmp_path: Path) -> None:
    report = convert_cpdp(cpdp_src, tmp_path / "out")
    off = read_normalized(tmp_path / "out").officers.sort_values("officer_id")
    assert list(off.columns) == [
        "officer_id",
        "appointed_date",
        "separation_date",
        "birth_year",
        "sex",
        "race",
    ]  # fmt: skip  (current_rank / current_unit are as of 2018: dropped)
    assert _records(off, list(off.columns)) == [
        ("100001", _d("2000-01-01"), None, 1970, "MALE", "WHITE"),
        ("100002", _d("2005-06-01"), None, None, "FEMALE", "BLACK"),
        ("100004", _d("1995-03-01"), _d("2016-05-01"), None, None, None),
    ]
    assert report.rows_in["officers"] == 4
    assert report.rows_out["officers"] == 3
    drops = {d.reason: d.count for d in report.drops if d.file == "cpd_officers"}
    assert drops == {"without appointed_date (their events and assignments dropped too)": 1}
    fixes = {d.reason: d.count for d in report.fixes if d.file == "cpd_officers"}
    assert fixes == {"resignation_date before appointed_date: separation_date left empty": 1}


def test_complaints_mapping(cpdp_src: Path, tmp_path: Path) -> None:
    report = convert_cpdp(cpdp_src, tmp_path / "out")
    ev = read_normalized(tmp_path / "out").events
    cr = ev[ev["event_type"] == "complaint"].sort_values("event_id")
    cols = ["event_id", "officer_id", "event_date", "reported_date", "case_id", "category",
            "finding", "finding_date", "outcome"]  # fmt: skip
    assert _records(cr, cols) == [
        ("cr-C1-100001", "100001", _d("2010-04-20"), _d("2010-05-01"), "C1",
         "05A EXCESSIVE FORCE:  ARRESTEE", "sustained", _d("2011-01-15"), "5 DAY SUSPENSION"),
        ("cr-C1-100002", "100002", _d("2010-04-20"), _d("2010-05-01"), "C1",
         "05A EXCESSIVE FORCE:  ARRESTEE", "not_sustained", _d("2011-01-15"), "NO ACTION TAKEN"),
        # incident after complaint -> complaint date; finding without closed date -> pending
        ("cr-C2-100001", "100001", _d("2012-03-01"), _d("2012-03-01"), "C2",
         "10J NEGLECT OF DUTY", "pending", None, None),
        # incident 1919 -> complaint date; closed before filed -> finding_date = reported
        ("cr-C3-100001", "100001", _d("2013-01-10"), _d("2013-01-10"), "C3",
         "03E ILLEGAL SEARCH", "unfounded", _d("2013-01-10"), "NO ACTION TAKEN"),
        # blank finding -> pending, no date, no outcome; blank code -> no category
        ("cr-C4-100004", "100004", _d("2014-01-01"), _d("2014-02-01"), "C4",
         None, "pending", None, None),
        ("cr-C6-100004", "100004", _d("2009-01-15"), _d("2009-02-01"), "C6",
         "09A VERBAL ABUSE", "exonerated", _d("2009-09-01"), "NO ACTION TAKEN"),
        ("cr-C7-100004", "100004", _d("2009-03-01"), _d("2009-03-01"), "C7",
         "09A VERBAL ABUSE", "no_finding", _d("2009-10-01"), None),
    ]  # fmt: skip
    assert report.rows_in["allegations"] == 8
    assert report.rows_out["events:complaint"] == 7
    assert report.dropped("cpd_allegations") == 1  # the officer without appointment
    fixes = {d.reason: d.count for d in report.fixes if d.file == "cpd_allegations"}
    assert fixes["final_finding without closed_date: pending, outcome left empty"] == 1
    assert fixes["closed_date before complaint_date: finding_date = complaint_date"] == 1
    assert (
        fixes[
            "incident_date empty, after complaint_date or before 1950: event_date = complaint_date"
        ]
        == 3
    )


def test_use_of_force_mapping(cpdp_src: Path, tmp_path: Path) -> None:
    report = convert_cpdp(cpdp_src, tmp_path / "out")
    ev = read_normalized(tmp_path / "out").events
    uof = ev[ev["event_type"] == "use_of_force"]
    cols = ["event_id", "officer_id", "event_date", "reported_date", "finding", "firearm_used",
            "taser", "injured"]  # fmt: skip
    assert _records(uof, cols) == [
        ("trr-10", "100001", _d("2011-02-02"), _d("2011-02-02"), None, "1", "0", "1")
    ]
    drops = {d.reason: d.count for d in report.drops if d.file == "cpd_trr"}
    assert drops["without UID"] == 1
    assert sum(drops.values()) == 2


def test_assignments_mapping(cpdp_src: Path, tmp_path: Path) -> None:
    report = convert_cpdp(cpdp_src, tmp_path / "out")
    a = read_normalized(tmp_path / "out").assignments
    a = a.sort_values(["kind", "officer_id", "start_date"])
    assert _records(a, ["kind", "officer_id", "value", "start_date", "end_date"]) == [
        ("rank", "100001", "POLICE OFFICER", _d("2015-01-01"), _d("2017-01-01")),  # handover
        ("rank", "100001", "SERGEANT", _d("2017-01-01"), None),  # still there in 2017
        ("rank", "100002", "POLICE OFFICER", _d("2016-01-01"), None),
        ("rank", "100004", "POLICE OFFICER", _d("2010-01-01"), _d("2010-12-31")),  # gap year
        ("rank", "100004", "POLICE OFFICER", _d("2012-01-01"), _d("2012-12-31")),
        ("unit", "100001", "12", _d("2000-01-01"), _d("2005-12-31")),
        ("unit", "100001", "7", _d("2006-01-10"), None),  # 2018-06-01 placeholder
        ("unit", "100004", "3", _d("1995-03-01"), _d("2010-01-01")),
        ("unit", "100004", "5", _d("2009-06-01"), _d("2016-05-01")),
    ]
    fixes = {d.reason: d.count for d in report.fixes if d.file == "cpd_unit_history"}
    assert fixes["spell starts before the previous one ended (overlap, kept)"] == 1
    assert fixes["spell leaves a gap after the previous one (kept)"] == 1
    assert report.dropped("cpd_unit_history") == 1
    assert report.dropped("cpd_rank_year") == 1
    assert "cpd_rank_year" in report.summary() and "dropped" in report.summary()


def test_output_passes_validation(cpdp_src: Path, tmp_path: Path) -> None:
    from ews.validate import validate_package

    convert_cpdp(cpdp_src, tmp_path / "out")
    result = validate_package(tmp_path / "out")
    assert result.ok, result.report_lines()


def test_missing_file_and_column_are_clear_errors(cpdp_src: Path, tmp_path: Path) -> None:
    (cpdp_src / "cpd_trr.csv.gz").unlink()
    with pytest.raises(ContractError, match="missing CPDP file cpd_trr.csv.gz"):
        convert_cpdp(cpdp_src, tmp_path / "out")
    _write(cpdp_src, "cpd_trr", [row[:-1] for row in TRR])
    with pytest.raises(ContractError, match="missing column.*taser"):
        convert_cpdp(cpdp_src, tmp_path / "out")
    with pytest.raises(ContractError, match="not a folder"):
        convert_cpdp(tmp_path / "nowhere", tmp_path / "out")


def test_cli_convert(cpdp_src: Path, tmp_path: Path) -> None:
    from ews import cli_sources

    app = typer.Typer()
    cli_sources.register(app)
    result = CliRunner().invoke(app, ["convert", "cpdp", str(cpdp_src), str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "events:complaint: 7" in result.output
    assert (tmp_path / "o" / "events.parquet").is_file()
    bad = CliRunner().invoke(app, ["convert", "cpdp", str(tmp_path / "x"), str(tmp_path / "o")])
    assert bad.exit_code == 2
    assert "not a folder" in bad.output


@pytest.mark.slow
@pytest.mark.skipif(not CHICAGO.is_dir(), reason="shared CPDP data not present")
def test_real_cpdp(tmp_path: Path) -> None:
    from ews.validate import validate_package

    report = convert_cpdp(CHICAGO, tmp_path / "chicago")
    assert report.rows_in["allegations"] == 244_436
    assert 243_000 <= report.rows_out["events:complaint"] <= 244_436
    # 67,019 force reports minus the 287 without UID (and a few of dropped officers)
    assert report.rows_out["events:use_of_force"] == 67_019 - report.dropped("cpd_trr")
    assert 66_500 <= report.rows_out["events:use_of_force"] <= 66_732
    assert 33_500 <= report.rows_out["officers"] <= 33_693
    assert {d.reason: d.count for d in report.drops if d.file == "cpd_trr"}["without UID"] == 287
    unit_fixes = {d.reason: d.count for d in report.fixes if d.file == "cpd_unit_history"}
    assert unit_fixes["spell starts before the previous one ended (overlap, kept)"] == 100
    assert unit_fixes["spell leaves a gap after the previous one (kept)"] == 1_559
    assert report.seconds > 0  # recorded and printed; its speed is the benchmarks' to show
    result = validate_package(tmp_path / "chicago")
    assert result.ok, result.report_lines(10)
    pkg = read_normalized(tmp_path / "chicago")
    ev = pkg.events
    assert ev["event_id"].is_unique
    assert not ev["officer_id"].str.contains(r"\.", regex=True).any()
    assert (
        ev["finding_date"].dropna() >= ev.loc[ev["finding_date"].notna(), "reported_date"]
    ).all()
    # "05" selects excessive force
    force = ev["category"].str.startswith("05").fillna(False)
    assert 50_000 < force.sum() < 80_000
    excessive = ev["category"].str.contains("EXCESSIVE FORCE").fillna(False)
    assert excessive.sum() > 30_000
    assert force[excessive].all()
    assert (ev.loc[ev["finding"] == "sustained"].shape[0]) > 20_000
