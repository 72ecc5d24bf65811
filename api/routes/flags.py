"""Flags: the officers a supervisor should look at, with the reasons in plain words.

A scoring run never changes once written, so the rows of a run (with each officer's current
unit and review status) are prepared once per process and kept until a newer run or review
of the agency, or a new day, makes them stale; each request then only filters them to the
user's scope, pages them and logs one audit entry naming the officers it showed.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import status as status_codes
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import dialect as pg_dialect
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api.deps import AgencyQuery, CurrentUser, DbDep, NameQuery
from api.scope import (
    NOTICE,
    Access,
    Refused,
    agency_in_scope,
    logged_read,
    logged_read_async,
    refused_not_found,
    visible_units,
)
from ews.db import (
    STATUSES,
    Agency,
    AppDatabase,
    Flag,
    FlagStatus,
    OfficerUnit,
    Review,
    ScoringRun,
    User,
)
from ews.reviews import overdue
from ews.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["flags"])
ALL_SCORED_ROLES = ("reviewer", "data_scientist", "admin")


class FlagOut(BaseModel):
    officer_id: str
    unit: str | None
    current_unit: str | None
    score: float | None
    rank: int | None
    percentile: float | None
    flagged: bool
    explanation: str
    factors: list[Any]
    rules_fired: list[str]
    status: str
    overdue: bool
    due_date: str | None


class RunOut(BaseModel):
    id: int
    scored_at: str
    model_name: str | None
    model_version: str | None
    snapshot_id: str | None
    label: str | None
    data_end: str | None = None
    stale: bool | None = None
    stale_reason: str | None = None


class FlagList(BaseModel):
    data: list[FlagOut]
    count: int
    total: int
    offset: int
    limit: int
    agency: str
    as_of: str
    run: RunOut
    notice: str = NOTICE


class AgencyOut(BaseModel):
    agency: str
    as_of: list[str]


class AgencyList(BaseModel):
    data: list[AgencyOut]
    count: int


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status_code,
        media_type="application/json",
    )


class Row(NamedTuple):
    current_unit: str | None
    status: str
    flagged: bool
    overdue: bool
    officer_id: str
    json: str
    due: dt.date | None = None  # when the next step is due: first review or intervention


def due_first(rows: list[Row]) -> list[Row]:
    """Open flags by the date their next step is due (soonest, or most overdue, first), then
    open flags with no date, then finished ones; rank order within each."""
    done = ("intervention_completed", "dismissed")
    return sorted(rows, key=lambda r: (r.status in done, r.due is None, r.due or dt.date.max))


@dataclass
class Prepared:
    """A run's rows, ready to filter and page, and the run's provenance; the flagged rows
    and each current unit's rows (flagged ones, and all) are indexed once, in rank order."""

    rows: list[Row]
    run: dict[str, Any]
    flagged: list[Row] = field(default_factory=list)
    by_unit: dict[tuple[str | None, bool], list[Row]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.flagged = [r for r in self.rows if r.flagged]
        for r in self.rows:
            self.by_unit.setdefault((r.current_unit, False), []).append(r)
            if r.flagged:
                self.by_unit.setdefault((r.current_unit, True), []).append(r)

    def select(self, units: list[str] | None, flagged_only: bool) -> list[Row]:
        """The rows of the given current units (None: every unit), in rank order."""
        if units is None:
            return self.flagged if flagged_only else self.rows
        if len(units) == 1:
            return self.by_unit.get((units[0], flagged_only), [])
        rank = {id(r): i for i, r in enumerate(self.rows)}
        picked = [r for u in units for r in self.by_unit.get((u, flagged_only), [])]
        return sorted(picked, key=lambda r: rank[id(r)])


class NotCached(Exception):  # noqa: N818 (a signal, not a failure)
    """A read asked not to build (the async path, on the event loop) found no cached entry:
    the caller does the read again in the thread pool."""


async def cached_read(db: AppDatabase, read: Callable[..., Any], agency: str) -> Any:
    """``read()`` for an async route. First on the event loop from the cache alone: the
    agency's data version (:func:`data_version`) is read on the loop's own connection (SQLite:
    a local indexed read of microseconds; PostgreSQL: an async round trip that holds no other
    request) and ``read(version=...)`` answers from the entries cached under it; a cache
    miss (:class:`NotCached`), or a PostgreSQL connection that failed, does the full read in
    the thread pool."""
    if db.sqlite:
        version: Any = loop_data_version(db, agency)
    else:
        version = await db.loop_pg_row(_VERSION_PG, {"agency": agency})
    if version is not None:
        try:
            return read(version=tuple(version))
        except NotCached:
            pass
    return await run_in_threadpool(read)


class RunCache:
    """What a request would otherwise read and prepare again, by a key that names the data
    it was read from (the agency's newest scoring run and review, and the day where it
    matters): prepared rows of recent runs, an agency's current runs, officers' records.
    A missing entry is built once: concurrent requests for it wait for that one build."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[Any, ...], threading.Lock] = {}

    def get_or_build(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        item = self.get(key)
        if item is not None:
            return item
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            item = self.get(key)
            if item is None:
                item = build()
                self.put(key, item)
        with self._lock:
            self._building.pop(key, None)
        return item

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        freeze_long_lived()


_FROZEN_AT = [0.0]
FREEZE_EVERY = 1.0  # seconds between two gc.freeze() calls


def freeze_long_lived() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (``gc.freeze``),
    at most once a second. A cached run or officer record is tens of thousands of objects
    that live until the data changes; left to the collector, each full collection walks all
    of them (hundreds of milliseconds under load: the service's slowest answers). Frozen
    objects are still freed by reference counting when the cache drops them (they hold no
    cycles); only cyclic garbage alive at the moment of a freeze is never collected, a few
    objects of the requests in flight."""
    now = time.monotonic()
    if now - _FROZEN_AT[0] >= FREEZE_EVERY:
        _FROZEN_AT[0] = now
        gc.freeze()


_RUNS = select(
    ScoringRun.id,
    ScoringRun.as_of_date,
    ScoringRun.scored_at,
    ScoringRun.model_name,
    ScoringRun.model_version,
    ScoringRun.snapshot_id,
    ScoringRun.label,
    ScoringRun.provenance,
    ScoringRun.agency,
).where(ScoringRun.agency == bindparam("agency"), ScoringRun.current.is_(True))
_VERSION = select(
    select(func.max(ScoringRun.id))
    .where(ScoringRun.agency == bindparam("agency"))
    .scalar_subquery(),
    select(func.max(Review.id)).where(Review.agency == bindparam("agency")).scalar_subquery(),
)


_VERSION_SQLITE = str(_VERSION.compile(dialect=sqlite_dialect()))  # its two "?" are agency
_VERSION_PG = str(_VERSION.compile(dialect=pg_dialect()))  # %(agency)s


def loop_data_version(db: AppDatabase, agency: str) -> tuple[int | None, int | None]:
    """:func:`data_version` on the event loop's own SQLite connection (the one read of a
    cached answer: no pool checkout, no SQLAlchemy execution)."""
    run, review = db.loop_reader().execute(_VERSION_SQLITE, (agency, agency)).fetchone()
    return run, review


def data_version(s: Session | Connection, agency: str) -> tuple[int | None, int | None]:
    """(newest scoring run, newest review) of the agency: one indexed read that names
    everything the flag list and the officer page show. Every change to them adds a row
    to one of these tables (a new run replaces the current one and moves officers' units;
    a review step changes a flag's state), in a transaction holding the one writer lock,
    so ids grow in commit order and a cache keyed on both is never stale."""
    run, review = s.execute(_VERSION, {"agency": agency}).one()
    return run, review


def current_runs(s: Session | Connection, agency: str) -> dict[dt.date, Any]:
    """The agency's current run of each scored date (rows with the run's columns)."""
    return {r.as_of_date: r for r in s.execute(_RUNS, {"agency": agency})}


def prepare(s: Session | Connection, run: Any, today: dt.date, review_days: int) -> Prepared:
    q = (
        select(
            Flag.officer_id,
            Flag.unit,
            Flag.score,
            Flag.rank,
            Flag.percentile,
            Flag.flagged,
            Flag.explanation,
            Flag.factors,
            Flag.rules_fired,
            OfficerUnit.unit,
            FlagStatus.status,
            FlagStatus.due_date,
        )
        .outerjoin(
            OfficerUnit,
            (OfficerUnit.agency == Flag.agency) & (OfficerUnit.officer_id == Flag.officer_id),
        )
        .outerjoin(
            FlagStatus,
            (FlagStatus.agency == Flag.agency)
            & (FlagStatus.officer_id == Flag.officer_id)
            & (FlagStatus.as_of_date == Flag.as_of_date),
        )
        .where(Flag.run_id == run.id)
        .order_by(Flag.rank, Flag.officer_id)
    )
    rows = []
    for oid, unit, score, rank, pct, flagged, text, factors, rules, cur, st, due in s.execute(q):
        st = st or "new"
        rec = {
            "officer_id": oid,
            "unit": unit,
            "current_unit": cur,
            "score": score,
            "rank": rank,
            "percentile": pct,
            "flagged": bool(flagged),
            "explanation": text,
            "factors": factors,
            "rules_fired": rules,
            "status": st,
            "overdue": bool(flagged) and overdue(st, run.scored_at, due, today, review_days),
            "due_date": due.isoformat() if due else None,
        }
        due_at = run.scored_at.date() + dt.timedelta(days=review_days) if st == "new" else due
        next_due = due_at if flagged and st in ("new", "intervention_assigned") else None
        rows.append(
            Row(
                cur,
                st,
                rec["flagged"],
                rec["overdue"],
                oid,
                json.dumps(rec, ensure_ascii=False),
                next_due,
            )
        )
    info = {
        "id": run.id,
        "scored_at": run.scored_at.isoformat(),
        "model_name": run.model_name,
        "model_version": run.model_version,
        "snapshot_id": run.snapshot_id,
        "label": run.label,
        **freshness(run.as_of_date, run.provenance),
    }
    return Prepared(rows, info)


@functools.lru_cache(maxsize=256)
def _snapshot_end(home: Path, agency: str, snapshot_id: str) -> dt.date | None:
    """The last reported event of a snapshot (immutable, so cached), None when unknown."""
    from ews.store import Workspace
    from models.scoring import data_span

    try:
        return data_span(Workspace(home).snapshot(agency, snapshot_id))[1]
    except Exception:  # a snapshot not in this workspace, or unreadable: unknown
        return None


def freshness(
    as_of: dt.date,
    provenance: Any,
    home: Path | None = None,
    agency: str | None = None,
    snapshot_id: str | None = None,
) -> dict[str, Any]:
    """Whether a stored run at ``as_of`` would now be refused by ``ews score`` as stale (its
    as-of date too far past the data end): data_end, stale, stale_reason (see
    models.scoring.run_freshness). A run scored before the data end was recorded reads it
    from its snapshot in the workspace ``home``."""
    from models.scoring import run_freshness

    out = run_freshness(as_of, provenance if isinstance(provenance, dict) else None)
    if out["stale"] is None and home is not None and agency and snapshot_id:
        end = _snapshot_end(Path(home), agency, snapshot_id)
        if end is not None:
            out = run_freshness(as_of, None, end)
    return out


def run_rows(
    db: AppDatabase,
    cache: RunCache,
    agency: str,
    as_of: dt.date | None,
    review_days: int,
    version: tuple[int | None, int | None] | None = None,
) -> tuple[dt.date, Prepared] | None:
    """The prepared rows of the agency's current run at ``as_of`` (default newest), or None
    when the agency has no run; LookupError names the scored dates when the date has none.
    One read (:func:`data_version`) when the rows are cached; with ``version`` (that read,
    done on the event loop: :func:`cached_read`), none, and a cache miss raises
    :class:`NotCached` instead of reading and preparing."""
    today = dt.date.today()
    if version is not None:
        return _cached_rows(cache, agency, as_of, today, version)
    with db.read_conn() as s:
        newest_run, newest_review = data_version(s, agency)
        if newest_run is None:
            return None
        runs_key = ("runs", agency, newest_run)
        runs = cache.get(runs_key)
        if runs is None:
            runs = current_runs(s, agency)
            cache.put(runs_key, runs)
        if not runs:
            return None
        day = as_of or max(runs)
        if day not in runs:
            have = ", ".join(d.isoformat() for d in sorted(runs))
            raise LookupError(f"agency {agency!r} has no flags for {day}; scored dates: {have}")
        key = (agency, runs[day].id, newest_run, newest_review, today)
        prepared = cache.get(key)
        if prepared is None:
            prepared = cache.get_or_build(key, lambda: prepare(s, runs[day], today, review_days))
    return day, prepared


def warm_run_cache(db: AppDatabase, cache: RunCache, review_days: int) -> list[str]:
    """Prepare each agency's newest current run into ``cache`` (what the first flag-list
    request of each agency would otherwise build while other requests queue behind it: on
    the demo's 8,000 rows, a first answer of a second under load). Returns the agencies
    warmed; an agency whose read fails is logged and left to the first request."""
    warmed: list[str] = []
    try:
        with db.read_conn() as s:
            names = list(s.execute(select(Agency.name).order_by(Agency.name)).scalars())
        for name in names:
            if run_rows(db, cache, name, None, review_days) is not None:
                warmed.append(name)
    except Exception:  # noqa: BLE001 (a warm-up: the first request reads and reports anew)
        log.warning("could not prepare the newest flags at start-up", exc_info=True)
    return warmed


def _cached_rows(
    cache: RunCache,
    agency: str,
    as_of: dt.date | None,
    today: dt.date,
    version: tuple[int | None, int | None],
) -> tuple[dt.date, Prepared] | None:
    """:func:`run_rows` from the cache only, under the data ``version`` already read;
    :class:`NotCached` when the answer needs more reads."""
    newest_run, newest_review = version
    if newest_run is None:
        raise NotCached  # (rare: an agency with no run) decided by the full read
    runs = cache.get(("runs", agency, newest_run))
    if not runs:
        raise NotCached
    day = as_of or max(runs)
    if day not in runs:
        raise NotCached
    prepared = cache.get((agency, runs[day].id, newest_run, newest_review, today))
    if prepared is None:
        raise NotCached
    return day, prepared


def flag_page(
    db: AppDatabase,
    cache: RunCache,
    user: User,
    path: str,
    agency: str,
    as_of: dt.date | None,
    **options: Any,
) -> tuple[dict[str, Any], list[Row]]:
    """One page of the flags ``user`` may see (the envelope without data, and the rows),
    logged as one audit entry naming the officers shown; raises the service's 403/404.
    ``options``: those of :func:`flag_page_read`."""
    head, page = logged_read(
        db, user, lambda: flag_page_read(db, cache, user, path, agency, as_of, **options)
    )
    return head, page


def flag_page_read(
    db: AppDatabase,
    cache: RunCache,
    user: User,
    path: str,
    agency: str,
    as_of: dt.date | None,
    *,
    all_scored: bool = False,
    unit: str | None = None,
    status: str | None = None,
    overdue_only: bool = False,
    limit: int = 100,
    offset: int = 0,
    review_days: int = 14,
    home: Path | None = None,
    order: str = "rank",
    version: tuple[int | None, int | None] | None = None,
) -> tuple[dict[str, Any], list[Row], Access]:
    """:func:`flag_page` without its audit entry: the envelope, the rows and the access to
    log, or :class:`Refused` (the 403/404 and its entry). ``order``: "rank" (highest score
    first) or "due" (see :func:`due_first`); with ``version`` (the agency's data version, read
    on the event loop), :class:`NotCached` when the run's rows are not prepared yet."""
    if all_scored and user.role not in ALL_SCORED_ROLES:
        message = "all_scored is for reviewers, data scientists and admins"
        access = Access("denied", path, None, None, {"why": message})
        raise Refused(access, HTTPException(status_codes.HTTP_403_FORBIDDEN, message))
    if not agency_in_scope(user, agency):
        raise refused_not_found(path, agency)
    try:
        found = run_rows(db, cache, agency, as_of, review_days, version)
    except LookupError as e:
        access = Access("not_found", path, agency, None, {"why": str(e)})
        raise Refused(access, HTTPException(status_codes.HTTP_404_NOT_FOUND, str(e))) from e
    if found is None:
        raise refused_not_found(path, agency)
    day, prepared = found
    units = visible_units(user)
    if unit is not None:
        units = [unit] if units is None or unit in units else []
    rows = prepared.select(units, flagged_only=not all_scored)
    if status is not None or overdue_only:
        rows = [
            r
            for r in rows
            if (status is None or r.status == status) and (not overdue_only or r.overdue)
        ]
    if order == "due":
        rows = due_first(rows)
    page = rows[offset : offset + limit]
    access = Access(
        "read",
        path,
        agency,
        None,
        {"as_of": day.isoformat(), "view": "flag list", "officers": [r.officer_id for r in page]},
    )
    head = {
        "count": len(page),
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "agency": agency,
        "as_of": day.isoformat(),
        "run": prepared.run,
        "notice": NOTICE,
    }
    if prepared.run.get("stale") is None and home is not None:  # data end not recorded
        run = prepared.run
        head["run"] = {**run, **freshness(day, None, home, agency, run["snapshot_id"])}
    return head, page, access


@router.get("/agencies", response_model=AgencyList)
def agencies(user: CurrentUser, db: DbDep) -> Response:
    """The agencies you may see, with the dates that have flags."""
    data = visible_agencies(db, user)
    return json_response({"data": data, "count": len(data)})


def visible_agencies(db: AppDatabase, user: User) -> list[dict[str, Any]]:
    """The agencies ``user`` may see, each with its scored dates (oldest first)."""
    with db.read_conn() as s:
        q = select(Agency.name).order_by(Agency.name)
        if user.agency is not None:
            q = q.where(Agency.name == user.agency)
        names = list(s.execute(q).scalars())
        return [
            {"agency": n, "as_of": [d.isoformat() for d in sorted(current_runs(s, n))]}
            for n in names
        ]


@router.get("/flags", response_model=FlagList)
async def list_flags(
    user: CurrentUser,
    request: Request,
    agency: AgencyQuery,
    as_of: dt.date | None = None,
    all_scored: bool = False,
    unit: NameQuery | None = None,
    status_: Annotated[
        Literal[STATUSES] | None,  # type: ignore[valid-type]
        Query(alias="status", description="Only flags at this review status."),
    ] = None,
    overdue_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """Flagged officers of an agency at an as-of date (default: newest), best first, with
    their review status. Supervisors see only officers whose current unit is theirs.
    ``all_scored`` (reviewers, data scientists, admins) includes officers not flagged."""
    # the database and settings from the app's state, not as dependencies (a hot route:
    # each dependency costs FastAPI's resolution per request)
    db: AppDatabase = request.app.state.db
    settings: Settings = request.app.state.settings
    read = functools.partial(
        flag_page_read,
        db,
        request.app.state.run_cache,
        user,
        request.url.path,
        agency,
        as_of,
        all_scored=all_scored,
        unit=unit,
        status=status_,
        overdue_only=overdue_only,
        limit=limit,
        offset=offset,
        review_days=settings.review_days,
        home=settings.home,
    )
    head, page = await logged_read_async(db, user, cached_read(db, read, agency))
    body = json.dumps(head, ensure_ascii=False)[:-1] + ',"data":[' + ",".join(r.json for r in page)
    return Response(body + "]}", media_type="application/json")
