"""For credentialing reviewers: every access, the chain's integrity, review timeliness and
the disparities of the flags. Each is limited to the reviewer's agency."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import func, select

from api.deps import AgencyQuery, DbDep, NameQuery, SettingsDep, require_roles
from api.routes.flags import json_response
from api.scope import agency_in_scope, agency_visible, log_now, not_found
from ews.audit import storable_text
from ews.db import AppDatabase, AuditLog, User

router = APIRouter(prefix="/api", tags=["audit"])
Auditor = require_roles("reviewer", "admin")
Anyone = require_roles("supervisor", "reviewer", "data_scientist", "admin")


class Me(BaseModel):
    username: str
    role: str
    agency: str | None
    units: list[str]
    expires_at: str | None


class AuditEntry(BaseModel):
    id: int
    at: str
    actor: str
    role: str
    action: str
    resource: str
    agency: str | None
    officer_id: str | None
    detail: dict[str, Any]
    entry_hash: str


class AuditPage(BaseModel):
    data: list[AuditEntry]
    count: int
    next_before_id: int | None


class ChainOut(BaseModel):
    ok: bool
    entries: int
    head_id: int
    head_hash: str
    first_bad_id: int | None
    problem: str | None
    summary: str


@router.get("/me", response_model=Me)
def me(user: User = Anyone) -> Response:
    """Who you are signed in as, and what you may see."""
    return json_response(
        {
            "username": user.username,
            "role": user.role,
            "agency": user.agency,
            "units": list(user.units),
            "expires_at": user.expires_at.isoformat() if user.expires_at else None,
        }
    )


@router.get("/audit", response_model=AuditPage)
def audit_log(
    db: DbDep,
    request: Request,
    user: User = Auditor,
    agency: AgencyQuery | None = None,
    officer_id: NameQuery | None = None,
    actor: NameQuery | None = None,
    action: Annotated[str | None, Query(max_length=100, pattern=r"^[a-z_]+$")] = None,
    # audit_log.id is an INTEGER column (32-bit on PostgreSQL)
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """Audit entries, newest first, within your agency (reviewers and admins). Page back with
    ``before_id`` = the ``next_before_id`` of the previous page."""
    data = audit_entries(
        db, user, request.url.path, agency, officer_id, actor, action, before_id, limit
    )
    nxt = data[-1]["id"] if len(data) == limit else None
    return json_response({"data": data, "count": len(data), "next_before_id": nxt})


def audit_entries(
    db: AppDatabase,
    user: User,
    path: str,
    agency: str | None = None,
    officer_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Audit entries ``user`` may read (their agency's), newest first; the read is logged.
    Filters match the stored (escaped) text, so a filter holding NUL is a plain search."""
    officer_id, actor = (None if v is None else storable_text(v) for v in (officer_id, actor))
    if agency is not None and not agency_in_scope(user, agency):
        not_found(db, user, path, agency)
    scope = agency or user.agency
    with db.session() as s:
        q = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
        if scope is not None:
            q = q.where(AuditLog.agency == scope)
        if officer_id is not None:
            q = q.where(AuditLog.officer_id == officer_id)
        if actor is not None:
            q = q.where(AuditLog.actor == actor)
        if action is not None:
            q = q.where(AuditLog.action == action)
        if before_id is not None:
            q = q.where(AuditLog.id < before_id)
        data = [
            {
                "id": a.id,
                "at": a.at.isoformat(),
                "actor": a.actor,
                "role": a.role,
                "action": a.action,
                "resource": a.resource,
                "agency": a.agency,
                "officer_id": a.officer_id,
                "detail": a.detail,
                "entry_hash": a.entry_hash,
            }
            for a in s.scalars(q)
        ]
    log_now(db, user, "read", path, scope, view="audit log", rows=len(data))
    return data


