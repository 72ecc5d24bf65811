"""Who may see which officers: the one place the service decides it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException, status

from ews.db import AppDatabase, User

if TYPE_CHECKING:
    import pandas as pd

NOTICE = (
    "A flag is an invitation to support an officer, never a finding against one. "
    "Only adjudicated findings count as sustained."
)


def check_agency(user: User, agency: str, db: AppDatabase, path: str) -> None:
    if user.agency is not None and user.agency != agency:
        db.audit(
            user.username, user.role, "denied", path, agency=agency, detail={"why": "other agency"}
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not see agency {agency!r}")


def visible(user: User, flags: pd.DataFrame) -> pd.DataFrame:
    """The rows of a flags table this user may see: a supervisor only their own units."""
    if user.role != "supervisor":
        return flags
    if "unit" not in flags.columns:
        return flags.iloc[0:0]
    return flags[flags["unit"].astype("string").isin([str(u) for u in user.units])]


def may_see_officer(user: User, unit: str | None) -> bool:
    return user.role != "supervisor" or (unit is not None and str(unit) in user.units)
