"""The pages people read: rendered on the server (Jinja2) over the same library functions as
the API, with the same scope rule and the same audit entries. No script, no CDN.

Signing in with a token starts a session on the server (:mod:`api.sessions`): the browser's
HttpOnly, SameSite=Strict cookie holds the session's random id, never the token, and opens
the pages only. The sign-in form is refused when it comes from another site (login CSRF:
Sec-Fetch-Site, else Origin, else Referer must name this site); every form that changes
something carries a token derived from the session (CSRF). A page never offers an action
its user's role cannot take.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import statistics
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import select

from api.audit_words import describe
from api.deps import DbDep, SettingsDep, authenticate, refusal
from api.refusals import note_user
from api.routes.audit import audit_entries, timeliness
from api.routes.flags import current_runs, flag_page, visible_agencies
from api.routes.officers import REVIEW_ROLES, ReviewIn, officer_detail, record_step
from api.scope import agency_visible, log_now, not_found
from api.sessions import end_session, session_user, start_session
from ews.contract import ACTIVITY_EVENT_TYPES
from ews.db import INTERVENTIONS, STATUSES, AppDatabase, Flag, User
from ews.notify import notice_summary, queue_summary

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def _rule_title(name: str) -> str:
    """A rule by its title for people, never its key (models.rules: imported when used)."""
    from models.rules import rule_title

    return rule_title(name)


def _short_hashes(value: Any) -> Any:
    """Long hashes shortened, whole in a title (models.audit_report: imported when used)."""
    from models.audit_report import short_hashes

    return short_hashes(value)


templates.env.filters["rule_title"] = _rule_title
templates.env.filters["audit_words"] = describe
templates.env.filters["hashes"] = _short_hashes
COOKIE = "ews_session"
PAGE_SIZE = 50
AUDITORS = ("reviewer", "admin")


class SignInRequired(Exception):
    """The page needs a signed-in user: the handler sends the browser to /signin."""


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"ews-csrf", hashlib.sha256).hexdigest()


class Session:
    """A signed-in page request: the user and the session's id (the cookie)."""

    def __init__(self, user: User, session_id: str) -> None:
        self.user, self.token, self.csrf = user, session_id, csrf_token(session_id)


def page_session(db: DbDep, settings: SettingsDep, request: Request) -> Session:
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise SignInRequired
    user, why = session_user(db, session_id[:200], settings)
    if user is None:
        refusal(db, request, "sign_in_failed", status.HTTP_303_SEE_OTHER, why=why)
        raise SignInRequired
    note_user(user)
    return Session(user, session_id)


PageSession = Annotated[Session, Depends(page_session)]


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form (the pages send nothing else), at most 1 MiB (see BodyLimit)."""
    body = await request.body()
    try:
        return dict(parse_qsl(body.decode("utf-8"), max_num_fields=200))
    except (UnicodeDecodeError, ValueError) as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "unreadable form") from e


Form = Annotated[dict[str, str], Depends(form_fields)]


def check_csrf(session: Session, form: dict[str, str]) -> None:
    if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form is stale: reload the page")


def render(
    request: Request,
    name: str,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    base = {
        "user": session.user if session else None,
        "csrf": session.csrf if session else "",
        "message": None,
        "error": None,
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


def error_page(request: Request, code: int, detail: str) -> HTMLResponse:
    """An error as a page (the API's answers stay JSON)."""
    text = {404: "Not found.", 403: detail, 422: f"Invalid request: {detail}"}.get(code, detail)
    session = None
    session_id = request.cookies.get(COOKIE)
    if code != 401 and session_id:  # the signed-in user keeps the site's header
        state = request.app.state
        user, _ = session_user(state.db, session_id[:200], state.settings)
        session = Session(user, session_id) if user is not None else None
    return render(
        request,
        "signin.html" if code == 401 else "error.html",
        session,
        code,
        title="Error",
        error=text,
    )


def reasons(factors: list[Any], rules: list[str]) -> list[str]:
    """The sentences of a flag: one per indicator, then what the warning rules the officer
    also meets found (in words, see api.officer_view), then the context."""
    from api.officer_view import context_factors, reason_items

    lines = [r["text"] for r in reason_items(factors, rules)]
    context = context_factors(factors)
    if context:
        lines.append("Context, not a reason: " + "; ".join(context))
    return lines


@router.get("/")
def home(request: Request) -> RedirectResponse:
    target = "/flags" if request.cookies.get(COOKIE) else "/signin"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request) -> HTMLResponse:
    return render(request, "signin.html", None, title="Sign in")