@dataclass
class ChainView:
    """What ``user`` may know of the chain: whether it is intact and, for a user limited to
    an agency, the count and newest entry of that agency's entries only."""

    ok: bool
    entries: int
    head_id: int
    head_hash: str
    first_bad_id: int | None
    problem: str | None
    agency: str | None

    def summary(self) -> str:
        whose = f"{self.agency}'s entries: " if self.agency else ""
        if self.ok:
            return (
                f"audit chain intact: {whose}{self.entries} entries, newest entry "
                f"{self.head_id} hash {self.head_hash}"
            )
        at = f" at entry {self.first_bad_id}" if self.first_bad_id is not None else ""
        return f"audit chain BROKEN{at}: {self.problem}"


def chain_view(db: AppDatabase, user: User) -> ChainView:
    """Walk the whole chain (:func:`ews.audit.verify`); tell an agency-limited user only
    their agency's count and head, and where it breaks only when that entry is theirs."""
    from ews.audit import verify

    v = verify(db)
    if user.agency is None:
        return ChainView(v.ok, v.entries, v.head_id, v.head_hash, v.first_bad_id, v.problem, None)
    with db.read_conn() as c:
        mine = AuditLog.agency == user.agency
        n = c.execute(select(func.count()).select_from(AuditLog).where(mine)).scalar() or 0
        head = c.execute(
            select(AuditLog.id, AuditLog.entry_hash).where(mine).order_by(AuditLog.id.desc())
        ).first()
        bad = None
        if v.first_bad_id is not None:
            bad = c.execute(select(AuditLog.agency).where(AuditLog.id == v.first_bad_id)).first()
    ours = bad is not None and bad[0] == user.agency
    return ChainView(
        v.ok,
        int(n),
        int(head[0]) if head else 0,
        str(head[1]) if head else "",
        v.first_bad_id if ours else None,
        (v.problem if ours else "the break is outside your agency's entries") if not v.ok else None,
        user.agency,
    )


@router.get("/audit/verify", response_model=ChainOut)
def audit_verify(db: DbDep, request: Request, user: User = Auditor) -> Response:
    """Walk the whole audit chain and say whether it is intact (or where it breaks). A user
    limited to an agency gets the count and newest entry of their agency's entries only."""
    v = chain_view(db, user)
    log_now(db, user, "read", request.url.path, user.agency, view="audit verify", ok=v.ok)
    return json_response(
        {
            "ok": v.ok,
            "entries": v.entries,
            "head_id": v.head_id,
            "head_hash": v.head_hash,
            "first_bad_id": v.first_bad_id,
            "problem": v.problem,
            "summary": v.summary(),
        }
    )


@router.get("/audit/disparities")
def audit_disparities(
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: AgencyQuery,
    as_of: dt.date | None = None,
    allow_in_sample: bool = False,
    user: User = Auditor,
) -> Response:
    """Flag rates by race and sex and, when outcomes are known, precision and error rates by
    group (reviewers and admins). Race and sex serve this audit only, never the models.

    ``in_sample`` says whether the date is before the scoring model's label cutoff (the model
    learned those outcomes); such a date is refused with 409 unless ``allow_in_sample``."""
    from models.audit import InSampleError, disparities

    path = request.url.path
    with db.session() as s:
        visible = agency_visible(s, user, agency)
    if not visible:
        not_found(db, user, path, agency)
    try:
        report = disparities(
            agency,
            as_of,
            home=settings.home,
            db=db,
            allow_in_sample=allow_in_sample,
            uri=settings.mlflow_tracking_uri,
        )
    except InSampleError as e:
        log_now(db, user, "refused", path, agency, why="in-sample date")
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    except LookupError as e:
        log_now(db, user, "not_found", path, agency, why=str(e))
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    log_now(db, user, "read", path, agency, view="disparities")
    return json_response(report)


T = TypeVar("T")


class TooSoon(Exception):
    def __init__(self, wait: int) -> None:
        super().__init__(f"the report was rebuilt moments ago: try again in {wait} s")
        self.wait = wait


