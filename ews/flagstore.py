"""Scored flags in the application database, for the service, the audit and the reports.

:func:`save_flags` stores one scoring run (an agency at an as-of date) and its rows (score,
rank, percentile, flagged, explanation, factors, rules fired, unit, provenance) in one
transaction, marks an earlier run of the same date as superseded (it is kept), and moves each
officer's current unit forward (the unit at the newest scored date: the fact a supervisor's
scope is decided on). A Parquet export of the run is written for data scientists to
``EWS_HOME/flags/<agency>/<as_of>.parquet``; the service never reads files.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from ews.db import (
    AppDatabase,
    Flag,
    OfficerUnit,
    ScoringRun,
    ensure_agency,
    open_app_database,
)
from ews.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

CORE = {
    "officer_id",
    "unit",
    "peer_rank",
    "score",
    "rank",
    "percentile",
    "flagged",
    "explanation",
    "factors",
    "rules_fired",
}
RUN_FIELDS = ("model_name", "model_version", "snapshot_id", "label")
RUN_PROVENANCE = (
    "train_snapshot_id",
    "spec_hash",
    "config_hash",
    "seed",
    "flag_rule",
    "scored_at",
    "data_end",
)


def _plain(value: Any) -> Any:
    """A JSON-safe Python value: NaN/NA -> None, numpy scalars -> Python, dates -> ISO."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return value


def _json_list(value: Any) -> list[Any]:
    value = _plain(value)
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value) if isinstance(value, list) else []


def _db(home: Path | None, db: AppDatabase | None) -> tuple[AppDatabase, bool]:
    if db is not None:
        return db, False
    settings = Settings(home=home) if home is not None else get_settings()
    return open_app_database(settings), True


def export_path(agency: str, as_of: dt.date, home: Path | None = None) -> Path:
    return (home or get_settings().home) / "flags" / agency / f"{as_of.isoformat()}.parquet"


def save_flags(
    agency: str,
    as_of: dt.date,
    flags: pd.DataFrame,
    home: Path | None = None,
    db: AppDatabase | None = None,
    export: bool = True,
) -> int:
    """Store a scoring run of ``agency`` at ``as_of`` and return its id (see module doc)."""
    from ews.ingest import agency_name

    agency_name(agency)
    first: Any = flags.iloc[0] if len(flags) else {}
    run_fields = {
        k: (None if _plain(first.get(k)) is None else str(_plain(first.get(k)))) for k in RUN_FIELDS
    }
    provenance = {k: _plain(first.get(k)) for k in RUN_PROVENANCE if k in flags.columns}
    extra_cols = [
        c
        for c in flags.columns
        if c not in CORE and c not in RUN_FIELDS and c not in RUN_PROVENANCE and c != "as_of_date"
    ]
    rows = []
    for rec in flags.to_dict(orient="records"):
        unit, peer_rank = _plain(rec.get("unit")), _plain(rec.get("peer_rank"))
        rows.append(
            {
                "agency": agency,
                "as_of_date": as_of,
                "officer_id": str(rec["officer_id"]),
                "unit": None if unit is None else str(unit),
                "peer_rank": None if peer_rank is None else str(peer_rank),
                "score": _plain(rec.get("score")),
                "rank": None if _plain(rec.get("rank")) is None else int(rec["rank"]),
                "percentile": _plain(rec.get("percentile")),
                "flagged": bool(_plain(rec.get("flagged")) or False),
                "explanation": str(_plain(rec.get("explanation")) or ""),
                "factors": _json_list(rec.get("factors")),
                "rules_fired": [str(r) for r in _json_list(rec.get("rules_fired"))],
                "extra": {c: _plain(rec.get(c)) for c in extra_cols},
            }
        )
    db, owned = _db(home, db)
    try:
        with db.write() as s:
            ensure_agency(s, agency)
            s.execute(
                update(ScoringRun)
                .where(ScoringRun.agency == agency, ScoringRun.as_of_date == as_of)
                .values(current=False)
            )
            run = ScoringRun(
                agency=agency,
                as_of_date=as_of,
                current=True,
                officers=len(rows),
                flagged=sum(r["flagged"] for r in rows),
                provenance=provenance,
                **run_fields,
            )
            s.add(run)
            s.flush()
            if rows:
                s.execute(insert(Flag), [{**r, "run_id": run.id} for r in rows])
            _move_units(s, agency, as_of, rows)
            run_id = run.id
    finally:
        if owned:
            db.dispose()
    if export:
        _export(agency, as_of, flags, home)
    return run_id


def _move_units(s: Any, agency: str, as_of: dt.date, rows: list[dict[str, Any]]) -> None:
    """Each officer's current unit becomes the unit of this run where this run is the
    newest date the officer was scored."""
    known = {
        o: d
        for o, d in s.execute(
            select(OfficerUnit.officer_id, OfficerUnit.as_of_date).where(
                OfficerUnit.agency == agency
            )
        )
    }
    new, moved = [], []
    for r in rows:
        rec = {
            "agency": agency,
            "officer_id": r["officer_id"],
            "unit": r["unit"],
            "as_of_date": as_of,
        }
        if r["officer_id"] not in known:
            new.append(rec)
        elif known[r["officer_id"]] <= as_of:
            moved.append(rec)
    if new:
        s.execute(insert(OfficerUnit), new)
    if moved:
        s.execute(update(OfficerUnit), moved)


def _export(agency: str, as_of: dt.date, flags: pd.DataFrame, home: Path | None) -> Path:
    path = export_path(agency, as_of, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    flags.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def load_flags(
    agency: str,
    as_of: dt.date | None = None,
    home: Path | None = None,
    db: AppDatabase | None = None,
) -> tuple[dt.date, pd.DataFrame]:
    """The current run's flags of an as-of date (default: the newest) as a frame, with the
    run's provenance as columns. Raises LookupError if there are none."""
    import pandas as pd

    db, owned = _db(home, db)
    try:
        with db.session() as s:
            q = select(ScoringRun).where(ScoringRun.agency == agency, ScoringRun.current.is_(True))
            runs = {r.as_of_date: r for r in s.scalars(q)}
            if not runs:
                raise LookupError(f"agency {agency!r} has no scored flags yet: run `ews score`")
            day = max(runs) if as_of is None else as_of
            if day not in runs:
                have = ", ".join(d.isoformat() for d in sorted(runs))
                raise LookupError(f"agency {agency!r} has no flags for {day}; scored dates: {have}")
            run = runs[day]
            flags = list(s.scalars(select(Flag).where(Flag.run_id == run.id).order_by(Flag.rank)))
    finally:
        if owned:
            db.dispose()
    records = [{**{c: getattr(f, c) for c in sorted(CORE)}, **f.extra} for f in flags]
    frame = pd.DataFrame(records) if records else pd.DataFrame(columns=sorted(CORE))
    for k in RUN_FIELDS:
        frame[k] = getattr(run, k)
    for k, v in run.provenance.items():
        frame[k] = v
    frame["as_of_date"] = pd.Timestamp(day)
    return day, frame