def same_site(request: Request) -> bool:
    """The request comes from this site's own page: by the browser's Sec-Fetch-Site, else by
    Origin, else by Referer (the pages send no referrer, so Origin or Sec-Fetch-Site it is)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return origin == own
    referer = request.headers.get("referer")
    if referer:
        return referer == own or referer.startswith(own + "/")
    return False


@router.post("/signin")
def signin(db: DbDep, settings: SettingsDep, request: Request, form: Form) -> Response:
    if not same_site(request):
        refusal(db, request, "refused", 403, why="sign-in form from another site")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "sign in from this site's own page")
    token = form.get("token", "").strip()[:200]
    try:
        user = authenticate(db, request, token, "no token")
    except HTTPException as e:
        error = (
            "Too many failed sign-ins: wait a minute."
            if e.status_code == status.HTTP_429_TOO_MANY_REQUESTS
            else "That token does not work: it may be mistyped, expired or revoked."
        )
        return render(request, "signin.html", None, e.status_code, title="Sign in", error=error)
    session_id = start_session(db, user, settings)
    log_now(db, user, "sign_in", "/signin", session="started")
    response = RedirectResponse("/flags", status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(settings.session_hours * 3600),
    )
    return response


@router.post("/signout")
def signout(session: PageSession, db: DbDep, form: Form) -> Response:
    check_csrf(session, form)
    end_session(db, session.token)
    log_now(db, session.user, "sign_out", "/signout")
    response = RedirectResponse("/signin", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


def _agency(session: Session, db: AppDatabase, asked: str | None) -> tuple[list[Any], str | None]:
    agencies = visible_agencies(db, session.user)
    names = [a["agency"] for a in agencies]
    return agencies, (asked if asked in names else (names[0] if names else None))


@router.get("/flags", response_class=HTMLResponse)
def flags_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
    as_of: dt.date | None = None,
    unit: str | None = None,
    overdue_only: bool = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    order: str = "due",
) -> HTMLResponse:
    status_ = request.query_params.get("status") or None
    if status_ not in (None, *STATUSES) or len(unit or "") > 200 or len(agency or "") > 64:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid filter")
    if order not in ORDERS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid order")
    agencies, name = _agency(session, db, agency)
    context: dict[str, Any] = {
        "title": "Flags",
        "nav": "flags",
        "agencies": [a["agency"] for a in agencies],
        "agency": name,
        "statuses": STATUSES,
        "status": status_,
        "unit": unit,
        "overdue_only": overdue_only,
        "order": order,
        "orders": ORDERS,
        "dates": [],
        "head": None,
    }
    if name is None:
        return render(request, "flags.html", session, error="No agency has flags yet.", **context)
    context["queue"] = queue_summary(db, session.user, name, settings.review_days)
    dates = next(a["as_of"] for a in agencies if a["agency"] == name)[::-1]
    try:
        head, rows = flag_page(
            db,
            request.app.state.run_cache,
            session.user,
            "/flags",
            name,
            as_of,
            unit=unit or None,
            status=status_,
            overdue_only=overdue_only,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            review_days=settings.review_days,
            home=settings.home,
            order=order,
        )
    except HTTPException as e:
        return render(request, "flags.html", session, e.status_code, error=e.detail, **context)
    from api.officer_facts import officer_facts, who

    facts = officer_facts(
        settings.home, name, head["run"]["snapshot_id"], [r.officer_id for r in rows]
    )
    today = dt.date.today()
    shown = []
    for r in rows:
        rec = json.loads(r.json)
        rec["reasons"] = reasons(rec["factors"], rec["rules_fired"])
        rec["who"] = who(facts.get(r.officer_id), r.officer_id)
        rec["due"] = due_words(r.status, r.due, today)
        shown.append(rec)
    query = {k: v for k, v in request.query_params.items() if k != "page"}

    def link(p: int) -> str:
        return "/flags?" + urlencode({**query, "page": p})

    more = head["offset"] + head["count"] < head["total"]
    return render(
        request,
        "flags.html",
        session,
        **{**context, "dates": dates, "as_of": head["as_of"], "head": head, "rows": shown},
        prev_url=link(page - 1) if page > 1 else None,
        next_url=link(page + 1) if more else None,
    )


ORDERS = {"due": "what is due first", "rank": "highest score first"}
STATUS_WORDS = {
    "new": "New: not reviewed yet",
    "under_review": "Under review",
    "intervention_assigned": "Intervention assigned",
    "intervention_completed": "Intervention completed",
    "dismissed": "Dismissed",
}
templates.env.globals["status_words"] = STATUS_WORDS


def due_words(state: str, due: dt.date | None, today: dt.date) -> dict[str, Any] | None:
    """When the next step of a flag is due, in words: what, the date and the days left."""
    if due is None:
        return None
    days = (due - today).days
    left = (
        "due today"
        if days == 0
        else f"{days} day{'s' if days != 1 else ''} left"
        if days > 0
        else f"{-days} day{'s' if days != -1 else ''} overdue"
    )
    what = "intervention" if state == "intervention_assigned" else "first review"
    return {"what": what, "date": due.isoformat(), "left": left, "late": days < 0}


def model_words(version: Any) -> str:
    """The model that scored a flag, as a sergeant would say it."""
    return f"computer model (version {version})" if version else "computer model"


templates.env.globals["model_words"] = model_words


def _view_helpers() -> None:
    from api.officer_view import for_people, rule_words

    templates.env.globals["rule_words"] = rule_words
    templates.env.filters["for_people"] = for_people


_view_helpers()


def _trend(
    db: AppDatabase, agency: str, history: list[dict[str, Any]], rank: str | None
) -> list[dict[str, Any]]:
    """The officer's percentile at each scored date with the median of their unit and rank."""
    with db.read_conn() as c:
        runs = current_runs(c, agency)
        out = []
        for h in history:
            run = runs.get(dt.date.fromisoformat(h["as_of"]))
            medians: dict[str, float | None] = {"unit_median": None, "rank_median": None}
            if run is not None:
                for key, col, value in (
                    ("unit_median", Flag.unit, h["unit"]),
                    ("rank_median", Flag.peer_rank, rank),
                ):
                    if value is None:
                        continue
                    q = select(Flag.percentile).where(Flag.run_id == run.id, col == value)
                    values = [v for v in c.execute(q).scalars() if v is not None]
                    medians[key] = statistics.median(values) if values else None
            out.append({**h, **medians})
    return out


