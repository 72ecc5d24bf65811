"""One officer: the flag and why, its history over the scored dates, and the review workflow.

The workflow of a flag: ``new -> under_review -> intervention_assigned ->
intervention_completed``, or ``dismissed`` (with a reason) from ``new`` or ``under_review``.
Each step is one POST; an invalid step answers 409 naming the allowed ones; a step repeated
as it was (same Idempotency-Key, or the same content as the step that made the current
state) answers the step already recorded instead of writing it twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api.deps import AgencyPath, CurrentUser, DbDep, OfficerPath, SettingsDep, Text
from api.routes.flags import (
    NotCached,
    RunCache,
    cached_read,
    data_version,
    freshness,
    json_response,
)
from api.scope import (
    NOT_FOUND,
    NOTICE,
    UNIT,
    Access,
    agency_in_scope,
    forbidden,
    log,
    logged_read,
    logged_read_async,
    officer_visible,
    refused_not_found,
    sees,
)
from ews.audit import append
from ews.db import (
    INTERVENTIONS,
    KEY_LEN,
    NAME_LEN,
    NOTE_LEN,
    REASON_LEN,
    TRANSITIONS,
    AppDatabase,
    Flag,
    FlagStatus,
    Review,
    ScoringRun,
    User,
    utcnow,
)
from ews.settings import Settings

router = APIRouter(prefix="/api/officers", tags=["officers"])
REVIEW_ROLES = ("supervisor", "admin")
UNFLAGGED_REVIEW_ROLES = ("admin",)

Target = Literal["under_review", "intervention_assigned", "intervention_completed", "dismissed"]
InterventionType = Literal[INTERVENTIONS]  # type: ignore[valid-type]


class FactorFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: Text(NAME_LEN, 1) = Field(description="The explanation factor (its feature name).")  # type: ignore[valid-type]
    agree: bool = Field(description="Whether the reviewer agrees this factor is a concern.")
    comment: Text(1000) = ""  # type: ignore[valid-type]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    as_of_date: dt.date = Field(description="The as-of date of the flag being reviewed.")
    status: Target = Field(description="The state the flag moves to.")
    intervention_type: InterventionType | None = Field(
        default=None, description="Required when the status is 'intervention_assigned'."
    )
    due_date: dt.date | None = Field(
        default=None, description="When the intervention is due (with 'intervention_assigned')."
    )
    reason: Text(REASON_LEN) | None = Field(  # type: ignore[valid-type]
        default=None, description="Why the flag is dismissed (required with 'dismissed')."
    )
    note: Text(NOTE_LEN) = ""  # type: ignore[valid-type]
    factor_feedback: list[FactorFeedback] = Field(default_factory=list, max_length=50)
    all_scored: bool = Field(
        default=False, description="Review an officer who was not flagged (admins only)."
    )


class ReviewOut(BaseModel):
    id: int
    at: str
    as_of_date: str
    reviewer: str
    from_status: str
    status: str
    intervention_type: str | None
    due_date: str | None
    reason: str | None
    note: str
    factor_feedback: list[Any]
    model_version: str | None


class OfficerOut(BaseModel):
    agency: str
    officer_id: str
    as_of: str
    flag: dict[str, Any]
    status: str
    allowed_next: list[str]
    history: list[dict[str, Any]]
    reviews: list[ReviewOut]
    notice: str


def review_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "as_of_date": r.as_of_date.isoformat(),
        "reviewer": r.reviewer,
        "from_status": r.from_status,
        "status": r.status,
        "intervention_type": r.intervention_type,
        "due_date": r.due_date.isoformat() if r.due_date else None,
        "reason": r.reason,
        "note": r.note,
        "factor_feedback": r.factor_feedback,
        "model_version": r.model_version,
    }


_FLAGS_OF = (
    select(
        Flag.officer_id,
        Flag.as_of_date,
        Flag.unit,
        Flag.peer_rank,
        Flag.score,
        Flag.rank,
        Flag.percentile,
        Flag.flagged,
        Flag.explanation,
        Flag.factors,
        Flag.rules_fired,
        Flag.extra,
        ScoringRun.model_name,
        ScoringRun.model_version,
        ScoringRun.snapshot_id,
        ScoringRun.label,
        ScoringRun.scored_at,
        ScoringRun.provenance,
        ScoringRun.agency,
    )
    .join(ScoringRun, ScoringRun.id == Flag.run_id)
    .where(
        Flag.agency == bindparam("agency"),
        Flag.officer_id == bindparam("officer"),
        ScoringRun.current.is_(True),
    )
    .order_by(Flag.as_of_date)
)
_REVIEWS = (
    select(Review.__table__)
    .where(Review.agency == bindparam("agency"), Review.officer_id == bindparam("officer"))
    .order_by(Review.id)
)


def _flag_dict(f: Any, home: Path | None = None, agency: str | None = None) -> dict[str, Any]:
    return {
        "officer_id": f.officer_id,
        "as_of": f.as_of_date.isoformat(),
        "unit": f.unit,
        "peer_rank": f.peer_rank,
        "score": f.score,
        "rank": f.rank,
        "percentile": f.percentile,
        "flagged": f.flagged,
        "explanation": f.explanation,
        "factors": f.factors,
        "rules_fired": f.rules_fired,
        "model_name": f.model_name,
        "model_version": f.model_version,
        "snapshot_id": f.snapshot_id,
        "label": f.label,
        "scored_at": f.scored_at.isoformat(),
        **freshness(f.as_of_date, f.provenance, home, agency, f.snapshot_id),
    }


def _indicators(extra: Any) -> dict[str, Any]:
    """The key indicators stored with a flag (officer, unit and rank means), if any."""
    raw = (extra or {}).get("indicators") if isinstance(extra, dict) else None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _status(s: Session, agency: str, officer_id: str, day: dt.date) -> FlagStatus | None:
    return s.get(FlagStatus, (agency, officer_id, day))


@router.get("/{agency}/{officer_id}", response_model=OfficerOut)
async def officer(
    user: CurrentUser,
    request: Request,
    agency: AgencyPath,
    officer_id: OfficerPath,
    as_of: dt.date | None = None,
) -> Response:
    """The officer's flag at an as-of date (default: the newest date they were scored), why,
    their scores over every scored date, and every review step recorded."""
    # the database and settings from the app's state, not as dependencies: this route is
    # one of the two hot ones, and each dependency costs FastAPI's resolution per request
    db: AppDatabase = request.app.state.db
    settings: Settings = request.app.state.settings
    read = functools.partial(
        officer_read,
        db,
        user,
        request.url.path,
        agency,
        officer_id,
        as_of,
        settings.supervisors_see_all_scored,
        settings.home,
        request.app.state.officer_cache,
    )
    _, raw = await logged_read_async(db, user, cached_read(db, read, agency))
    return Response(raw, media_type="application/json")


def officer_detail(
    db: AppDatabase,
    user: User,
    path: str,
    agency: str,
    officer_id: str,
    as_of: dt.date | None = None,
    all_scored: bool = False,
    home: Path | None = None,
) -> dict[str, Any]:
    """What ``user`` may read of one officer (raises the service's 404 otherwise), logged.
    ``all_scored``: supervisors see unflagged officers of their units too; ``home`` (the
    workspace) tells the data end of a flag scored before it was recorded."""
    body, _ = logged_read(
        db, user, lambda: officer_read(db, user, path, agency, officer_id, as_of, all_scored, home)
    )
    return body


@dataclass
class OfficerRecord:
    """What the service holds of one officer: the row of their current unit (None: not in
    ``officer_units``), their flags in current runs (oldest first) and the review steps of
    their flags; and the answers built from them, by the as-of date asked (None: newest)."""

    unit: tuple[str | None] | None
    flags: list[Any]
    reviews: list[Any]
    bodies: dict[dt.date | None, tuple[dict[str, Any], bytes, dt.date]] = field(
        default_factory=dict
    )


def load_officer(c: Connection, agency: str, officer_id: str) -> OfficerRecord:
    key = {"agency": agency, "officer": officer_id}
    unit = c.execute(UNIT, key).first()
    flags = list(c.execute(_FLAGS_OF, key)) if unit is not None else []
    reviews = list(c.execute(_REVIEWS, key)) if flags else []
    return OfficerRecord(None if unit is None else (unit[0],), flags, reviews)


def officer_read(
    db: AppDatabase,
    user: User,
    path: str,
    agency: str,
    officer_id: str,
    as_of: dt.date | None = None,
    all_scored: bool = False,
    home: Path | None = None,
    cache: RunCache | None = None,
    version: tuple[int | None, int | None] | None = None,
) -> tuple[dict[str, Any], bytes, Access]:
    """:func:`officer_detail` without its audit entry: (the body, as JSON, the access to
    log), or :class:`Refused`. With ``cache``, the officer's record is kept by the agency's
    newest scoring run and review (:func:`api.routes.flags.data_version`: one read per
    request); who may see it is decided on every request (:func:`api.scope.sees`), so a
    record cached for one user is refused to another exactly as a missing one. With
    ``version`` (that read, done on the event loop), a record not cached raises
    :class:`NotCached`."""
    refusal = refused_not_found(
        path, agency, officer_id, as_of=as_of.isoformat() if as_of else None
    )
    if not agency_in_scope(user, agency):
        raise refusal
    if cache is not None and version is not None:  # on the event loop: the cache or nothing
        rec = cache.get(("officer", agency, officer_id, *version))
        if rec is None:
            raise NotCached
    elif cache is None:
        with db.read_conn() as c:
            rec = load_officer(c, agency, officer_id)
    else:
        with db.read_conn() as c:
            ckey = ("officer", agency, officer_id, *data_version(c, agency))
            rec = cache.get(ckey)
            if rec is None:
                rec = load_officer(c, agency, officer_id)
                if rec.unit is not None:  # probes of made-up ids do not crowd real records out
                    cache.put(ckey, rec)
    flagged_ever = functools.partial(any, (f.flagged for f in rec.flags))
    if not sees(user, agency, rec.unit, flagged_ever, all_scored):
        raise refusal
    built = rec.bodies.get(as_of)
    if built is None:
        chosen = [f for f in rec.flags if as_of is None or f.as_of_date == as_of]
        if not chosen:
            raise refusal
        body = _officer_body(agency, officer_id, chosen[-1], rec, home)
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        built = (body, raw, chosen[-1].as_of_date)
        if cache is not None:
            rec.bodies[as_of] = built
    body, raw, day = built
    return body, raw, Access("read", path, agency, officer_id, {"as_of": day.isoformat()})


def _officer_body(
    agency: str, officer_id: str, flag: Any, rec: OfficerRecord, home: Path | None
) -> dict[str, Any]:
    # the flag's state is the one its newest review step left it in
    steps = [r.status for r in rec.reviews if r.as_of_date == flag.as_of_date]
    state = steps[-1] if steps else "new"
    return {
        "agency": agency,
        "officer_id": officer_id,
        "as_of": flag.as_of_date.isoformat(),
        "flag": _flag_dict(flag, home, agency),
        "status": state,
        "allowed_next": list(TRANSITIONS[state]) if flag.flagged else [],
        "history": [
            {
                "as_of": f.as_of_date.isoformat(),
                "unit": f.unit,
                "score": f.score,
                "rank": f.rank,
                "percentile": f.percentile,
                "flagged": f.flagged,
                "indicators": _indicators(f.extra),
            }
            for f in rec.flags
        ],
        "reviews": [review_dict(r) for r in rec.reviews],
        "notice": NOTICE,
    }


def _same(r: Review, review: ReviewIn) -> bool:
    return (
        r.status == review.status
        and r.intervention_type == review.intervention_type
        and r.due_date == review.due_date
        and (r.reason or None) == (review.reason or None)
        and r.note == review.note
        and r.factor_feedback == [f.model_dump() for f in review.factor_feedback]
    )


def _check_fields(review: ReviewIn) -> str | None:
    if review.status == "intervention_assigned":
        if review.intervention_type is None or review.due_date is None:
            return "an intervention needs 'intervention_type' and 'due_date'"
        if review.due_date < review.as_of_date:
            return "the due date is before the flag's as-of date"
    elif review.intervention_type is not None or review.due_date is not None:
        return "'intervention_type' and 'due_date' go with status 'intervention_assigned'"
    if review.status == "dismissed" and not (review.reason or "").strip():
        return "a dismissal needs a 'reason'"
    return None


@router.post(
    "/{agency}/{officer_id}/reviews",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewOut,
    responses={200: {"model": ReviewOut, "description": "The same step, already recorded."}},
)
def add_review(
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: AgencyPath,
    officer_id: OfficerPath,
    review: ReviewIn,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=KEY_LEN, pattern=r"^[A-Za-z0-9_.:-]+$", description="Optional."),
    ] = None,
) -> Response:
    """Record one step of the review workflow of a flag (supervisors of the officer's current
    unit, and admins). The step and its audit entry are written in one transaction."""
    code, payload = record_step(
        db,
        user,
        request.url.path,
        agency,
        officer_id,
        review,
        idempotency_key,
        all_scored=settings.supervisors_see_all_scored,
    )
    return json_response(payload, code)


def record_step(
    db: AppDatabase,
    user: User,
    path: str,
    agency: str,
    officer_id: str,
    review: ReviewIn,
    idempotency_key: str | None = None,
    all_scored: bool = False,
) -> tuple[int, dict[str, Any]]:
    """Check and write one workflow step (raises the service's 403/404/409/422); returns
    (201 or 200 for a repeated step, the step recorded)."""
    if user.role not in REVIEW_ROLES:
        forbidden(db, user, path, "only supervisors and admins record reviews", agency)
    if review.all_scored and user.role not in UNFLAGGED_REVIEW_ROLES:
        forbidden(db, user, path, "reviews of officers not flagged are for admins", agency)
    problem = _check_fields(review)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
    day = review.as_of_date
    outcome: tuple[int, Any]
    with db.write() as s:
        flag = None
        if officer_visible(s, user, agency, officer_id, all_scored):
            flag = s.execute(
                select(Flag, ScoringRun)
                .join(ScoringRun, ScoringRun.id == Flag.run_id)
                .where(
                    Flag.agency == agency,
                    Flag.officer_id == officer_id,
                    Flag.as_of_date == day,
                    ScoringRun.current.is_(True),
                )
            ).first()
        outcome = _review_step(s, user, path, agency, officer_id, review, idempotency_key, flag)
    code, payload = outcome
    if code >= 400:
        raise HTTPException(code, payload)
    return code, payload


def _review_step(
    s: Session,
    user: Any,
    path: str,
    agency: str,
    officer_id: str,
    review: ReviewIn,
    key: str | None,
    found: Any,
) -> tuple[int, Any]:
    """Decide and write the step in the open write transaction ``s``; every outcome, refusals
    included, is logged in it. Returns (HTTP status, body or error message)."""
    day = review.as_of_date

    def refuse(code: int, message: str, why: str | None = None) -> tuple[int, Any]:
        action = "not_found" if code == 404 else "refused"
        log(s, user, action, path, agency, officer_id, as_of=day.isoformat(), why=why or message)
        return code, message

    if found is None:
        return refuse(404, NOT_FOUND, "missing or outside scope")
    flag, run = found
    if not flag.flagged and not review.all_scored:
        return refuse(409, f"officer {officer_id} was not flagged on {day}: reviews are for flags")
    if key is not None:
        prior = s.scalar(
            select(Review).where(Review.reviewer == user.username, Review.idempotency_key == key)
        )
        if prior is not None:
            same_flag = (prior.agency, prior.officer_id, prior.as_of_date) == (
                agency,
                officer_id,
                day,
            )
            if same_flag and _same(prior, review):
                log(s, user, "read", path, agency, officer_id, replay_of=prior.id)
                return 200, review_dict(prior)
            return refuse(409, "this Idempotency-Key was used for another review step")
    st = _status(s, agency, officer_id, day)
    state = st.status if st else "new"
    if st is not None:
        last = s.get(Review, st.last_review_id)
        if last is not None and last.reviewer == user.username and _same(last, review):
            log(s, user, "read", path, agency, officer_id, replay_of=last.id)
            return 200, review_dict(last)
    allowed = TRANSITIONS[state]
    if review.status not in allowed:
        names = ", ".join(allowed) or "none (the workflow of this flag is finished)"
        return refuse(
            409, f"a flag at '{state}' cannot move to '{review.status}'; allowed: {names}"
        )
    now = utcnow()
    r = Review(
        at=now,
        agency=agency,
        officer_id=officer_id,
        as_of_date=day,
        flagged_at=run.scored_at,
        reviewer=user.username,
        from_status=state,
        status=review.status,
        intervention_type=review.intervention_type,
        due_date=review.due_date,
        reason=review.reason,
        note=review.note,
        factor_feedback=[f.model_dump() for f in review.factor_feedback],
        model_version=run.model_version,
        idempotency_key=key,
    )
    s.add(r)
    s.flush()
    if st is None:
        s.add(
            FlagStatus(
                agency=agency,
                officer_id=officer_id,
                as_of_date=day,
                status=review.status,
                updated_at=now,
                first_reviewed_at=now,
                due_date=review.due_date,
                last_review_id=r.id,
            )
        )
    else:
        st.status, st.updated_at, st.last_review_id = review.status, now, r.id
        if review.due_date is not None:
            st.due_date = review.due_date
    append(
        s,
        user.username,
        user.role,
        "write",
        path,
        agency,
        officer_id,
        {"review_id": r.id, "from": state, "to": review.status, "as_of": day.isoformat()},
    )
    return 201, review_dict(r)
