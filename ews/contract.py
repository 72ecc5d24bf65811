"""The agency data package (contract v1, see CONTRACT.md in the shared folder).

This module owns the *schema* of the package and the *normalized form* every other part of
the system reads: one Parquet file per table with fixed column types. Validation of a raw
package against the contract's rules lives in :mod:`ews.validate`.

Normalized form (what a snapshot holds, what features read):

- ``officers``: officer_id (str), appointed_date (date), separation_date (date, null),
  birth_year (Int32, null), sex (str, null), race (str, null), then extra columns.
- ``events``: event_id, officer_id, event_type (str), event_date (date), reported_date (date,
  filled with event_date where the package left it empty), case_id, category, finding (str,
  null), finding_date (date, null), outcome, then extra columns.
- ``assignments``: officer_id, kind, value (str), start_date (date), end_date (date, null).
  Always present in a snapshot, possibly with no rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

TABLES = ("officers", "events", "assignments")
REQUIRED_TABLES = ("officers", "events")
SUFFIXES = (".parquet", ".csv", ".csv.gz")

# column -> kind ("str", "date", "int"); the order is the normalized column order
COLUMNS: dict[str, dict[str, str]] = {
    "officers": {
        "officer_id": "str",
        "appointed_date": "date",
        "separation_date": "date",
        "birth_year": "int",
        "sex": "str",
        "race": "str",
    },
    "events": {
        "event_id": "str",
        "officer_id": "str",
        "event_type": "str",
        "event_date": "date",
        "reported_date": "date",
        "case_id": "str",
        "category": "str",
        "finding": "str",
        "finding_date": "date",
        "outcome": "str",
    },
    "assignments": {
        "officer_id": "str",
        "kind": "str",
        "value": "str",
        "start_date": "date",
        "end_date": "date",
    },
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "officers": ("officer_id", "appointed_date"),
    "events": ("event_id", "officer_id", "event_type", "event_date"),
    "assignments": ("officer_id", "kind", "value", "start_date"),
}

FINDINGS = ("sustained", "not_sustained", "unfounded", "exonerated", "no_finding", "pending")
CORE_EVENT_TYPES = (
    "complaint",
    "use_of_force",
    "arrest",
    "traffic_stop",
    "call_for_service",
    "field_interview",
    "vehicle_pursuit",
    "vehicle_accident",
    "officer_injury",
    "sick_leave",
    "commendation",
    "training",
    "lawsuit",
    "civil_judgment",
    "criminal_conviction",
    "termination",
    "decertification",
    "resignation_under_investigation",
)
# Activity: exposure to situations (workload), shown as context, never as a reason for a flag.
ACTIVITY_EVENT_TYPES = ("arrest", "traffic_stop", "call_for_service", "field_interview")
# Sec. 3(b) of the Executive Order: the records a shared database must track.
SEC3B_EVENT_TYPES = CORE_EVENT_TYPES[-5:]
# The optional events column ``category_group`` maps an agency's own categories to concepts
# that mean the same in every agency (docs/contract.md); feature specs select by group.
CATEGORY_GROUP = "category_group"
CATEGORY_GROUPS = (
    "excessive_force",
    "verbal_abuse",
    "illegal_search_or_arrest",
    "abuse_of_authority",
    "procedure",
    "criminal_misconduct",
    "off_duty_conduct",
    "other",
)
# Attributes that are never model inputs: they serve the bias audit only.
PROTECTED_ATTRIBUTES = ("race", "sex")
# Optional officers columns kept as text: how a supervisor knows the officer. Shown only on
# the pages of users who may see the officer; never a model input, an export or public data.
DISPLAY_COLUMNS = ("name", "badge")
DISPLAY_MAX_CHARS = 200


class ContractError(ValueError):
    """A package (or a path given as one) that cannot be read as the contract says."""


def find_table_file(package: Path, table: str) -> Path | None:
    """The file holding ``table`` in a package folder, or None; two candidates is an error."""
    found = [package / f"{table}{suffix}" for suffix in SUFFIXES]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ContractError(f"{package}: more than one file for table {table!r}: {names}")
    return found[0] if found else None


@dataclass(frozen=True)
class Package:
    """The three tables of a package in normalized form (pandas)."""

    officers: pd.DataFrame
    events: pd.DataFrame
    assignments: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        return {"officers": self.officers, "events": self.events, "assignments": self.assignments}[
            name
        ]


def empty_table(table: str) -> pd.DataFrame:
    import pandas as pd

    return normalize(pd.DataFrame({c: [] for c in COLUMNS[table]}), table)


def normalize(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Cast a table to its normalized types (assumes it is valid; see :mod:`ews.validate`).

    Dates become ``datetime64[ms]`` columns at midnight, strings become pandas ``string``,
    integers ``Int32``; missing optional columns are added empty; extra columns are kept
    as strings after the contract's columns. ``events.reported_date`` defaults to
    ``event_date``.
    """
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    for col, kind in COLUMNS[table].items():
        s = df[col] if col in df.columns else pd.Series([None] * len(df), index=df.index)
        if kind == "date":
            out[col] = pd.to_datetime(s, format="ISO8601", errors="raise").astype("datetime64[ms]")
        elif kind == "int":
            out[col] = pd.to_numeric(s, errors="raise").astype("Int32")
        else:
            s = s.astype("string")
            out[col] = s.mask(s.str.len() == 0)
    if table == "events":
        out["reported_date"] = out["reported_date"].fillna(out["event_date"])
    for col in df.columns:
        if col not in COLUMNS[table]:
            s = df[col].astype("string")
            # an empty category_group is no group (the spec's fallback applies), as in Parquet
            out[col] = s.mask(s.str.len() == 0) if col == CATEGORY_GROUP else s
    return out.reset_index(drop=True)


