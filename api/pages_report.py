"""The credentialing reviewers' pages of the audit report: the champion's model card, the
audit report itself (the very HTML ``ews audit-report`` writes) and its PDF.

Reviewers and admins only: anyone else gets the service's 404, logged like every refusal.
The report is the newest one written to the workspace for the agency (``EWS_HOME/reports/
<agency>/``), looked up by an agency name read from the application database, never by a
path built from the request; when none was written yet, it is built on request and kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import DbDep, SettingsDep
from api.hardening import REPORT_CSP
from api.pages import Form, PageSession, Session, _agency, check_csrf, render
from api.scope import log_now, not_found
from ews.db import AppDatabase

router = APIRouter(include_in_schema=False)


def _reviewer(session: Session, db: AppDatabase, path: str) -> None:
    """Reviewers and admins only; any other role gets the 403 of the other reviewers'
    pages (logged): a role is no secret, a record outside one's scope is."""
    from api.pages import _auditor

    _auditor(session, db, path)


def _report(
    db: AppDatabase, settings: Any, agency: str, rebuild: bool = False, gate: Any = None
) -> Any:
    from api.routes.audit import RebuildGate, gated_report

    return gated_report(gate or RebuildGate(), agency, settings, db, rebuild)


@router.get("/model-card", response_class=HTMLResponse)
def model_card_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> HTMLResponse:
    from models.audit_report import ReportError

    _reviewer(session, db, "/model-card")
    agencies, name = _agency(session, db, agency)
    context: dict[str, Any] = {
        "title": "Model card",
        "nav": "model_card",
        "agencies": [a["agency"] for a in agencies],
        "agency": name,
        "data": None,
    }
    if name is None:
        return render(request, "model_card.html", session, error="No agency yet.", **context)
    try:
        data = _report(db, settings, name, gate=request.app.state.rebuilds)
    except (ReportError, LookupError, ValueError) as e:
        return render(request, "model_card.html", session, error=str(e), **context)
    log_now(db, session.user, "read", "/model-card", name, view="model card")
    return render(request, "model_card.html", session, **{**context, "data": data})


def _stored(
    db: AppDatabase, settings: Any, session: Session, agency: str | None, ext: str, gate: Any
) -> Any:
    from models.audit_report import ReportError, stored_report

    agencies, name = _agency(session, db, agency)
    if name is None:
        return None, "No agency yet."
    try:
        if stored_report(name, ext, settings.home) is None:
            _report(db, settings, name, gate=gate)
    except (ReportError, LookupError, ValueError) as e:
        return name, str(e)
    path = stored_report(name, ext, settings.home)
    return name, path


@router.get("/audit-report", response_class=HTMLResponse)
def audit_report_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> Response:
    """The audit report of the agency, exactly as `ews audit-report` writes it."""
    _reviewer(session, db, "/audit-report")
    name, found = _stored(db, settings, session, agency, "html", request.app.state.rebuilds)
    if name is None or isinstance(found, str):
        return render(
            request,
            "model_card.html",
            session,
            title="Audit report",
            nav="audit_report",
            agencies=[],
            agency=name,
            data=None,
            error=found if isinstance(found, str) else "No agency yet.",
        )
    log_now(db, session.user, "read", "/audit-report", name, view="audit report")
    return HTMLResponse(found.read_text(), headers={"Content-Security-Policy": REPORT_CSP})


@router.get("/audit-report.pdf")
def audit_report_pdf(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> Response:
    """The PDF of the audit report, as a download."""
    _reviewer(session, db, "/audit-report.pdf")
    name, found = _stored(db, settings, session, agency, "pdf", request.app.state.rebuilds)
    if name is None or isinstance(found, str):
        not_found(db, session.user, "/audit-report.pdf", name, why=str(found))
    log_now(db, session.user, "read", "/audit-report.pdf", name, view="audit report pdf")
    return Response(
        found.read_bytes(),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="audit-report-{name}.pdf"'},
    )


@router.post("/audit-report/rebuild")
def rebuild_report(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    form: Form,
) -> Response:
    """Build the agency's report again from the current data (reviewers and admins; once
    per few minutes per agency, one build at a time)."""
    from api.routes.audit import TooSoon
    from models.audit_report import ReportError

    check_csrf(session, form)
    _reviewer(session, db, "/audit-report/rebuild")
    agencies, name = _agency(session, db, form.get("agency"))
    if name is None:
        not_found(db, session.user, "/audit-report/rebuild")
    try:
        _report(db, settings, name, rebuild=True, gate=request.app.state.rebuilds)
    except (ReportError, LookupError, ValueError, TooSoon) as e:
        return render(
            request,
            "model_card.html",
            session,
            status.HTTP_429_TOO_MANY_REQUESTS if isinstance(e, TooSoon) else 409,
            title="Model card",
            nav="model_card",
            agencies=[a["agency"] for a in agencies],
            agency=name,
            data=None,
            error=str(e),
        )
    log_now(db, session.user, "write", "/audit-report/rebuild", name, view="audit report")
    return RedirectResponse(f"/model-card?agency={name}", status.HTTP_303_SEE_OTHER)
