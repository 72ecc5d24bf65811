"""The credentialing reviewers' pages of the audit report: the champion's model card, the
audit report itself (the very HTML ``ews audit-report`` writes) and its PDF.

Reviewers and admins only: anyone else gets the service's 404, logged like every refusal.
The report is the newest one written to the workspace for the agency (``EWS_HOME/reports/
<agency>/``), looked up by an agency name read from the application database, never by a
path built from the request. `ews train`, `ews score` and `ews demo` keep it built; when the
one kept is missing or stale (another snapshot, champion, scoring run or drift check), a
background build starts and the pages say so ("being rebuilt, started at ...") instead of
making the reviewer wait.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import DbDep, SettingsDep
from api.hardening import REPORT_CSP
from api.pages import Form, PageSession, Session, _agency, check_csrf, render, templates
from api.scope import log_now, not_found
from ews.db import AppDatabase

router = APIRouter(include_in_schema=False)


def _reviewer(session: Session, db: AppDatabase, path: str) -> None:
    """Reviewers and admins only; any other role gets the 403 of the other reviewers'
    pages (logged): a role is no secret, a record outside one's scope is."""
    from api.pages import _auditor

    _auditor(session, db, path)


def _status(db: AppDatabase, settings: Any, agency: str) -> dict[str, Any]:
    """The stored report's state; a missing or stale one starts building in the background."""
    from models.audit_report import report_status

    return report_status(agency, settings, db)


def _notice(state: dict[str, Any]) -> str | None:
    """The words of a report being built, or of a failed build."""
    if state["building"]:
        kept = (
            "this page shows the one written before; reload in a minute for the new one."
            if state["stored"]
            else "this page reloads itself until it is ready (about half a minute)."
        )
        since = state["building"]
        return f"The report is being rebuilt from the current data, started at {since}: {kept}"
    if state["failed"]:
        return f"Rebuilding the report failed: {state['failed']}"
    return None


def _waiting(
    request: Request, session: Session, context: dict[str, Any], state: dict[str, Any]
) -> HTMLResponse:
    """The page while the first report is built: the notice, reloading every 5 s."""
    return render(
        request,
        "model_card.html",
        session,
        status.HTTP_202_ACCEPTED if state["building"] else status.HTTP_200_OK,
        **{**context, "data": None},
        rebuilding=_notice(state),
        refresh=5 if state["building"] else None,
    )


def _stored_file(
    request: Request,
    session: Session,
    db: AppDatabase,
    settings: Any,
    agency: str | None,
    title: str,
    ext: str,
) -> tuple[HTMLResponse | None, Any]:
    """The agency's stored report file (``json``: the model card's figures, ``html``: the
    report) as ``(None, (agency, path, context, state))``, or the page to answer instead:
    no agency, a report that cannot be built, or the notice while the first one is built."""
    from models.audit_report import ReportError, stored_report

    agencies, name = _agency(session, db, agency)
    context: dict[str, Any] = {
        "title": title,
        "nav": title.lower().replace(" ", "_"),
        "agencies": [a["agency"] for a in agencies],
        "agency": name,
        "data": None,
    }
    if name is None:
        return render(request, "model_card.html", session, error="No agency yet.", **context), None
    try:
        state = _status(db, settings, name)
    except (ReportError, LookupError, ValueError) as e:
        return render(request, "model_card.html", session, error=str(e), **context), None
    path = stored_report(name, ext, settings.home)
    if path is None:
        return _waiting(request, session, context, state), None
    return None, (name, path, context, state)


@router.get("/model-card", response_class=HTMLResponse)
def model_card_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> HTMLResponse:
    _reviewer(session, db, "/model-card")
    page, found = _stored_file(request, session, db, settings, agency, "Model card", "json")
    if page is not None:
        return page
    name, path, context, state = found
    data = json.loads(path.read_text())
    log_now(db, session.user, "read", "/model-card", name, view="model card")
    return render(
        request,
        "model_card.html",
        session,
        **{**context, "data": data},
        rebuilding=_notice(state),
    )


@router.get("/audit-report", response_class=HTMLResponse)
def audit_report_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> Response:
    """The audit report of the agency as `ews audit-report` writes it, under the site's
    header (navigation, sign-out) and a bar with its PDF link."""

    _reviewer(session, db, "/audit-report")
    page, found = _stored_file(request, session, db, settings, agency, "Audit report", "html")
    if page is not None:
        return page
    name, path, context, state = found
    log_now(db, session.user, "read", "/audit-report", name, view="audit report")
    bar = templates.get_template("_report_bar.html").render(
        user=session.user,
        csrf=session.csrf,
        nav="audit_report",
        agency=name,
        rebuilding=_notice(state),
    )
    html = path.read_text()
    at = html.index(">", html.index("<body")) + 1
    head = html.index("</head>")
    link = '<link rel="stylesheet" href="/static/header.css">\n'
    return HTMLResponse(
        html[:head] + link + html[head:at] + bar + html[at:],
        headers={"Content-Security-Policy": REPORT_CSP},
    )


@router.get("/audit-report.pdf")
def audit_report_pdf(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> Response:
    """The PDF of the audit report, as a download (while the first one is built: the
    notice page)."""
    from models.audit_report import ReportError, stored_report

    _reviewer(session, db, "/audit-report.pdf")
    agencies, name = _agency(session, db, agency)
    if name is None:
        not_found(db, session.user, "/audit-report.pdf", name, why="no agency")
    try:
        state = _status(db, settings, name)
    except (ReportError, LookupError, ValueError) as e:
        not_found(db, session.user, "/audit-report.pdf", name, why=str(e))
    path = stored_report(name, "pdf", settings.home)
    if path is None:
        context = {
            "title": "Audit report",
            "nav": "audit_report",
            "agencies": [a["agency"] for a in agencies],
            "agency": name,
        }
        return _waiting(request, session, context, state)
    log_now(db, session.user, "read", "/audit-report.pdf", name, view="audit report pdf")
    return Response(
        path.read_bytes(),
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
    """Build the agency's report again from the current data, in the background (reviewers
    and admins); the model card says so until it is done."""
    from models.audit_report import start_refresh

    check_csrf(session, form)
    _reviewer(session, db, "/audit-report/rebuild")
    agencies, name = _agency(session, db, form.get("agency"))
    if name is None:
        not_found(db, session.user, "/audit-report/rebuild")
    wait = request.app.state.rebuilds.claim(name)
    if wait:  # at most one rebuild per few minutes per agency (api.routes.audit.RebuildGate)
        log_now(
            db, session.user, "refused", "/audit-report/rebuild", name, why="rebuilt moments ago"
        )
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"the report was rebuilt moments ago: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    start_refresh(name, settings, db, force=True)
    log_now(db, session.user, "write", "/audit-report/rebuild", name, view="audit report")
    return RedirectResponse(f"/model-card?agency={name}", status.HTTP_303_SEE_OTHER)
