"""Drift history for credentialing reviewers, data scientists and admins: each ``ews drift``
run of an agency's model (``drift_runs``, :func:`models.drift.drift_history`) and its report.

A report is found by the run's id in the database, and its file by the path the run stored
(relative to the workspace): nothing of the request ever names a file. Every read and every
refusal is audit-logged; an agency or run outside the user's scope answers like a missing one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from api.deps import AgencyQuery, DbDep, SettingsDep, require_roles
from api.routes.flags import json_response
from api.scope import agency_in_scope, agency_visible, log_now, not_found
from ews.db import AppDatabase, User
from ews.settings import Settings

router = APIRouter(prefix="/api", tags=["drift"])
DRIFT_ROLES = ("reviewer", "data_scientist", "admin")
DriftReader = require_roles(*DRIFT_ROLES)
RunId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The drift run's id.")]
# a report is an HTML page of ews's own: no script, styles inline, nothing fetched
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


class DriftRunOut(BaseModel):
    id: int
    as_of: str
    created_at: str
    model: str
    reference_dates: list[str]
    columns: int
    drifted_columns: int
    drifted_share: float
    drifted_names: list[str]
    score_drift: float | None
    score_ks_pvalue: float | None
    score_drifted: bool
    flag_rate_reference: float | None
    flag_rate_current: float | None
    k_pct: float | None
    precision_at_k: float | None
    validation_precision_at_k: float | None
    alert: bool
    threshold: float
    score_threshold: float | None
    has_report: bool


class DriftHistory(BaseModel):
    agency: str
    data: list[DriftRunOut]
    count: int


def drift_rows(
    db: AppDatabase, user: User, path: str, agency: str, limit: int = 100
) -> list[dict[str, Any]]:
    """The agency's drift runs, newest first, for ``user`` (the service's 404 outside scope);
    the read is logged."""
    from models.drift import drift_history

    with db.read_conn() as c:
        visible = agency_visible(c, user, agency)
    if not visible:
        not_found(db, user, path, agency)
    rows = drift_history(agency, db=db, limit=limit)
    log_now(db, user, "read", path, agency, view="drift history", rows=len(rows))
    return rows


def report_file(
    db: AppDatabase, settings: Settings, user: User, path: str, run_id: int
) -> tuple[str, Path]:
    """(agency, file) of a drift run's report, looked up by the run's id; the service's 404
    when the run is missing, outside scope or has no report in the workspace."""
    from models.drift import drift_run

    found = drift_run(run_id, db)
    if found is None or not agency_in_scope(user, found[0]):
        not_found(db, user, path, None, drift_run=run_id)
    agency, relative = found
    home = settings.home.resolve()
    target = (home / relative).resolve() if relative else None
    if target is None or not target.is_relative_to(home) or not target.is_file():
        not_found(
            db, user, path, agency, why="the report is not in the workspace", drift_run=run_id
        )
    log_now(db, user, "read", path, agency, view="drift report", drift_run=run_id)
    return agency, target


@router.get("/drift", response_model=DriftHistory)
def drift_list(
    db: DbDep,
    request: Request,
    agency: AgencyQuery,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    user: User = DriftReader,
) -> Response:
    """The agency's drift checks (`ews drift`), newest first: input columns drifted, the
    drift of the scores (PSI), precision at k% against validation, and whether each alerted
    (reviewers, data scientists and admins)."""
    rows = drift_rows(db, user, request.url.path, agency, limit)
    return json_response({"agency": agency, "data": rows, "count": len(rows)})


@router.get(
    "/drift/{run_id}/report",
    # the errors stay JSON (the default class); the report itself is HTML
    responses={200: {"content": {"text/html": {}}, "description": "The report (HTML)."}},
)
def drift_report_api(
    db: DbDep, settings: SettingsDep, request: Request, run_id: RunId, user: User = DriftReader
) -> Response:
    """The ews report of a drift check (self-contained HTML)."""
    _, target = report_file(db, settings, user, request.url.path, run_id)
    return HTMLResponse(target.read_text(encoding="utf-8"), headers=REPORT_HEADERS)