def write_normalized(
    folder: Path,
    officers: pd.DataFrame,
    events: pd.DataFrame,
    assignments: pd.DataFrame | None = None,
) -> Path:
    """Write three (valid) tables as a normalized Parquet package in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "officers": normalize(officers, "officers"),
        "events": normalize(events, "events"),
        "assignments": normalize(assignments, "assignments")
        if assignments is not None
        else empty_table("assignments"),
    }
    for name, df in tables.items():
        write_table(df, folder / f"{name}.parquet", name)
    return folder


def arrow_table(df: pd.DataFrame, table: str) -> pa.Table:
    """A normalized frame as an Arrow table whose date columns are ``date32`` (no time zone
    games in any engine)."""
    import pyarrow as pa

    t = pa.Table.from_pandas(df, preserve_index=False)
    for col, kind in COLUMNS[table].items():
        if kind == "date":
            i = t.schema.get_field_index(col)
            t = t.set_column(i, col, t.column(col).cast(pa.date32()))
    return t


def write_table(df: pd.DataFrame, path: Path, table: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(df, table), path)


def read_normalized(folder: Path) -> Package:
    """Read a normalized package (for example a snapshot folder) into pandas."""
    import pandas as pd

    frames = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if path.exists():
            df = pd.read_parquet(path)
            for col, kind in COLUMNS[name].items():
                if kind == "date":
                    df[col] = pd.to_datetime(df[col]).astype("datetime64[ms]")
            frames[name] = df
        else:
            frames[name] = empty_table(name)
    return Package(**frames)


def cut_package(src: Path, dst: Path, t: date | str) -> Path:
    """Write the normalized package ``src`` as it was known at ``t`` (CONTRACT.md, knowledge
    time) to ``dst``: events reported on or after t deleted, findings dated on or after t
    blanked with their date, officers appointed on or after t deleted with their rows,
    assignments starting on or after t deleted, separation and end dates on or after t
    blanked. An experiment on the cut package can use nothing learned after t."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    day = t if isinstance(t, date) else date.fromisoformat(str(t))
    cut = pa.scalar(day, pa.date32())
    dst.mkdir(parents=True, exist_ok=True)
    officers = pq.read_table(src / "officers.parquet")
    officers = officers.filter(pc.less(officers["appointed_date"], cut))
    sep = officers["separation_date"]
    officers = officers.set_column(
        officers.schema.get_field_index("separation_date"),
        "separation_date",
        pc.if_else(pc.less(sep, cut), sep, pa.nulls(len(sep), pa.date32())),
    )
    keep = officers["officer_id"]
    events = pq.read_table(src / "events.parquet")
    events = events.filter(
        pc.and_(pc.less(events["reported_date"], cut), pc.is_in(events["officer_id"], keep))
    )
    known = pc.fill_null(pc.less(events["finding_date"], cut), False)
    for col in ("finding", "finding_date", "outcome"):
        i = events.schema.get_field_index(col)
        c = events[col]
        events = events.set_column(i, col, pc.if_else(known, c, pa.nulls(len(c), c.type)))
    tables = {"officers": officers, "events": events}
    if (src / "assignments.parquet").is_file():
        a = pq.read_table(src / "assignments.parquet")
        a = a.filter(pc.and_(pc.less(a["start_date"], cut), pc.is_in(a["officer_id"], keep)))
        end = a["end_date"]
        a = a.set_column(
            a.schema.get_field_index("end_date"),
            "end_date",
            pc.if_else(pc.less(end, cut), end, pa.nulls(len(end), pa.date32())),
        )
        tables["assignments"] = a
    for name, table in tables.items():
        pq.write_table(table, dst / f"{name}.parquet")
    return dst
