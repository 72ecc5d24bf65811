"""Tiny hand-built agency packages and workspace helpers for the validate/ingest tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def valid_tables() -> dict[str, dict[str, list[str | None]]]:
    """A small valid package, every column as strings (None = empty cell)."""
    return {
        "officers": {
            "officer_id": ["o1", "o2", "o3", "o4"],
            "appointed_date": ["2001-03-01", "2005-07-15", "2010-01-04", "2012-09-30"],
            "separation_date": [None, "2019-12-31", None, None],
            "birth_year": ["1970", "1981", None, "1990"],
            "sex": ["M", "F", "F", None],
            "race": ["A", "B", None, "C"],
        },
        "events": {
            "event_id": ["e1", "e2", "e3", "e4", "e5", "e6"],
            "officer_id": ["o1", "o1", "o2", "o3", "o4", "o2"],
            "event_type": [
                "complaint",
                "arrest",
                "use_of_force",
                "complaint",
                "commendation",
                "complaint",
            ],  # fmt: skip
            "event_date": [
                "2015-01-10",
                "2016-02-11",
                "2017-03-12",
                "2018-04-13",
                "2019-05-14",
                "2016-06-01",
            ],  # fmt: skip
            "reported_date": ["2015-01-12", None, "2017-03-12", "2018-04-20", None, None],
            "case_id": ["c1", None, None, "c2", None, "c3"],
            "category": ["05A EXCESSIVE FORCE", None, None, "10 OTHER", None, None],
            "finding": ["sustained", None, None, "pending", None, "not_sustained"],
            "finding_date": ["2015-06-01", None, None, None, None, "2016-06-01"],
            "outcome": ["reprimand", None, None, None, None, None],
        },
        "assignments": {
            "officer_id": ["o1", "o1", "o2"],
            "kind": ["unit", "rank", "district"],
            "value": ["U1", "sergeant", "D7"],
            "start_date": ["2001-03-01", "2001-03-01", "2005-07-15"],
            "end_date": ["2010-01-01", None, None],
        },
    }


def to_arrow(columns: dict[str, list[str | None]]) -> pa.Table:
    return pa.table({c: pa.array(v, pa.string()) for c, v in columns.items()})


def write_package(
    folder: Path,
    tables: dict[str, dict[str, list[str | None]]],
    fmt: str = "csv",
    row_group_size: int | None = None,
) -> Path:
    """Write string tables as a package: ``csv``, ``csv.gz`` or ``parquet`` (strings)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, cols in tables.items():
        t = to_arrow(cols)
        if fmt == "parquet":
            pq.write_table(t, folder / f"{name}.parquet", row_group_size=row_group_size)
        elif fmt == "csv.gz":
            with pa.CompressedOutputStream(str(folder / f"{name}.csv.gz"), "gzip") as out:
                pacsv.write_csv(t, out)
        else:
            pacsv.write_csv(t, folder / f"{name}.csv")
    return folder


def tree_digest(home: Path, skip: tuple[str, ...] = ()) -> str:
    """sha256 over the relative path and bytes of every file under ``home`` (but the files
    named in ``skip``, relative to ``home``)."""
    h = hashlib.sha256()
    if home.exists():
        for p in sorted(home.rglob("*")):
            if p.is_file() and str(p.relative_to(home)) not in skip:
                h.update(str(p.relative_to(home)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
