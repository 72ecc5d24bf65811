"""An officer's events on their page obey knowledge time: nothing reported on or after the
date, no finding before it was final."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from ews.contract import write_normalized
from ews.ingest import ingest_package
from ews.store import Workspace
from features.timeline import officer_timeline


def test_timeline_knows_only_what_was_known(tmp_path: Path) -> None:
    officers = pd.DataFrame({"officer_id": ["a1", "b1"], "appointed_date": ["2010-01-01"] * 2})
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4", "e5"],
            "officer_id": ["a1", "a1", "a1", "a1", "b1"],
            "event_type": ["complaint", "complaint", "use_of_force", "complaint", "complaint"],
            "event_date": ["2023-01-05", "2023-03-01", "2023-06-01", "2023-11-01", "2023-02-01"],
            "reported_date": ["2023-01-10", "2023-03-02", "2023-06-01", "2024-02-01", "2023-02-01"],
            "case_id": ["c1", "c2", None, "c4", "c5"],
            "finding": ["sustained", "sustained", None, "unfounded", "sustained"],
            "finding_date": ["2023-05-01", "2024-03-01", None, "2024-03-01", "2023-04-01"],
        }
    )
    snap = ingest_package(
        write_normalized(tmp_path / "p", officers, events),
        "town",
        workspace=Workspace(tmp_path / "home"),
    ).snapshot
    rows = officer_timeline(snap, "a1", dt.date(2024, 1, 1))
    assert [(r["event_date"].isoformat(), r["finding"]) for r in rows] == [
        ("2023-06-01", None),
        ("2023-03-01", "not yet adjudicated"),  # final only in March 2024
        ("2023-01-05", "sustained"),
    ]  # e4 was reported in February 2024: unknown on 2024-01-01; b1's events are not a1's
    assert officer_timeline(snap, "a1", dt.date(2023, 1, 10)) == []
