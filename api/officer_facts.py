"""What the supervisors' pages say about who an officer is: the optional name and badge of the
contract's ``officers`` file, and the appointment date and birth year behind tenure and age
(context beside the reasons, never a reason).

Read from the snapshot a flag was scored on (snapshots never change, so a snapshot's table is
read once per process). Callers show these only next to a flag the user may already see: the
lookup itself checks no scope. Nothing here reaches the features, the models or an export.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any, NamedTuple

from ews.contract import DISPLAY_COLUMNS


class Facts(NamedTuple):
    name: str | None
    badge: str | None
    appointed: dt.date | None
    birth_year: int | None


@functools.lru_cache(maxsize=8)
def _facts(home: str, agency: str, snapshot_id: str) -> dict[str, Facts]:
    import pyarrow.parquet as pq

    from ews.store import Workspace

    path = Workspace(Path(home)).snapshot(agency, snapshot_id).table_path("officers")
    present = set(pq.read_schema(path).names)
    wanted = ["officer_id", "appointed_date", "birth_year", *DISPLAY_COLUMNS]
    t = pq.read_table(path, columns=[c for c in wanted if c in present])

    def column(name: str) -> list[Any]:
        return t.column(name).to_pylist() if name in present else [None] * t.num_rows

    return {
        str(oid): Facts(name, badge, appointed, year)
        for oid, name, badge, appointed, year in zip(
            column("officer_id"),
            column("name"),
            column("badge"),
            column("appointed_date"),
            column("birth_year"),
            strict=True,
        )
    }


def officer_facts(home: Path, agency: str, snapshot_id: str | None) -> dict[str, Facts]:
    """Officer id -> Facts of the snapshot (empty when the snapshot is not in the workspace)."""
    if not snapshot_id:
        return {}
    try:
        return _facts(str(home), agency, snapshot_id)
    except (LookupError, OSError):
        return {}


def who(facts: Facts | None, officer_id: str) -> dict[str, str | None]:
    """The officer as a supervisor knows them: name (or the id), badge, and the id."""
    name = (facts.name or "").strip() if facts else ""
    badge = (facts.badge or "").strip() if facts else ""
    return {"name": name or None, "badge": badge or None, "officer_id": officer_id}


def context_lines(facts: Facts | None, as_of: dt.date) -> list[str]:
    """Tenure and age at ``as_of`` in words, for beside the reasons."""
    if facts is None:
        return []
    out = []
    if facts.appointed is not None and facts.appointed <= as_of:
        years = (as_of - facts.appointed).days / 365.25
        out.append(
            "in the first year of service"
            if years < 1
            else f"{int(years)} year{'s' if int(years) != 1 else ''} of service"
            f" (since {facts.appointed.year})"
        )
    if facts.birth_year is not None and 1900 <= facts.birth_year <= as_of.year:
        out.append(f"about {as_of.year - facts.birth_year} years old")
    return out
