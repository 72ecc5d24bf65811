"""Flags: the officers a supervisor should look at, with the reasons in plain words."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel

from api.access import NOTICE, check_agency, record, visible
from api.deps import CurrentUser, DbDep, SettingsDep
from ews.flagstore import flag_dates, load_flags

router = APIRouter(prefix="/api", tags=["flags"])


class Envelope(BaseModel):
    data: list[dict[str, Any]]
    count: int
    agency: str
    as_of: str
    notice: str = NOTICE


def clean(value: Any) -> Any:
    """JSON-safe values: NaN -> None, numpy scalars and arrays -> Python, JSON strings kept."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return value


def records(df: Any) -> list[dict[str, Any]]:
    out = []
    for row in df.to_dict(orient="records"):
        rec = {k: clean(v) for k, v in row.items()}
        for key in ("factors", "rules_fired"):
            if isinstance(rec.get(key), str) and rec[key].startswith("["):
                rec[key] = json.loads(rec[key])
        out.append(rec)
    return out


@router.get("/agencies")
def agencies(user: CurrentUser, settings: SettingsDep) -> dict[str, Any]:
    """The agencies you may see, with the dates that have flags."""
    folder = settings.home / "flags"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    names = [n for n in names if user.agency is None or n == user.agency]
    data = [
        {"agency": n, "as_of": [d.isoformat() for d in flag_dates(n, settings.home)]} for n in names
    ]
    return {"data": data, "count": len(data)}


@router.get("/flags", response_model=Envelope)
def list_flags(
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str,
    as_of: dt.date | None = None,
    all_scored: bool = False,
) -> Envelope:
    """Flagged officers of an agency at an as-of date (default: newest), best first.
    Supervisors see only their own units. ``all_scored`` includes officers not flagged."""
    check_agency(user, agency, db, request.url.path)
    try:
        day, flags = load_flags(agency, as_of, settings.home)
    except LookupError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    rows = visible(user, flags)
    if not all_scored and "flagged" in rows.columns:
        rows = rows[rows["flagged"].astype(bool)]
    if "rank" in rows.columns:
        rows = rows.sort_values("rank")
    data = records(rows)
    for rec in data:
        record(
            db,
            user,
            "read",
            request.url.path,
            agency,
            str(rec["officer_id"]),
            as_of=day.isoformat(),
            view="flag list",
        )
    return Envelope(data=data, count=len(data), agency=agency, as_of=day.isoformat())