class RebuildGate:
    """Builds of an agency's audit report (tens of seconds each): one at a time per agency (a
    request that finds one running waits for it and serves what it built), and a rebuild at
    most once per ``interval`` seconds per agency (:class:`TooSoon` otherwise)."""

    def __init__(self, interval: float = 300.0) -> None:
        self.interval = interval
        self._locks: dict[str, threading.Lock] = {}
        self._built: dict[str, float] = {}
        self._lock = threading.Lock()

    def run(self, agency: str, rebuild: bool, build: Callable[[bool], T]) -> T:
        """``build(rebuild)`` under the agency's lock; a caller that had to wait for another
        build serves its result (``build(False)``)."""
        with self._lock:
            lock = self._locks.setdefault(agency, threading.Lock())
        if not lock.acquire(blocking=False):
            with lock:  # another build is running: wait for it and use what it wrote
                return build(False)
        try:
            if rebuild:
                wait = self.claim(agency)
                if wait:
                    raise TooSoon(wait)
            return build(rebuild)
        finally:
            lock.release()

    def claim(self, agency: str) -> int:
        """Count a rebuild of ``agency`` now and return 0, or the seconds until one may be
        (the last was less than ``interval`` ago)."""
        with self._lock:
            since = time.monotonic() - self._built.get(agency, -1e12)
            if since < self.interval:
                return int(self.interval - since) + 1
            self._built[agency] = time.monotonic()
            return 0


def gated_report(
    gate: RebuildGate, agency: str, settings: Any, db: AppDatabase, rebuild: bool
) -> dict[str, Any]:
    """:func:`models.audit_report.report_figures` through the gate (single flight, and
    rebuilds limited)."""
    from models import audit_report

    return gate.run(
        agency, rebuild, lambda again: audit_report.report_figures(agency, settings, db, again)
    )


@router.get("/audit/report")
def audit_report(
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: AgencyQuery,
    rebuild: bool = False,
    user: User = Auditor,
) -> Response:
    """The figures of the agency's audit report (reviewers and admins): the newest written by
    `ews audit-report` or the pages, or built now when none was (or ``rebuild``). The same
    report as HTML and PDF is on the reviewers' page /audit-report."""
    from models.audit_report import ReportError

    path = request.url.path
    with db.session() as s:
        visible = agency_visible(s, user, agency)
    if not visible:
        not_found(db, user, path, agency)
    try:
        data = gated_report(request.app.state.rebuilds, agency, settings, db, rebuild)
    except TooSoon as e:
        log_now(db, user, "refused", path, agency, why="report rebuilt moments ago")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, str(e), headers={"Retry-After": str(e.wait)}
        ) from e
    except ReportError as e:
        log_now(db, user, "not_found", path, agency, why=str(e))
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    log_now(db, user, "read", path, agency, view="audit report")
    return json_response(data)


@router.get("/reviews/timeliness")
def review_timeliness(
    db: DbDep, settings: SettingsDep, request: Request, agency: AgencyQuery, user: User = Auditor
) -> Response:
    """For each scored date: flags raised, reviewed, open, overdue, by status, and the days
    from the flag to its first review (median and longest)."""
    report = timeliness(db, user, request.url.path, agency, settings.review_days)
    return json_response(report)


def timeliness(
    db: AppDatabase, user: User, path: str, agency: str, review_days: int
) -> dict[str, Any]:
    """Review timeliness of an agency's flags (raises the service's 404 outside scope): the
    figures of :func:`ews.reviews.review_summary`, the read logged."""
    from ews.reviews import review_summary

    with db.read_conn() as c:
        visible = agency_visible(c, user, agency)
    if not visible:
        not_found(db, user, path, agency)
    report = review_summary(db, agency, review_days)
    log_now(db, user, "read", path, agency, view="review timeliness")
    return report
