"""The review workflow in figures, read from the application database: the one library code
behind the reviewers' timeliness page and API and the audit report.

For an agency's current scoring runs: per scored date the flags raised, how many were
reviewed and how fast (days from the flag to its first review step), how many are open and
overdue, and where they stand; over all dates the interventions assigned by type, the
dismissals by reason, and every intervention completed (for the outcomes section of the audit
report). No scope check here: callers decide who may read it.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

from sqlalchemy import select

from ews.db import AppDatabase, Flag, FlagStatus, Review, ScoringRun, User

TIMELY_SHARE = 0.8  # "reviews are timely": this share of the flags whose window has closed


def overdue(
    status_: str, scored_at: dt.datetime, due: dt.date | None, today: dt.date, days: int
) -> bool:
    """A flag still 'new' more than ``days`` after it was raised, or an intervention past its
    due date, is overdue."""
    if status_ == "new":
        return (today - scored_at.date()).days > days
    if status_ == "intervention_assigned":
        return due is not None and due < today
    return False


def _current_runs(s: Any, agency: str) -> dict[dt.date, ScoringRun]:
    q = select(ScoringRun).where(ScoringRun.agency == agency, ScoringRun.current.is_(True))
    return {r.as_of_date: r for r in s.scalars(q)}


def review_summary(
    db: AppDatabase, agency: str, review_days: int = 14, today: dt.date | None = None
) -> dict[str, Any]:
    """The review workflow of ``agency``'s flags (current scoring runs).

    Returns ``data`` (one row per scored date: as_of, raised_at, flagged, reviewed, open,
    overdue, by_status, median and longest days to the first review), ``totals`` (the same
    over every date, with ``share_reviewed``), ``interventions_by_type`` (assigned),
    ``completed_by_type``, ``dismissals_by_reason`` and ``review_days``.

    Timeliness: a flag's review window has closed ``review_days`` after it was raised
    (``due``); it was reviewed in time when its first review step came within the window
    (``reviewed_in_time``, ``share_in_time``: None while no window has closed). The same per
    unit of the flag (``by_unit``) and per supervisor account of that unit (``by_supervisor``;
    a flag counts for each supervisor of its unit), most overdue first.
    """
    today = today or dt.date.today()
    with db.session() as s:
        runs = _current_runs(s, agency)
        flagged = {
            (o, d): u
            for o, d, u in s.execute(
                select(Flag.officer_id, Flag.as_of_date, Flag.unit).where(
                    Flag.run_id.in_([r.id for r in runs.values()]), Flag.flagged.is_(True)
                )
            )
        }
        states = {
            (f.officer_id, f.as_of_date): f
            for f in s.scalars(select(FlagStatus).where(FlagStatus.agency == agency))
        }
        steps = list(s.scalars(select(Review).where(Review.agency == agency).order_by(Review.id)))
        sups = [
            (u.username, list(u.units or []))
            for u in s.scalars(select(User).where(User.role == "supervisor", User.active.is_(True)))
            if u.agency in (None, agency)
        ]
    groups: dict[str, dict[str, dict[str, Any]]] = {"unit": {}, "supervisor": {}}
    closed = in_time = 0
    data: list[dict[str, Any]] = []
    all_waits: list[float] = []
    totals_status: dict[str, int] = {}
    for day in sorted(runs):
        run = runs[day]
        keys = [k for k in flagged if k[1] == day]
        by_status: dict[str, int] = {}
        waits, late = [], 0
        window_closed = (today - run.scored_at.date()).days > review_days
        for k in keys:
            st = states.get(k)
            name = st.status if st else "new"
            by_status[name] = by_status.get(name, 0) + 1
            wait = None
            if st is not None and st.first_reviewed_at is not None:
                wait = (st.first_reviewed_at - run.scored_at).total_seconds() / 86400
                waits.append(wait)
            late_one = overdue(name, run.scored_at, st.due_date if st else None, today, review_days)
            late += late_one
            timely = wait is not None and wait <= review_days
            closed += window_closed
            in_time += window_closed and timely
            unit = flagged[k]
            names = [n for n, units in sups if unit is not None and unit in units]
            for axis, group in [("unit", unit or "(no unit)")] + [
                ("supervisor", n) for n in names or ["(no supervisor account)"]
            ]:
                g = groups[axis].setdefault(
                    group,
                    {
                        axis: group,
                        "flagged": 0,
                        "reviewed": 0,
                        "overdue": 0,
                        "due": 0,
                        "in_time": 0,
                        "waits": [],
                    },
                )
                g["flagged"] += 1
                g["reviewed"] += wait is not None
                g["overdue"] += late_one
                g["due"] += window_closed
                g["in_time"] += window_closed and timely
                if wait is not None:
                    g["waits"].append(wait)
        for state, n in by_status.items():
            totals_status[state] = totals_status.get(state, 0) + n
        all_waits += waits
        data.append(
            {
                "as_of": day.isoformat(),
                "raised_at": run.scored_at.isoformat(),
                "flagged": len(keys),
                "reviewed": len(waits),
                "open": len(keys) - len(waits),
                "overdue": late,
                "by_status": by_status,
                "median_days_to_review": round(statistics.median(waits), 2) if waits else None,
                "max_days_to_review": round(max(waits), 2) if waits else None,
            }
        )
    assigned: dict[str, int] = {}
    completed: dict[str, int] = {}
    dismissed: dict[str, int] = {}
    kind: dict[tuple[str, dt.date], str] = {}
    for r in steps:
        if r.status == "intervention_assigned":
            t = str(r.intervention_type or "other")
            assigned[t] = assigned.get(t, 0) + 1
            kind[(r.officer_id, r.as_of_date)] = t
        elif r.status == "intervention_completed":
            t = kind.get((r.officer_id, r.as_of_date), "other")
            completed[t] = completed.get(t, 0) + 1
        elif r.status == "dismissed":
            why = (r.reason or "(no reason given)").strip() or "(no reason given)"
            dismissed[why] = dismissed.get(why, 0) + 1
    n_flags = sum(int(d["flagged"]) for d in data)
    n_reviewed = sum(int(d["reviewed"]) for d in data)
    by: dict[str, list[dict[str, Any]]] = {}
    for name, found in groups.items():
        rows = []
        for g in found.values():
            w = g.pop("waits")
            g["median_days_to_review"] = round(statistics.median(w), 2) if w else None
            g["share_in_time"] = g["in_time"] / g["due"] if g["due"] else None
            rows.append(g)
        by[name] = sorted(rows, key=lambda g: (-g["overdue"], -g["flagged"], str(g[name])))  # noqa: B023
    return {
        "data": data,
        "count": len(data),
        "totals": {
            "flagged": n_flags,
            "reviewed": n_reviewed,
            "share_reviewed": n_reviewed / n_flags if n_flags else None,
            "open": n_flags - n_reviewed,
            "overdue": sum(d["overdue"] for d in data),
            "by_status": totals_status,
            "median_days_to_review": round(statistics.median(all_waits), 2) if all_waits else None,
            "due": closed,
            "reviewed_in_time": in_time,
            "share_in_time": in_time / closed if closed else None,
        },
        "by_unit": by["unit"],
        "by_supervisor": by["supervisor"],
        "timely_share": TIMELY_SHARE,
        "interventions_by_type": dict(sorted(assigned.items())),
        "completed_by_type": dict(sorted(completed.items())),
        "dismissals_by_reason": dict(sorted(dismissed.items(), key=lambda kv: -kv[1])),
        "review_days": review_days,
    }


def completed_interventions(db: AppDatabase, agency: str) -> list[dict[str, Any]]:
    """Every flag of ``agency`` whose intervention was completed: officer_id, as_of (the
    flag's date), intervention_type, assigned_at and completed_at (dates of the steps)."""
    with db.session() as s:
        steps = list(
            s.scalars(
                select(Review)
                .where(
                    Review.agency == agency,
                    Review.status.in_(("intervention_assigned", "intervention_completed")),
                )
                .order_by(Review.id)
            )
        )
    out: dict[tuple[str, dt.date], dict[str, Any]] = {}
    for r in steps:
        key = (r.officer_id, r.as_of_date)
        row = out.setdefault(
            key,
            {
                "officer_id": r.officer_id,
                "as_of": r.as_of_date,
                "intervention_type": None,
                "assigned_at": None,
                "completed_at": None,
            },
        )
        if r.status == "intervention_assigned":
            row["intervention_type"] = r.intervention_type
            row["assigned_at"] = r.at.date()
        else:
            row["completed_at"] = r.at.date()
    return [r for r in out.values() if r["completed_at"] is not None]


def intervened_officers(db: AppDatabase, agency: str) -> set[str]:
    """Officers of ``agency`` with an intervention assigned on any of their flags."""
    with db.session() as s:
        return set(
            s.scalars(
                select(Review.officer_id).where(
                    Review.agency == agency, Review.status == "intervention_assigned"
                )
            )
        )
