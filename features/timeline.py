"""One officer's events as they were known at an as-of date, for the officer's page.

The knowledge-time rule of the data contract holds here as everywhere: at ``as_of`` an event
exists only if ``reported_date < as_of`` and its finding only if ``finding_date < as_of``;
a finding not yet known then reads "not yet adjudicated". Only what a supervisor needs is
returned (dates, type, category, case, finding): no complainant details, no free text.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ews.store import Snapshot

COLUMNS = ("event_date", "reported_date", "event_type", "category", "case_id", "finding")


def officer_timeline(
    snapshot: Snapshot, officer_id: str, as_of: dt.date, limit: int = 500
) -> list[dict[str, Any]]:
    """The officer's events known before ``as_of``, newest first (at most ``limit``)."""
    import duckdb

    path = str(snapshot.table_path("events"))
    con = duckdb.connect()
    try:
        rows = con.execute(
            """
            SELECT event_date, reported_date, event_type, category, case_id,
                   CASE WHEN finding IS NULL THEN NULL
                        WHEN finding_date IS NOT NULL AND finding_date < $as_of THEN finding
                        WHEN finding = 'pending' THEN 'pending'
                        ELSE 'not yet adjudicated' END AS finding
            FROM read_parquet($path)
            WHERE officer_id = $officer AND reported_date < $as_of
            ORDER BY event_date DESC, event_type
            LIMIT $limit
            """,
            {"path": path, "officer": officer_id, "as_of": as_of, "limit": limit},
        ).fetchall()
    finally:
        con.close()
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]
