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
_UNIT = select(OfficerUnit.unit).where(
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
    unit = s.execute(_UNIT, key).first()
    if unit is None:
        return False
    units = visible_units(user)
    if units is None:
        return True
    if unit[0] is None or unit[0] not in units:
        return False
    return all_scored or s.execute(_FLAGGED_EVER, key).first() is not None


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
