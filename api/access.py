"""Who may see which officers: the one place the service decides it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, status

from ews.db import AppDatabase, User

if TYPE_CHECKING:
    import pandas as pd

NOTICE = (
    "A flag is an invitation to support an officer, never a finding against one. "
    "Only adjudicated findings count as sustained."
)


def record(
    db: AppDatabase,
    user: User,
    action: str,
    path: str,
    agency: str | None = None,
    officer_id: str | None = None,
    **detail: Any,
) -> None:
    """Log one access by ``user`` (``read``, ``write`` or ``denied``) in the audit log."""
    db.audit(
        user.username, user.role, action, path, agency=agency, officer_id=officer_id, detail=detail
    )


def deny(
    db: AppDatabase,
    user: User,
    path: str,
    message: str,
    agency: str | None = None,
    officer_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> HTTPException:
    """Log a refused access in the audit log and return the 403 to raise."""
    record(db, user, "denied", path, agency, officer_id, why=message, **(detail or {}))
    return HTTPException(status.HTTP_403_FORBIDDEN, message)


def check_agency(user: User, agency: str, db: AppDatabase, path: str) -> None:
    if user.agency is not None and user.agency != agency:
        raise deny(db, user, path, f"you may not see agency {agency!r}", agency=agency)


def visible(user: User, flags: pd.DataFrame) -> pd.DataFrame:
    """The rows of a flags table this user may see: a supervisor only their own units."""
    if user.role != "supervisor":
        return flags
    if "unit" not in flags.columns:
        return flags.iloc[0:0]
    return flags[flags["unit"].astype("string").isin([str(u) for u in user.units])]


def may_see_officer(user: User, unit: str | None) -> bool:
    return user.role != "supervisor" or (unit is not None and str(unit) in user.units)
