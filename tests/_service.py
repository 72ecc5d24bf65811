"""A small world for the service's tests: two agencies, officers who moved between units,
unflagged officers, and a user of every role, on any application database."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from api.security import create_user
from ews.db import AppDatabase
from ews.flagstore import save_flags
from ews.settings import Settings

OLD, NEW = dt.date(2023, 1, 1), dt.date(2024, 1, 1)


def flags_frame(
    rows: list[tuple[str, str, float, bool]], snapshot_id: str = "abc123"
) -> pd.DataFrame:
    """(officer, unit, score, flagged) -> a scoring frame as `ews score` writes it."""
    ranked = sorted(rows, key=lambda r: -r[2])
    return pd.DataFrame(
        {
            "officer_id": [r[0] for r in ranked],
            "unit": [r[1] for r in ranked],
            "score": [r[2] for r in ranked],
            "rank": list(range(1, len(ranked) + 1)),
            "percentile": [100.0 * (len(ranked) - i) / len(ranked) for i in range(len(ranked))],
            "flagged": [r[3] for r in ranked],
            "explanation": [
                f"{int(r[2] * 10)} use-of-force reports in the last 6 months" if r[3] else ""
                for r in ranked
            ],
            "factors": ['[{"feature": "force_180d_count", "sentence": "x"}]'] * len(ranked),
            "rules_fired": ['["cmpd"]' if r[3] else "[]" for r in ranked],
            "indicators": [
                json.dumps(
                    {
                        "use_of_force_1y_count": {
                            "label": "use-of-force reports in the last year",
                            "officer": round(r[2] * 10),
                            "unit": 2.5,
                            "rank": 1.5,
                        }
                    }
                )
                for r in ranked
            ],
            "model_name": "ews-demo",
            "model_version": "3",
            "snapshot_id": snapshot_id,
            "label": "sustained_or_force",
        }
    )


@dataclass
class World:
    settings: Settings
    db: AppDatabase
    tokens: dict[str, str] = field(default_factory=dict)

    # officers by how each user may see them
    own = ("a1",)  # unit 12 now, flagged at NEW
    own_unflagged = ("a2",)  # unit 12 now, not flagged
    other_unit = ("b1", "b2")  # unit 7, flagged / not
    moved_out = ("m1",)  # unit 12 at OLD (flagged), unit 7 at NEW (flagged)
    moved_in = ("m2",)  # unit 7 at OLD (flagged), unit 12 at NEW (not flagged)
    other_agency = ("x1",)  # agency 'other', unit 12, flagged


# the optional name and badge columns of the demo snapshot's officers (fake, distinctive)
NAMES = {
    "a1": "Dana Whitlock",
    "a2": "Abel Norquist",
    "b1": "Brett Osgood",
    "b2": "Bea Lindqvist",
    "m1": "Mara Quillfeather",
    "m2": "Milo Brandvold",
}
BADGES = {
    "a1": "B-4411",
    "a2": "B-4412",
    "b1": "B-7701",
    "b2": "B-7702",
    "m1": "B-9901",
    "m2": "B-9902",
}


def demo_snapshot(home: Path) -> str:
    """Ingest a small package of agency ``demo`` (the world's officers, a few events of a1)
    into ``home`` and return its snapshot id, so that pages show real events."""
    from ews.ingest import ingest_package
    from ews.store import Workspace

    pkg = home.parent / "demo-package"
    pkg.mkdir(parents=True, exist_ok=True)
    ids = ["a1", "a2", "b1", "b2", "m1", "m2"]
    pd.DataFrame(
        {
            "officer_id": ids,
            "appointed_date": ["2010-01-04"] * len(ids),
            "birth_year": [1985] * len(ids),
            "name": [NAMES[i] for i in ids],
            "badge": [BADGES[i] for i in ids],
        }
    ).to_csv(pkg / "officers.csv", index=False)
    pd.DataFrame(
        [
            (
                "e1",
                "a1",
                "complaint",
                "2022-03-01",
                "2022-03-02",
                "C1",
                "05A EXCESSIVE FORCE",
                "sustained",
                "2022-09-01",
            ),
            ("e2", "a1", "use_of_force", "2023-05-01", "2023-05-01", "", "TASER", "", ""),
            (
                "e3",
                "a1",
                "complaint",
                "2023-11-20",
                "2023-11-21",
                "C2",
                "09A VERBAL ABUSE",
                "pending",
                "",
            ),
            ("e4", "b1", "use_of_force", "2023-02-01", "2023-02-01", "", "PHYSICAL FORCE", "", ""),
        ],
        columns=[
            "event_id",
            "officer_id",
            "event_type",
            "event_date",
            "reported_date",
            "case_id",
            "category",
            "finding",
            "finding_date",
        ],
    ).to_csv(pkg / "events.csv", index=False)
    return ingest_package(pkg, "demo", workspace=Workspace(home)).snapshot.id


def build_world(home: Path, db_url: str, snapshot_id: str = "abc123") -> World:
    settings = Settings(home=home, database_url=db_url)
    db = AppDatabase(db_url)
    save_flags(
        "demo",
        OLD,
        flags_frame(
            [
                ("a1", "12", 0.7, True),
                ("m1", "12", 0.9, True),
                ("m2", "7", 0.8, True),
                ("b1", "7", 0.6, True),
                ("a2", "12", 0.1, False),
                ("b2", "7", 0.2, False),
            ],
            snapshot_id,
        ),
        home=home,
        db=db,
    )
    save_flags(
        "demo",
        NEW,
        flags_frame(
            [
                ("a1", "12", 0.9, True),
                ("m1", "7", 0.8, True),
                ("m2", "12", 0.3, False),
                ("b1", "7", 0.7, True),
                ("a2", "12", 0.1, False),
                ("b2", "7", 0.2, False),
            ],
            snapshot_id,
        ),
        home=home,
        db=db,
    )
    save_flags("other", NEW, flags_frame([("x1", "12", 0.9, True)]), home=home, db=db)
    w = World(settings, db)
    w.tokens = {
        "sgt12": create_user(db, "sgt.lee", "supervisor", "demo", ["12"]),
        "sgt7": create_user(db, "sgt.ray", "supervisor", "demo", ["7"]),
        "reviewer": create_user(db, "auditor", "reviewer", "demo"),
        "reviewer_other": create_user(db, "auditor.other", "reviewer", "other"),
        "ds": create_user(db, "ds", "data_scientist", "demo"),
        "admin": create_user(db, "root", "admin"),
    }
    return w


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def served_in_thread(app: Any, **options: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread (``options`` go to
    :class:`uvicorn.Config`); yields its base URL and stops it on leaving."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **{"log_level": "warning", **options})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start in 10 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