def _indicator_panels(trend: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per key indicator stored with the flags: its words and, over the scored dates, the
    officer's value with the means of their unit and their rank (None where not scored)."""
    order: list[str] = []
    for h in trend:
        order += [c for c in h.get("indicators") or {} if c not in order]
    panels = []
    for col in order:
        cells = [(h.get("indicators") or {}).get(col) or {} for h in trend]
        label = next((c["label"] for c in cells if c.get("label")), col.replace("_", " "))
        series = {
            "officer": [c.get("officer") for c in cells],
            "unit mean": [c.get("unit") for c in cells],
            "rank mean": [c.get("rank") for c in cells],
        }
        panels.append({"column": col, "label": str(label), "series": series})
    return panels


@router.get("/officers/{agency}/{officer_id}", response_class=HTMLResponse)
def officer_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str,
    officer_id: str,
    as_of: dt.date | None = None,
    done: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> HTMLResponse:
    if len(agency) > 64 or len(officer_id) > 200 or "\x00" in officer_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    wide = settings.supervisors_see_all_scored
    d = officer_detail(
        db, session.user, request.url.path, agency, officer_id, as_of, wide, home=settings.home
    )
    saved = next((r for r in d["reviews"] if r["id"] == done), None)
    return _officer(request, session, db, settings, d, saved=saved)


def _officer(
    request: Request,
    session: Session,
    db: AppDatabase,
    settings: Any,
    d: dict[str, Any],
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    from api.charts import line_chart, panels_chart
    from api.officer_facts import context_lines, officer_facts, who
    from api.officer_view import context_factors, reason_items
    from ews.store import Workspace
    from features.timeline import officer_timeline

    as_of = dt.date.fromisoformat(d["as_of"])
    trend = _trend(db, d["agency"], d["history"], d["flag"].get("peer_rank"))
    chart = line_chart(
        [h["as_of"] for h in trend],
        {
            "this officer": [h["percentile"] for h in trend],
            "unit median": [h["unit_median"] for h in trend],
            "rank median": [h["rank_median"] for h in trend],
        },
        "score percentile",
        "Score percentile in the agency",
    )
    indicators = _indicator_panels(trend)
    indicator_chart = (
        panels_chart(
            [h["as_of"] for h in trend],
            {p["label"]: p["series"] for p in indicators},
            "count",
        )
        if indicators
        else None
    )
    events: list[dict[str, Any]] = []
    activity: dict[str, int] = {}
    try:
        snap = Workspace(settings.home).snapshot(d["agency"], d["flag"]["snapshot_id"])
        known = officer_timeline(snap, d["officer_id"], as_of)
        note = "No event of this officer was known before this date."
    except LookupError:
        known, note = [], "The data snapshot of this flag is not in this workspace."
    for e in known:  # activity (workload) is counted beside the events, not listed
        if e["event_type"] in ACTIVITY_EVENT_TYPES:
            activity[e["event_type"]] = activity.get(e["event_type"], 0) + 1
        else:
            events.append({**e, "reasons": []})
    items = reason_items(d["flag"]["factors"], d["flag"]["rules_fired"], events, as_of)
    for n, item in enumerate(items, 1):
        for i in item["events"]:
            events[i]["reasons"].append(n)
    facts = officer_facts(settings.home, d["agency"], d["flag"]["snapshot_id"], [d["officer_id"]])
    fact = facts.get(d["officer_id"])
    context = [
        *context_lines(fact, as_of),
        *context_factors(d["flag"]["factors"]),
        *(f"{n} {_activity_name(k, n)} in the records" for k, n in sorted(activity.items())),
    ]
    person = who(fact, d["officer_id"])
    return render(
        request,
        "officer.html",
        session,
        status_code,
        title=person["name"] or f"Officer {d['officer_id']}",
        nav="flags",
        d=d,
        who=person,
        top_share=_top_share(d["flag"].get("percentile")),
        reasons=items,
        context=context,
        rules=[f for f in d["flag"]["factors"] if isinstance(f, dict) and f.get("description")],
        trend=trend,
        chart=chart,
        indicators=indicators,
        indicator_chart=indicator_chart,
        events=events,
        events_note=note,
        can_review=session.user.role in REVIEW_ROLES,
        interventions=INTERVENTIONS,
        factor_words={
            str(f.get("feature")): str(f["sentence"])
            for f in d["flag"]["factors"]
            if isinstance(f, dict) and f.get("feature") and f.get("sentence")
        },
        **extra,
    )


def _top_share(percentile: float | None) -> str:
    """Where a score percentile puts the officer, in words ("among the top 3%")."""
    if percentile is None:
        return "not ranked"
    top = max(1, math.ceil(100 - float(percentile)))
    return f"among the top {top}% of its officers" if top <= 50 else "in its lower half"


@router.post("/officers/{agency}/{officer_id}/reviews")
def review_form(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str,
    officer_id: str,
    form: Form,
) -> Response:
    check_csrf(session, form)
    if len(agency) > 64 or len(officer_id) > 200:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    feedback = [
        {
            "factor": form[f"factor_{i}"],
            "agree": form[f"agree_{i}"] == "yes",
            "comment": form.get(f"comment_{i}", "").strip(),
        }
        for i in range(50)
        if f"factor_{i}" in form and form.get(f"agree_{i}") in ("yes", "no")
    ]
    path = request.url.path
    try:
        review = ReviewIn.model_validate(
            {
                "as_of_date": form.get("as_of_date", ""),
                "status": form.get("status", ""),
                "intervention_type": form.get("intervention_type") or None,
                "due_date": form.get("due_date") or None,
                "reason": form.get("reason") or None,
                "note": form.get("note", ""),
                "factor_feedback": feedback,
            }
        )
    except ValidationError as e:
        return _review_error(request, session, db, settings, agency, officer_id, form, e)
    try:
        wide = settings.supervisors_see_all_scored
        _, step = record_step(db, session.user, path, agency, officer_id, review, all_scored=wide)
    except HTTPException as e:
        return _review_error(request, session, db, settings, agency, officer_id, form, e)
    target = f"/officers/{agency}/{officer_id}?" + urlencode(
        {"as_of": review.as_of_date.isoformat(), "done": step["id"]}
    )
    return RedirectResponse(target + "#reviews", status.HTTP_303_SEE_OTHER)


def _review_error(
    request: Request,
    session: Session,
    db: AppDatabase,
    settings: Any,
    agency: str,
    officer_id: str,
    form: dict[str, str],
    e: ValidationError | HTTPException,
) -> HTMLResponse:
    """The officer page again with why the step was not recorded (a 404 stays a 404)."""
    code = e.status_code if isinstance(e, HTTPException) else 422
    if code == status.HTTP_404_NOT_FOUND:
        raise e
    message = (
        e.detail
        if isinstance(e, HTTPException)
        else "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
    )
    try:
        day: dt.date | None = dt.date.fromisoformat(form.get("as_of_date", "")[:10])
    except ValueError:
        day = None
    d = officer_detail(
        db,
        session.user,
        f"/officers/{agency}/{officer_id}",
        agency,
        officer_id,
        day,
        settings.supervisors_see_all_scored,
        home=settings.home,
    )
    return _officer(request, session, db, settings, d, code, error=str(message))


def _auditor(session: Session, db: AppDatabase, path: str) -> None:
    if session.user.role not in AUDITORS:
        from api.scope import forbidden

        forbidden(db, session.user, path, "this page is for credentialing reviewers and admins")


ACTIVITY_NAMES = {
    "arrest": ("arrest", "arrests"),
    "traffic_stop": ("traffic stop", "traffic stops"),
    "call_for_service": ("call for service", "calls for service"),
    "field_interview": ("field interview", "field interviews"),
}


def _activity_name(kind: str, n: int) -> str:
    one, many = ACTIVITY_NAMES.get(kind, (kind.replace("_", " "),) * 2)
    return one if n == 1 else many


ACTIONS = (
    "read",
    "write",
    "not_found",
    "denied",
    "refused",
    "sign_in",
    "sign_in_failed",
    "sign_out",
    "refusals_summarized",
    "admin",
)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    session: PageSession,
    db: DbDep,
    request: Request,
    actor: str | None = None,
    officer_id: str | None = None,
    action: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> HTMLResponse:
    from api.routes.audit import chain_view

    _auditor(session, db, "/audit")
    if action not in (None, "", *ACTIONS) or len(actor or "") > 200 or len(officer_id or "") > 200:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid filter")
    entries = audit_entries(
        db,
        session.user,
        "/audit",
        None,
        officer_id or None,
        actor or None,
        action or None,
        before_id,
        100,
    )
    query = {k: v for k, v in request.query_params.items() if k != "before_id"}
    next_url = (
        "/audit?" + urlencode({**query, "before_id": entries[-1]["id"]})
        if len(entries) == 100
        else None
    )
    return render(
        request,
        "audit.html",
        session,
        title="Audit log",
        nav="audit",
        chain=chain_view(db, session.user),
        entries=entries,
        actor=actor,
        officer_id=officer_id,
        action=action,
        actions=ACTIONS,
        next_url=next_url,
    )


@router.get("/timeliness", response_class=HTMLResponse)
def timeliness_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> HTMLResponse:
    _auditor(session, db, "/timeliness")
    agencies, name = _agency(session, db, agency)
    report = (
        timeliness(db, session.user, "/timeliness", name, settings.review_days) if name else None
    )
    return render(
        request,
        "timeliness.html",
        session,
        title="Review timeliness",
        nav="timeliness",
        agencies=[a["agency"] for a in agencies],
        agency=name,
        report=report,
        notices=notice_summary(db, name) if name else None,
    )


@router.get("/disparities", response_class=HTMLResponse)
def disparities_page(
    session: PageSession,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    agency: str | None = None,
) -> HTMLResponse:
    from api.charts import rate_chart
    from models.audit import disparities, four_fifths_table

    _auditor(session, db, "/disparities")
    agencies, name = _agency(session, db, agency)
    context: dict[str, Any] = {
        "title": "Disparities",
        "nav": "disparities",
        "agency": name,
        "agencies": [a["agency"] for a in agencies],
        "report": None,
        "min_group": 20,
    }
    if name is None:
        return render(request, "disparities.html", session, **context)
    with db.read_conn() as c:
        if not agency_visible(c, session.user, name):
            not_found(db, session.user, "/disparities", name)
    try:
        report = disparities(name, home=settings.home, db=db)
    except (LookupError, ValueError) as e:
        return render(request, "disparities.html", session, error=str(e), **context)
    log_now(db, session.user, "read", "/disparities", name, view="disparities")
    charts, tables = {}, {}
    for attr, part in report["by"].items():
        tables[attr] = four_fifths_table(part["groups"], context["min_group"])
        if tables[attr]["line"] is not None:  # no chart of groups too small to rate
            charts[attr] = rate_chart(
                tables[attr]["rows"], tables[attr]["line"], f"Flag rate by {attr}"
            )
    return render(
        request,
        "disparities.html",
        session,
        **{**context, "report": report},
        charts=charts,
        tables=tables,
    )
