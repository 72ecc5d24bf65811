"""One officer's flag, its explanation, and the reviews and interventions recorded."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.access import NOTICE, check_agency, deny, may_see_officer, record
from api.deps import CurrentUser, DbDep, SettingsDep
from api.routes.flags import records
from ews.db import DECISIONS, Review
from ews.flagstore import flags_dir, load_flags

router = APIRouter(prefix="/api/officers", tags=["officers"])


class ReviewIn(BaseModel):
    as_of_date: dt.date = Field(description="The as-of date of the flag being reviewed.")
    decision: str = Field(description=f"One of: {', '.join(DECISIONS)}.")
    intervention: str | None = Field(
        default=None,
        description="The supportive intervention chosen (training, mentoring, "
        "wellness referral, ...); required when the decision is 'intervention'.",
    )
    note: str = Field(default="", max_length=4000)


def _review_dict(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "as_of_date": r.as_of_date.isoformat(),
        "reviewer": r.reviewer,
        "decision": r.decision,
        "intervention": r.intervention,
        "note": r.note,
        "model_version": r.model_version,
    }


def _flag_row(agency: str, officer_id: str, as_of: dt.date | None, home: Any) -> dict[str, Any]:
    try:
        _, flags = load_flags(agency, as_of, home)
    except LookupError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    rows = flags[flags["officer_id"].astype(str) == officer_id]
    if rows.empty:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"officer {officer_id!r} was not scored")
    return records(rows)[0]


def _guard(
    user: Any, db: Any, request: Request, agency: str, officer_id: str, row: dict[str, Any]
) -> None:
    check_agency(user, agency, db, request.url.path)
    if not may_see_officer(user, row.get("unit")):
        raise deny(
            db,
            user,
            request.url.path,
            "this officer is not in your units",
            agency=agency,
            officer_id=officer_id,
        )


@router.get("/{agency}/{officer_id}")
def officer(
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str,
    officer_id: str,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """The officer's flag at an as-of date (default newest), why, and every review."""
    row = _flag_row(agency, officer_id, as_of, settings.home)
    _guard(user, db, request, agency, officer_id, row)
    with db.session() as s:
        reviews = s.scalars(
            select(Review)
            .where(Review.agency == agency, Review.officer_id == officer_id)
            .order_by(Review.id)
        )
        history = [_review_dict(r) for r in reviews]
    record(
        db,
        user,
        "read",
        request.url.path,
        agency,
        officer_id,
        as_of=as_of.isoformat() if as_of else None,
    )
    return {"flag": row, "reviews": history, "notice": NOTICE}


@router.post("/{agency}/{officer_id}/reviews", status_code=status.HTTP_201_CREATED)
def add_review(
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str,
    officer_id: str,
    review: ReviewIn,
) -> dict[str, Any]:
    """Record a supervisor's review of a flag and the intervention chosen."""
    if user.role not in ("supervisor", "admin"):
        raise deny(
            db,
            user,
            request.url.path,
            "only supervisors record reviews",
            agency=agency,
            officer_id=officer_id,
        )
    if review.decision not in DECISIONS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"decision must be one of: {', '.join(DECISIONS)}",
        )
    if review.decision == "intervention" and not (review.intervention or "").strip():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "say which intervention (field 'intervention')"
        )
    row = _flag_row(agency, officer_id, review.as_of_date, settings.home)
    _guard(user, db, request, agency, officer_id, row)
    flag_file = flags_dir(agency, settings.home) / f"{review.as_of_date.isoformat()}.parquet"
    flagged_at = dt.datetime.fromtimestamp(flag_file.stat().st_mtime, dt.UTC).replace(tzinfo=None)
    with db.session() as s:
        r = Review(
            agency=agency,
            officer_id=officer_id,
            as_of_date=review.as_of_date,
            flagged_at=flagged_at,
            reviewer=user.username,
            decision=review.decision,
            intervention=review.intervention,
            note=review.note,
            model_version=str(row.get("model_version"))
            if row.get("model_version") is not None
            else None,
        )
        s.add(r)
        s.flush()
        saved = _review_dict(r)
    record(
        db,
        user,
        "write",
        request.url.path,
        agency,
        officer_id,
        review_id=saved["id"],
        decision=review.decision,
    )
    return saved
