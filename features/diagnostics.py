"""Diagnostics of a feature build, reported before the work goes on: why a cohort is empty
at an as-of date, and which features carry no information on an agency's data.

- :func:`empty_cohort_reasons` names the cause for each date without a cohort row: no officer
  active at the date (appointed before it and not separated before it, the knowledge-time
  rule of features.cohort), or, with ``require_assignment``, no assignment of that kind in the
  package at all, or none held at the date by the active officers.
- :func:`degenerate_columns` lists the columns that are empty (every value missing) or
  constant (one value on every row) in a feature table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ews.store import Snapshot
    from features.cohort import CohortSpec


def empty_cohort_reasons(
    source: Snapshot | str | Path,
    dates: Iterable[dt.date],
    cohort: CohortSpec | None = None,
) -> list[str]:
    """One sentence per date of ``dates`` giving why no officer is in the cohort there.

    Reads the package's officers and assignments tables (small) with pandas; the rule is the
    one of :mod:`features.cohort`."""
    import pandas as pd

    from features.engines import package_folder

    folder = package_folder(source)
    officers = pd.read_parquet(
        folder / "officers.parquet", columns=["officer_id", "appointed_date", "separation_date"]
    )
    appointed = pd.to_datetime(officers["appointed_date"])
    separated = pd.to_datetime(officers["separation_date"])
    kind = cohort.require_assignment if cohort is not None else None
    assignments = None
    if kind is not None:
        path = folder / "assignments.parquet"
        assignments = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=["kind"])
    span = (
        f"officers were appointed {appointed.min().date()} .. {appointed.max().date()}"
        if len(officers)
        else "the package holds no officers"
    )
    reasons = []
    for day in sorted(set(dates)):
        t = pd.Timestamp(day)
        active = (appointed < t) & (separated.isna() | (separated >= t))
        n_active = int(active.sum())
        if n_active == 0:
            reasons.append(
                f"{day}: no officer was active (appointed before it and not separated "
                f"before it); {span}"
            )
            continue
        if kind is None or assignments is None:
            continue
        of_kind = assignments[assignments["kind"] == kind]
        if of_kind.empty:
            kinds = sorted(str(k) for k in assignments["kind"].dropna().unique())
            held = ", ".join(kinds) if kinds else "none"
            reasons.append(
                f"{day}: the package holds no {kind!r} assignments (kinds it holds: {held}), "
                f"so --require-assignment {kind} leaves none of the {n_active:,} active "
                "officers"
            )
            continue
        start = pd.to_datetime(of_kind["start_date"])
        end = pd.to_datetime(of_kind["end_date"])
        holding = of_kind[(start < t) & (end.isna() | (end >= t))]["officer_id"].astype(str)
        ids = set(officers.loc[active, "officer_id"].astype(str))
        if not ids & set(holding):
            first = start.min().date()
            reasons.append(
                f"{day}: none of the {n_active:,} active officers held a {kind!r} assignment "
                f"(the first {kind!r} assignment starts {first})"
            )
    return reasons


@dataclass
class Degenerate:
    """Columns of a feature table that carry no information on this data."""

    empty: list[str] = field(default_factory=list)
    constant: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.empty) + len(self.constant)

    def lines(self, total: int, width: int = 100) -> list[str]:
        """A plain-text report, wrapped at ``width``: a count, then the names."""
        import textwrap

        if not len(self):
            return []
        out = [
            f"{len(self)} of {total} features carry no information on this data "
            f"({len(self.empty)} empty, {len(self.constant)} constant):"
        ]
        if self.empty:
            out += textwrap.wrap(
                "empty (no value at all): " + ", ".join(self.empty),
                width,
                initial_indent="  ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
        by_value: dict[str, list[str]] = {}
        for name, value in self.constant.items():
            by_value.setdefault(_show(value), []).append(name)
        for value, names in sorted(by_value.items()):
            out += textwrap.wrap(
                f"constant {value}: " + ", ".join(names),
                width,
                initial_indent="  ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
        return out


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def degenerate_columns(df: pd.DataFrame, columns: Sequence[str]) -> Degenerate:
    """The ``columns`` of ``df`` that are empty (all missing; every column of an empty table)
    or constant (one distinct non-missing value and no missing one)."""
    out = Degenerate()
    for name in columns:
        s = df[name]
        values = s.dropna()
        if values.empty:
            out.empty.append(name)
        elif len(values) == len(s) and values.nunique() == 1:
            first = values.iloc[0]
            out.constant[name] = first.item() if hasattr(first, "item") else first
    return out


class ColumnStats:
    """Per column of a feature table written in chunks: rows, missing values, minimum and
    maximum, enough to tell :func:`degenerate_columns`'s empty and constant columns without
    holding the table."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows = 0
        self.missing = dict.fromkeys(self.columns, 0)
        self.low: dict[str, Any] = dict.fromkeys(self.columns)
        self.high: dict[str, Any] = dict.fromkeys(self.columns)

    def add(self, chunk: Any) -> None:
        """Count an Arrow table or record batch holding the columns."""
        import pyarrow.compute as pc

        self.rows += chunk.num_rows
        for name in self.columns:
            col = chunk.column(name)
            self.missing[name] += col.null_count
            if col.null_count == len(col):
                continue
            mm = pc.min_max(col)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if self.low[name] is None or lo < self.low[name]:
                self.low[name] = lo
            if self.high[name] is None or hi > self.high[name]:
                self.high[name] = hi

    def degenerate(self) -> Degenerate:
        """The empty (all missing) and constant (one value, none missing) columns."""
        out = Degenerate()
        for name in self.columns:
            if self.missing[name] == self.rows:
                out.empty.append(name)
            elif self.missing[name] == 0 and self.low[name] == self.high[name]:
                out.constant[name] = self.low[name]
        return out


