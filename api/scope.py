"""Who may see what: the one place the service decides it, and the audit of every decision.

The rule:
- A user limited to an agency (every supervisor, and reviewers, data scientists and admins
  created with ``--agency``) sees nothing of any other agency, on every endpoint.
- A supervisor sees an officer when the officer's CURRENT unit (the unit at the newest date
  the officer was scored, table ``officer_units``) is one of theirs, whatever date is asked:
  an officer who left the unit leaves the supervisor's view, with all their flags and reviews.
  Of their units' officers, a supervisor sees those flagged at some scored date (flagged now
  or before), not every officer's score; ``EWS_SUPERVISORS_SEE_ALL_SCORED=true`` (an admin's
  setting) widens that to every scored officer of their units.
  A commander sees the same way the units they oversee (a commander with no unit: the whole
  of their agency).
- Outside one's scope the answer is the 404 of a missing record, body included
  (:data:`NOT_FOUND`), and the refusal is written to the audit log like any access.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from fastapi import HTTPException, status
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api.refusals import mark_logged
from ews.audit import append
from ews.db import Agency, AppDatabase, Flag, OfficerUnit, ScoringRun, User

NOTICE = (
    "A flag is an invitation to support an officer, never a finding against one. "
    "Only adjudicated findings count as sustained."
)
NOT_FOUND = "not found"


def agency_in_scope(user: User, agency: str) -> bool:
    return user.agency is None or user.agency == agency


_AGENCY = select(Agency.name).where(Agency.name == bindparam("agency"))
_FLAGGED_EVER = (
    select(Flag.id)
    .join(ScoringRun, ScoringRun.id == Flag.run_id)
    .where(
        Flag.agency == bindparam("agency"),
        Flag.officer_id == bindparam("officer"),
        Flag.flagged.is_(True),
        ScoringRun.current.is_(True),
    )
    .limit(1)
)
UNIT = select(OfficerUnit.unit).where(
    OfficerUnit.agency == bindparam("agency"), OfficerUnit.officer_id == bindparam("officer")
)


def agency_visible(s: Session | Connection, user: User, agency: str) -> bool:
    """The agency exists and the user may see it."""
    return (
        agency_in_scope(user, agency) and s.execute(_AGENCY, {"agency": agency}).first() is not None
    )


def officer_visible(
    s: Session | Connection, user: User, agency: str, officer_id: str, all_scored: bool = False
) -> bool:
    """The officer exists in the agency and the user may see them now (a supervisor: an
    officer of their units flagged at some date, or any of them with ``all_scored``)."""
    if not agency_in_scope(user, agency):
        return False
    key = {"agency": agency, "officer": officer_id}
    unit = s.execute(UNIT, key).first()
    return sees(
        user,
        agency,
        None if unit is None else (unit[0],),
        lambda: s.execute(_FLAGGED_EVER, key).first() is not None,
        all_scored,
    )


def sees(
    user: User,
    agency: str,
    unit: tuple[str | None] | None,
    flagged_ever: Callable[[], bool],
    all_scored: bool = False,
) -> bool:
    """The rule of :func:`officer_visible` on facts already read: ``unit`` is the officer's
    row of ``officer_units`` (None: no such officer in the agency), ``flagged_ever`` tells
    (when asked) whether a current run flagged them. Cached reads decide with it, so a
    cached record is shown to exactly the users who would see it read afresh."""
    if not agency_in_scope(user, agency) or unit is None:
        return False
    units = visible_units(user)
    if units is None:
        return True
    if unit[0] is None or unit[0] not in units:
        return False
    return all_scored or flagged_ever()


def visible_units(user: User) -> list[str] | None:
    """The current units whose officers the user may see (None: every unit)."""
    if user.role == "supervisor" or (user.role == "commander" and user.units):
        return list(user.units)
    return None


def audit_agency(user: User, agency: str | None) -> str | None:
    """The agency an access is logged under: the one asked for when it is within the user's
    scope, else the user's own (a probe of another agency is its prober's agency's record)."""
    if agency is not None and agency_in_scope(user, agency):
        return agency
    return user.agency


