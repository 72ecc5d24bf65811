"""The reviewers' Drift page: the history of ``ews drift`` for an agency, each run linked to
its report (served by the run's id). For reviewers, data scientists and admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse

from api.deps import DbDep, SettingsDep
from api.pages import PageSession, _agency, render
from api.routes.drift import DRIFT_ROLES, REPORT_HEADERS, drift_rows, report_file
from api.scope import forbidden

router = APIRouter(include_in_schema=False)


def _reader(session: PageSession, db: DbDep, path: str) -> None:
    if session.user.role not in DRIFT_ROLES:
        forbidden(db, session.user, path, "this page is for reviewers, data scientists and admins")


@router.get("/drift", response_class=HTMLResponse)
def drift_page(
    session: PageSession, db: DbDep, request: Request, agency: str | None = None
) -> HTMLResponse:
    _reader(session, db, "/drift")
    if len(agency or "") > 64:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid agency")
    agencies, name = _agency(session, db, agency)
    rows = drift_rows(db, session.user, "/drift", name) if name else []
    return render(
        request,
        "drift.html",
        session,
        title="Drift",
        nav="drift",
        agencies=[a["agency"] for a in agencies],
        agency=name,
        rows=rows,
    )


@router.get("/drift/{run_id}/report", response_class=HTMLResponse)
def drift_report_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    run_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> HTMLResponse:
    path = f"/drift/{run_id}/report"
    _reader(session, db, path)
    _, target = report_file(db, settings, session.user, path, run_id)
    return HTMLResponse(target.read_text(encoding="utf-8"), headers=REPORT_HEADERS)