def concept_lines(source: Snapshot | str | Path, spec: Any) -> list[str]:
    """Each spec source narrowed to a concept (``category_group``, ``category_prefix``) that
    matches no event of the package, named with its cause (the package's own categories of
    that event type, and how to map them: events.category_group, docs/contract.md); and each
    one matched only through the prefix fallback, which is an agency's own code. Said before
    training, so that a column left constant says why. Reads two columns with DuckDB."""
    import duckdb

    from ews.contract import CATEGORY_GROUP
    from features.engines import package_folder

    path = package_folder(source) / "events.parquet"
    con = duckdb.connect()
    try:
        names = {
            r[0]
            for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        }
        group_col = f"coalesce(\"{CATEGORY_GROUP}\", '')" if CATEGORY_GROUP in names else "''"
        lines: list[str] = []
        for name, src in spec.sources.items():
            group, prefix = src.category_group, src.category_prefix
            if not group and not prefix:
                continue
            n_group, n_prefix = con.execute(
                f"""SELECT
                      count(*) FILTER (WHERE ? <> '' AND {group_col} = ?),
                      count(*) FILTER (WHERE ? <> '' AND {group_col} = ''
                                         AND starts_with(coalesce(category, ''), ?))
                    FROM read_parquet(?) WHERE event_type = ?""",
                [group or "", group or "", prefix or "", prefix or "", str(path), src.event_type],
            ).fetchone() or (0, 0)
            label = src.label or name.replace("_", " ")
            cols = [
                c.name
                for c in spec.columns
                if c.source == name or c.name.startswith(f"{name}_") or f"_{name}_" in c.name
            ]
            if n_group + n_prefix == 0:
                top = con.execute(
                    """SELECT category, count(*) AS n FROM read_parquet(?)
                       WHERE event_type = ? AND coalesce(category, '') <> ''
                       GROUP BY category ORDER BY n DESC, category LIMIT 5""",
                    [str(path), src.event_type],
                ).fetchall()
                held = (
                    "; its "
                    + src.event_type
                    + " categories include "
                    + ", ".join(f"{c!r} ({n:,})" for c, n in top)
                    if top
                    else f"; it holds no {src.event_type} event with a category"
                )
                lines.append(
                    f"{label} ({name}, {len(cols)} columns): no event of the data is "
                    f"{src.concept()}{held}. Map the agency's categories with the events "
                    f"column {CATEGORY_GROUP} (docs/contract.md); until then these columns "
                    "are 0 or empty and carry no information."
                )
            elif group and n_group == 0:
                lines.append(
                    f"{label} ({name}): found by the category prefix {prefix!r} only "
                    f"({n_prefix:,} events), an agency's own code, as the data give no "
                    f"{CATEGORY_GROUP} {group!r}; fill {CATEGORY_GROUP} (docs/contract.md) so "
                    "that the indicator means the same in every agency."
                )
        return lines
    finally:
        con.close()