def _entry(
    user: User,
    action: str,
    resource: str,
    agency: str | None,
    officer_id: str | None,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """The audit entry of an access by ``user``."""
    return {
        "actor": user.username,
        "role": user.role,
        "action": action,
        "resource": resource[:500],
        "agency": audit_agency(user, agency),
        "officer_id": officer_id if agency is None or agency_in_scope(user, agency) else None,
        "detail": {k: v for k, v in detail.items() if v is not None},
    }


def log(
    s: Session | Connection,
    user: User,
    action: str,
    resource: str,
    agency: str | None = None,
    officer_id: str | None = None,
    **detail: Any,
) -> None:
    """Append an audit entry for ``user`` in the open write transaction ``s``."""
    mark_logged(action)
    append(s, **_entry(user, action, resource, agency, officer_id, detail))


def log_now(
    db: AppDatabase,
    user: User,
    action: str,
    resource: str,
    agency: str | None = None,
    officer_id: str | None = None,
    **detail: Any,
) -> None:
    """Append an audit entry for a read or a refusal: the read is done, and the entry is
    committed (with those of concurrent requests) before the answer leaves."""
    mark_logged(action)
    db.audit(**_entry(user, action, resource, agency, officer_id, detail))


@dataclass
class Access:
    """An access to write to the audit log (the arguments of :func:`log_now`)."""

    action: str
    resource: str
    agency: str | None = None
    officer_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Refused(Exception):  # noqa: N818 (a decision, not a failure)
    """A read decided to refuse: its audit entry is written first, then ``error`` raised."""

    def __init__(self, access: Access, error: HTTPException) -> None:
        super().__init__(error.detail)
        self.access, self.error = access, error


def refused_not_found(
    resource: str,
    agency: str | None = None,
    officer_id: str | None = None,
    why: str = "missing or outside scope",
    **detail: Any,
) -> Refused:
    """The one 404 of the service (see :func:`not_found`), as a decision to log and raise."""
    access = Access("not_found", resource, agency, officer_id, {"why": why, **detail})
    return Refused(access, HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND))


def record(db: AppDatabase, user: User, access: Access) -> None:
    """:func:`log_now` of an :class:`Access`."""
    log_now(
        db, user, access.action, access.resource, access.agency, access.officer_id, **access.detail
    )


AUDIT_WAIT = 60.0  # seconds a request waits for its audit entry's commit before failing


async def record_async(db: AppDatabase, user: User, access: Access) -> None:
    """:func:`record` for an async request: the entry joins the next group commit, made on
    the event loop (SQLite: its own connection; PostgreSQL: its own async connection for
    audit entries; see :meth:`AppDatabase.audit_submit_async`), and the request awaits that
    commit (holding no thread meanwhile), so its answer still never leaves before its audit
    entry is stored."""
    mark_logged(access.action)
    entry = _entry(
        user, access.action, access.resource, access.agency, access.officer_id, access.detail
    )
    async with asyncio.timeout(AUDIT_WAIT):
        await db.audit_submit_async(**entry)


def logged_read(
    db: AppDatabase, user: User, read: Callable[[], tuple[Any, ...]]
) -> tuple[Any, ...]:
    """``read()``'s answer without its last item, the :class:`Access` it decided, which is
    logged first; a :class:`Refused` read is logged, then its error raised."""
    try:
        *answer, access = read()
    except Refused as r:
        record(db, user, r.access)
        raise r.error from None
    record(db, user, access)
    return tuple(answer)


async def logged_read_async(
    db: AppDatabase, user: User, pending: Awaitable[tuple[Any, ...]]
) -> tuple[Any, ...]:
    """:func:`logged_read` for an async route: awaits the read, then its audit entry's commit
    (:func:`record_async`) before the answer may leave."""
    try:
        *answer, access = await pending
    except Refused as r:
        await record_async(db, user, r.access)
        raise r.error from None
    await record_async(db, user, access)
    return tuple(answer)


def not_found(
    db: AppDatabase,
    user: User,
    resource: str,
    agency: str | None = None,
    officer_id: str | None = None,
    why: str = "missing or outside scope",
    **detail: Any,
) -> NoReturn:
    """Log the refusal and raise the one 404 of the service."""
    log_now(db, user, "not_found", resource, agency, officer_id, why=why, **detail)
    raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)


def forbidden(
    db: AppDatabase, user: User, resource: str, message: str, agency: str | None = None
) -> NoReturn:
    """Log and refuse an action the user's ROLE may not take (403): scope is never told
    apart from absence, but a role's limits are the same for every record."""
    log_now(db, user, "denied", resource, agency, why=message)
    raise HTTPException(status.HTTP_403_FORBIDDEN, message)
