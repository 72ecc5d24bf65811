"""Every rule of the contract, one test each: a package breaking it is refused with the right
``file row N, column: rule`` line, exit 2, and the workspace left byte for byte as it was."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ews_testdata import tree_digest, valid_tables, write_package
from typer.testing import CliRunner

from ews.cli import app
from ews.validate import validate_package

Tables = dict[str, dict[str, list[str | None]]]
runner = CliRunner()


def _set(table: str, column: str, row: int, value: str | None) -> Callable[[Tables], None]:
    """A mutation setting one cell (row 1 = first data row)."""

    def change(t: Tables) -> None:
        t[table][column][row - 1] = value

    return change


def _drop_column(table: str, column: str) -> Callable[[Tables], None]:
    def change(t: Tables) -> None:
        del t[table][column]

    return change


def _drop_table(table: str) -> Callable[[Tables], None]:
    def change(t: Tables) -> None:
        del t[table]

    return change


# (test id, mutation, file stem, expected lines with {ext} for the file suffix)
CASES: list[tuple[str, Callable[[Tables], None], list[str]]] = [
    ("officers_file_missing", _drop_table("officers"), ["officers: required file is missing"]),
    ("events_file_missing", _drop_table("events"), ["events: required file is missing"]),
    (
        "required_column_missing",
        _drop_column("events", "event_type"),
        ["events.{ext}, event_type: required column is missing"],
    ),
    (
        "required_value_empty",
        _set("events", "officer_id", 3, None),
        ["events.{ext} row 3, officer_id: required value is empty"],
    ),
    (
        "required_date_empty",
        _set("officers", "appointed_date", 2, None),
        ["officers.{ext} row 2, appointed_date: required value is empty"],
    ),
    (
        "officer_id_unique",
        _set("officers", "officer_id", 4, "o2"),
        [
            "officers.{ext} row 2, officer_id: must be unique",
            "officers.{ext} row 4, officer_id: must be unique",
            # o4 is gone, so its event has no officer
            "events.{ext} row 5, officer_id: no officer with this officer_id in officers",
        ],
    ),
    (
        "event_id_unique",
        _set("events", "event_id", 5, "e1"),
        [
            "events.{ext} row 1, event_id: must be unique",
            "events.{ext} row 5, event_id: must be unique",
        ],
    ),
    (
        "date_not_iso",
        _set("events", "event_date", 2, "02/11/2016"),
        ["events.{ext} row 2, event_date: not a date in ISO format YYYY-MM-DD"],
    ),
    (
        "date_impossible",
        _set("assignments", "start_date", 3, "2005-02-30"),
        ["assignments.{ext} row 3, start_date: not a date in ISO format YYYY-MM-DD"],
    ),
    (
        "date_unpadded",
        _set("officers", "separation_date", 1, "2019-1-5"),
        ["officers.{ext} row 1, separation_date: not a date in ISO format YYYY-MM-DD"],
    ),
    (
        "separation_before_appointed",
        _set("officers", "separation_date", 3, "2009-12-31"),
        ["officers.{ext} row 3, separation_date: must not be before appointed_date"],
    ),
    (
        "birth_year_too_early",
        _set("officers", "birth_year", 2, "1850"),
        ["officers.{ext} row 2, birth_year: must be an integer year in 1900.."],
    ),
    (
        "birth_year_not_integer",
        _set("officers", "birth_year", 4, "19x0"),
        ["officers.{ext} row 4, birth_year: must be an integer year in 1900.."],
    ),
    (
        "birth_year_future",
        _set("officers", "birth_year", 1, "2999"),
        ["officers.{ext} row 1, birth_year: must be an integer year in 1900.."],
    ),
    (
        "event_officer_unknown",
        _set("events", "officer_id", 6, "o99"),
        ["events.{ext} row 6, officer_id: no officer with this officer_id in officers"],
    ),
    (
        "assignment_officer_unknown",
        _set("assignments", "officer_id", 2, "o42"),
        ["assignments.{ext} row 2, officer_id: no officer with this officer_id in officers"],
    ),
    (
        "event_type_not_snake_case",
        _set("events", "event_type", 3, "Use of Force"),
        ["events.{ext} row 3, event_type: must be lower_snake_case"],
    ),
    (
        "reported_before_event",
        _set("events", "reported_date", 4, "2018-04-01"),
        ["events.{ext} row 4, reported_date: must not be before event_date"],
    ),
    (
        "finding_vocabulary",
        _set("events", "finding", 1, "guilty"),
        ["events.{ext} row 1, finding: must be one of sustained"],
    ),
    (
        "finding_date_required",
        _set("events", "finding_date", 1, None),
        ["events.{ext} row 1, finding_date: required when finding is 'sustained'"],
    ),
    (
        "finding_date_before_reported",
        _set("events", "finding_date", 1, "2015-01-11"),
        ["events.{ext} row 1, finding_date: must not be before reported_date"],
    ),
    (
        "finding_date_before_event_when_unreported",
        _set("events", "finding_date", 6, "2016-05-31"),
        ["events.{ext} row 6, finding_date: must not be before reported_date"],
    ),
    (
        "assignment_kind_not_snake_case",
        _set("assignments", "kind", 1, "Unit"),
        ["assignments.{ext} row 1, kind: must be lower_snake_case"],
    ),
    (
        "end_before_start",
        _set("assignments", "end_date", 1, "2000-01-01"),
        ["assignments.{ext} row 1, end_date: must not be before start_date"],
    ),
]


@pytest.fixture
def home_with_snapshot(ews_home: Path, tmp_path: Path) -> Path:
    """A workspace that already holds one snapshot (so 'unchanged' is not trivially true)."""
    pkg = write_package(tmp_path / "base_agency", valid_tables())
    result = runner.invoke(app, ["ingest", str(pkg), "--agency", "base"])
    assert result.exit_code == 0, result.output
    return ews_home


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(("case", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule_refuses_package(
    case: str,
    mutate: Callable[[Tables], None],
    expected: list[str],
    fmt: str,
    home_with_snapshot: Path,
    tmp_path: Path,
) -> None:
    tables = valid_tables()
    mutate(tables)
    # row groups of 2 rows: row numbers must survive Parquet's chunking
    pkg = write_package(tmp_path / "bad", tables, fmt=fmt, row_group_size=2)
    before = tree_digest(home_with_snapshot)

    checked = runner.invoke(app, ["validate", str(pkg)])
    assert checked.exit_code == 2, checked.output
    lines = _lines(checked.stdout)
    for want in expected:
        want = want.format(ext=fmt)
        assert any(line.startswith(want) for line in lines), (want, lines)
    # exactly the expected problems, nothing spurious
    assert len(lines) == len(expected), lines

    refused = runner.invoke(app, ["ingest", str(pkg), "--agency", "base"])
    assert refused.exit_code == 2, refused.output
    assert tree_digest(home_with_snapshot) == before


def test_valid_package_passes(tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "ok", valid_tables())
    result = runner.invoke(app, ["validate", str(pkg)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


def test_assignments_are_optional(tmp_path: Path) -> None:
    tables = valid_tables()
    del tables["assignments"]
    v = validate_package(write_package(tmp_path / "ok", tables))
    assert v.ok, v.report_lines()
    assert v.tables["assignments"].num_rows == 0


def test_typed_parquet_is_accepted(tmp_path: Path) -> None:
    """A Parquet package with real date and integer columns is valid and reads the same."""
    tables = valid_tables()
    csv_v = validate_package(write_package(tmp_path / "csv", tables))
    folder = tmp_path / "typed"
    folder.mkdir()
    for name, t in csv_v.tables.items():
        pq.write_table(t, folder / f"{name}.parquet")
    typed_v = validate_package(folder)
    assert typed_v.ok, typed_v.report_lines()
    for name in csv_v.tables:
        assert typed_v.tables[name].equals(csv_v.tables[name])


def test_two_files_for_one_table(tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "dup", valid_tables())
    shutil.copy(pkg / "officers.csv", pkg / "officers.parquet")
    result = runner.invoke(app, ["validate", str(pkg)])
    assert result.exit_code == 2
    assert "officers: more than one file for table 'officers'" in result.stdout


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["events"]["beat"] = ["1", "2", None, "4", "5", "6"]
    v = validate_package(write_package(tmp_path / "extra", tables))
    assert v.ok, v.report_lines()
    assert v.tables["events"]["beat"].to_pylist() == ["1", "2", None, "4", "5", "6"]


def test_reported_date_defaults_to_event_date(tmp_path: Path) -> None:
    v = validate_package(write_package(tmp_path / "ok", valid_tables()))
    ev = v.tables["events"].to_pydict()
    i = ev["event_id"].index("e2")
    assert ev["reported_date"][i] == ev["event_date"][i]


def test_every_problem_is_reported_and_listing_is_capped(tmp_path: Path) -> None:
    n = 130
    tables = valid_tables()
    ev = tables["events"]
    for col in ev:
        ev[col] = (ev[col] * (n // 6 + 1))[:n]
    ev["event_id"] = [f"e{i}" for i in range(n)]
    ev["event_type"] = ["Bad Type"] * n
    ev["officer_id"][7] = "nobody"
    pkg = write_package(tmp_path / "many", tables)
    result = runner.invoke(app, ["validate", str(pkg), "--max-lines", "50"])
    assert result.exit_code == 2
    lines = _lines(result.stdout)
    typed = [line for line in lines if "event_type" in line]
    assert len(typed) == 51
    assert typed[-1] == (
        "events.csv, event_type: ... and 80 more rows breaking the same rule "
        "(must be lower_snake_case (for example use_of_force))"
    )
    assert "events.csv row 8, officer_id: no officer with this officer_id in officers" in lines
    assert validate_package(pkg).problem_count == n + 1


@pytest.mark.parametrize(
    "defect",
    ["not_utf8", "not_utf8_header", "not_utf8_deep", "bad_gzip", "ragged_csv", "empty_file"],
)
def test_unreadable_file_is_a_clear_message(defect: str, tmp_path: Path, ews_home: Path) -> None:
    pkg = write_package(tmp_path / "broken", valid_tables())
    if defect == "not_utf8":
        (pkg / "events.csv").write_bytes(
            (pkg / "events.csv").read_bytes().replace(b"EXCESSIVE", b"EXCESSIV\xc9")
        )
        want = "events.csv row 1 (line 2): not UTF-8 text"
    elif defect == "not_utf8_header":
        data = (pkg / "events.csv").read_bytes()
        (pkg / "events.csv").write_bytes(data.replace(b"event_type", b"event_typ\xc9", 1))
        want = "events.csv: cannot be read: not UTF-8 text (in the header row, line 1)"
    elif defect == "not_utf8_deep":  # far past the header, where pyarrow finds it
        tables = valid_tables()
        tables["officers"]["race"][3] = "C" * 20_000
        pkg = write_package(tmp_path / "deep", tables)
        data = (pkg / "officers.csv").read_bytes()
        (pkg / "officers.csv").write_bytes(data.replace(b'CCCCCCCCC"', b'CCCCCCCC\xff"'))
        want = "officers.csv row 4 (line 5): not UTF-8 text"
    elif defect == "bad_gzip":
        (pkg / "events.csv").unlink()
        (pkg / "events.csv.gz").write_bytes(b"this is not gzip at all" * 10)
        want = "events.csv.gz: "
    elif defect == "ragged_csv":
        with (pkg / "officers.csv").open("a") as f:
            f.write('"o9","2001-01-01",,,,,"one too many"\n')
        want = "officers.csv row 5 (line 6): has 7 fields where the header has 6"
    else:
        (pkg / "assignments.csv").write_bytes(b"")
        want = "assignments.csv: the file is empty"
    before = tree_digest(ews_home)
    result = runner.invoke(app, ["ingest", str(pkg)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert any(line.startswith(want) for line in _lines(result.stdout)), result.stdout
    assert tree_digest(ews_home) == before


def test_truncated_gzip_is_a_clear_message(tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "gz", valid_tables(), fmt="csv.gz")
    data = (pkg / "events.csv.gz").read_bytes()
    (pkg / "events.csv.gz").write_bytes(data[: len(data) // 2])
    v = validate_package(pkg)
    assert not v.ok
    assert v.report_lines()[0].startswith("events.csv.gz: cannot be read")
    with gzip.open(pkg / "officers.csv.gz", "rt") as f:  # the other files were fine
        assert f.readline().startswith('"officer_id"')


def test_not_a_folder_is_bad_input_exit_2(ews_home: Path, tmp_path: Path) -> None:
    for command in ("validate", "ingest"):  # the README: 2 for bad input
        result = runner.invoke(app, [command, str(tmp_path / "nowhere")])
        assert result.exit_code == 2, (command, result.output)
        assert "not a folder" in result.output


def test_rows_numbered_across_parquet_row_groups(tmp_path: Path) -> None:
    n = 1000
    ids = [f"o{i}" for i in range(n)]
    dates = ["2001-01-01"] * n
    dates[876] = "2001-13-01"
    folder = tmp_path / "rg"
    folder.mkdir()
    pq.write_table(
        pa.table({"officer_id": ids, "appointed_date": dates}),
        folder / "officers.parquet",
        row_group_size=100,
    )
    pq.write_table(
        pa.table({c: pa.array([], pa.string()) for c in valid_tables()["events"]}),
        folder / "events.parquet",
    )
    v = validate_package(folder)
    assert v.report_lines() == [
        "officers.parquet row 877, appointed_date: not a date in ISO format YYYY-MM-DD"
    ]


def test_parquet_column_that_is_not_text(tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "typed", valid_tables(), fmt="parquet")
    t = pq.read_table(pkg / "officers.parquet")
    nested = pa.array([[1], [2], [3], [4]])
    t = t.set_column(t.schema.get_field_index("sex"), "sex", nested)
    pq.write_table(t.append_column("tags", nested), pkg / "officers.parquet")
    assert validate_package(pkg).report_lines() == [
        "officers.parquet, sex: must be text, not list<element: int64>",
        "officers.parquet, tags: cannot be kept as text (type list<element: int64>)",
    ]


def test_line_breaks_inside_quoted_values(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["events"]["outcome"][2] = "suspended,\n5 days\r\nthen reinstated"
    v = validate_package(write_package(tmp_path / "nl", tables))
    assert v.ok, v.report_lines()
    assert v.tables["events"]["outcome"][2].as_py() == "suspended,\n5 days\r\nthen reinstated"
    assert v.tables["events"]["event_id"].to_pylist() == ["e1", "e2", "e3", "e4", "e5", "e6"]


def test_line_break_where_the_csv_reader_cuts_a_block(tmp_path: Path) -> None:
    """pyarrow cuts a CSV into 1 MiB blocks at line ends; a quoted line break at the cut
    must still parse (the reader falls back to the slower, line-break-aware parse)."""
    n = 30_000
    tables = valid_tables()
    ev = tables["events"]
    for col in ev:
        ev[col] = (ev[col] * (n // 6 + 1))[:n]
    ev["event_id"] = [f"e{i}" for i in range(n)]
    ev["outcome"] = ["x" * 20] * n
    pkg = write_package(tmp_path / "cut", tables)
    data = (pkg / "events.csv").read_bytes()
    at = data.rfind(b'"' + b"x" * 20 + b'"', 0, (1 << 20) + 50)
    data = data[:at] + b'"' + b"x" * 9 + b"\n" + b"x" * 10 + b'"' + data[at + 22 :]
    (pkg / "events.csv").write_bytes(data)
    v = validate_package(pkg)
    assert v.ok, v.report_lines()
    outcomes = v.tables["events"]["outcome"].to_pylist()
    assert len(outcomes) == n
    assert outcomes.count("x" * 9 + "\n" + "x" * 10) == 1


def _lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_damaged_csv_rows_are_named_and_validation_goes_on(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["events"]["event_type"][5] = "Use Of Force"  # row 6: a rule on a sound row
    tables["events"]["outcome"][1] = "two\nlines"  # a quoted line break: rows != file lines
    pkg = write_package(tmp_path / "damaged", tables)
    lines = _lines_of(pkg / "events.csv")
    # row 3 (file line 5, after the two-line row 2) gets one field too many; row 5 a byte
    # that is not UTF-8
    lines[4] = lines[4].rstrip(b"\n") + b',"extra"\n'
    lines[6] = lines[6].replace(b'"commendation"', b'"commendati\xf3n"')
    (pkg / "events.csv").write_bytes(b"".join(lines))
    v = validate_package(pkg)
    assert v.report_lines() == [
        "events.csv row 3 (line 5): has 11 fields where the header has 10",
        "events.csv row 5 (line 7): not UTF-8 text (a byte sequence on this line)",
        "events.csv row 6, event_type: must be lower_snake_case (for example use_of_force)",
    ]


def test_damaged_gzip_csv_officer_is_not_reported_again_as_unknown(tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "gz", valid_tables())
    lines = _lines_of(pkg / "officers.csv")
    lines[2] = lines[2].rstrip(b"\n") + b",,\n"  # officer o2: two fields too many
    with gzip.open(pkg / "officers.csv.gz", "wb") as f:
        f.write(b"".join(lines))
    (pkg / "officers.csv").unlink()
    v = validate_package(pkg)
    # o2's events are not reported as naming an unknown officer: only the line itself
    assert v.report_lines() == [
        "officers.csv.gz row 2 (line 3): has 8 fields where the header has 6"
    ]


def test_problems_are_sorted_by_file_then_row(tmp_path: Path) -> None:
    tables = valid_tables()
    tables["events"]["finding"][4] = "guilty"  # row 5, checked by a later rule
    tables["events"]["event_date"][1] = "2016/02/11"  # row 2, checked by an earlier rule
    tables["assignments"]["kind"][0] = "Unit"
    tables["officers"]["appointed_date"][3] = "1999-02-30"
    v = validate_package(write_package(tmp_path / "order", tables))
    assert [line.split(":")[0] for line in v.report_lines()] == [
        "officers.csv row 4, appointed_date",
        "events.csv row 2, event_date",
        "events.csv row 5, finding",
        "assignments.csv row 1, kind",
    ]


@pytest.mark.parametrize("tz", [None, "America/Chicago"])
def test_parquet_timestamps_at_midnight_are_read_as_dates(tmp_path: Path, tz: str | None) -> None:
    from ews_testdata import to_arrow

    pkg = write_package(tmp_path / "ts", valid_tables(), fmt="parquet")
    t = pq.read_table(pkg / "events.parquet")
    days = pa.array(t["event_date"].to_pylist()).cast(pa.date32()).cast(pa.timestamp("ms"))
    if tz:  # midnight in the agency's own time zone
        days = pa.compute.assume_timezone(days, tz)
    i = t.schema.get_field_index("event_date")
    pq.write_table(t.set_column(i, "event_date", days), pkg / "events.parquet")
    v = validate_package(pkg)
    assert v.ok, v.report_lines()
    assert v.notes == [
        f"events.parquet, event_date: a {days.type} column, every value at midnight: read as dates"
    ]
    assert v.tables["events"]["event_date"].to_pylist() == (
        to_arrow(valid_tables()["events"])["event_date"].cast(pa.date32()).to_pylist()
    )


def test_parquet_timestamps_with_a_time_of_day_are_refused(tmp_path: Path, ews_home: Path) -> None:
    pkg = write_package(tmp_path / "ts", valid_tables(), fmt="parquet")
    t = pq.read_table(pkg / "events.parquet")
    stamps = pa.array(t["event_date"].to_pylist()).cast(pa.date32()).cast(pa.timestamp("s"))
    shifted = pa.compute.add(stamps, pa.scalar(3600 * 23, pa.duration("s")))  # 23:00
    values = [stamps[0].as_py(), shifted[1].as_py(), *stamps[2:].to_pylist()]
    i = t.schema.get_field_index("event_date")
    ts = pa.array(values, pa.timestamp("s"))
    pq.write_table(t.set_column(i, "event_date", ts), pkg / "events.parquet")
    before = tree_digest(ews_home)
    result = runner.invoke(app, ["ingest", str(pkg)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "events.parquet row 2, event_date: a timestamp with a time of day: dates are calendar "
        "days; store the date (YYYY-MM-DD, or a timestamp at midnight)"
    ]
    assert "docs/contract.md" in result.output
    assert tree_digest(ews_home) == before
