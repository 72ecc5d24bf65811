"""For credentialing reviewers: every access, and how promptly flags were reviewed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import select

from api.access import record
from api.deps import DbDep, SettingsDep, require_roles
from ews.db import AuditLog, Review, User
from ews.flagstore import flag_dates, flags_dir, load_flags

router = APIRouter(prefix="/api", tags=["audit"])
Auditor = require_roles("reviewer", "admin")


@router.get("/me")
def me(
    user: User = require_roles("supervisor", "reviewer", "data_scientist", "admin"),
) -> dict[str, Any]:
    """Who you are signed in as, and what you may see."""
    return {
        "username": user.username,
        "role": user.role,
        "agency": user.agency,
        "units": user.units,
    }


@router.get("/audit")
def audit_log(
    db: DbDep,
    request: Request,
    user: User = Auditor,
    officer_id: str | None = None,
    actor: str | None = None,
    limit: int = 500,
) -> dict[str, Any]:
    """Every read and write of officers' records, newest first (reviewers and admins)."""
    with db.session() as s:
        q = select(AuditLog).order_by(AuditLog.id.desc()).limit(max(1, min(limit, 10_000)))
        if officer_id is not None:
            q = q.where(AuditLog.officer_id == officer_id)
        if actor is not None:
            q = q.where(AuditLog.actor == actor)
        data = [
            {
                "at": a.at.isoformat(),
                "actor": a.actor,
                "role": a.role,
                "action": a.action,
                "resource": a.resource,
                "agency": a.agency,
                "officer_id": a.officer_id,
                "detail": a.detail,
            }
            for a in s.scalars(q)
        ]
    record(db, user, "read", request.url.path, rows=len(data))
    return {"data": data, "count": len(data)}


@router.get("/audit/disparities")
def audit_disparities(
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str,
    as_of: dt.date | None = None,
    user: User = Auditor,
) -> dict[str, Any]:
    """Flag rates by race and sex and, when outcomes are known, precision and error rates by
    group (reviewers and admins). Race and sex serve this audit only, never the models."""
    from models.audit import disparities

    try:
        report = disparities(agency, as_of, home=settings.home)
    except LookupError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    record(db, user, "read", request.url.path, agency)
    return report


@router.get("/reviews/timeliness")
def review_timeliness(
    db: DbDep, settings: SettingsDep, request: Request, agency: str, user: User = Auditor
) -> dict[str, Any]:
    """For each scored date: flags raised, reviewed, still open, and days to first review."""
    with db.session() as s:
        reviews = list(s.scalars(select(Review).where(Review.agency == agency)))
    first: dict[tuple[str, dt.date], dt.datetime] = {}
    for r in reviews:
        key = (r.officer_id, r.as_of_date)
        first[key] = min(first.get(key, r.at), r.at)
    data = []
    for day in flag_dates(agency, settings.home):
        _, flags = load_flags(agency, day, settings.home)
        flagged = flags[flags["flagged"].astype(bool)] if "flagged" in flags else flags
        flag_file = flags_dir(agency, settings.home) / f"{day.isoformat()}.parquet"
        raised = dt.datetime.fromtimestamp(flag_file.stat().st_mtime, dt.UTC).replace(tzinfo=None)
        waits = [
            (first[(str(o), day)] - raised).total_seconds() / 86400
            for o in flagged["officer_id"].astype(str)
            if (str(o), day) in first
        ]
        waits.sort()
        data.append(
            {
                "as_of": day.isoformat(),
                "flagged": len(flagged),
                "reviewed": len(waits),
                "open": len(flagged) - len(waits),
                "median_days_to_review": waits[len(waits) // 2] if waits else None,
                "max_days_to_review": waits[-1] if waits else None,
            }
        )
    record(db, user, "read", request.url.path, agency)
    return {"data": data, "count": len(data)}
