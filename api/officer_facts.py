"""What the supervisors' pages say about who an officer is: the optional name and badge of the
contract's ``officers`` file, and the appointment date and birth year behind tenure and age
(context beside the reasons, never a reason).

Read from the snapshot a flag was scored on (snapshots never change, so a snapshot's table is
read once per process), for the officers asked about only. Callers show these only next to a
flag the user may already see: the lookup itself checks no scope. Nothing here reaches the
features, the models or an export.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ews.contract import DISPLAY_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa


class Facts(NamedTuple):
    name: str | None
    badge: str | None
    appointed: dt.date | None
    birth_year: int | None


@functools.lru_cache(maxsize=4)
def _table(home: str, agency: str, snapshot_id: str) -> pa.Table:
    """The snapshot's officers with the columns read here (Arrow: compact for a million)."""
    import pyarrow.parquet as pq

    from ews.store import Workspace

    path = Workspace(Path(home)).snapshot(agency, snapshot_id).table_path("officers")
    present = set(pq.read_schema(path).names)
    wanted = ["officer_id", "appointed_date", "birth_year", *DISPLAY_COLUMNS]
    return pq.read_table(path, columns=[c for c in wanted if c in present])


def officer_facts(
    home: Path, agency: str, snapshot_id: str | None, officer_ids: Iterable[str]
) -> dict[str, Facts]:
    """Officer id -> Facts of the given officers in the snapshot (empty when the snapshot is
    not in the workspace)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = list(officer_ids)
    if not snapshot_id or not ids:
        return {}
    try:
        table = _table(str(home), agency, snapshot_id)
    except (LookupError, OSError):
        return {}
    t = table.filter(pc.is_in(table["officer_id"], value_set=pa.array(ids, pa.string())))

    def column(name: str) -> list[Any]:
        return t.column(name).to_pylist() if name in t.column_names else [None] * t.num_rows

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
