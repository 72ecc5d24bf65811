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

from ews.db import AppDatabase, Flag, FlagStatus, Review, ScoringRun


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
    """
    today = today or dt.date.today()
    with db.session() as s:
        runs = _current_runs(s, agency)
        flagged = {
            (o, d)
            for o, d in s.execute(
                select(Flag.officer_id, Flag.as_of_date).where(
                    Flag.run_id.in_([r.id for r in runs.values()]), Flag.flagged.is_(True)
                )
            )
        }
        states = {
            (f.officer_id, f.as_of_date): f
            for f in s.scalars(select(FlagStatus).where(FlagStatus.agency == agency))
        }
        steps = list(s.scalars(select(Review).where(Review.agency == agency).order_by(Review.id)))
    data: list[dict[str, Any]] = []
    all_waits: list[float] = []
    totals_status: dict[str, int] = {}
    for day in sorted(runs):
        run = runs[day]
        keys = [k for k in flagged if k[1] == day]
        by_status: dict[str, int] = {}
        waits, late = [], 0
        for k in keys:
            st = states.get(k)
            name = st.status if st else "new"
            by_status[name] = by_status.get(name, 0) + 1
            if st is not None and st.first_reviewed_at is not None:
                waits.append((st.first_reviewed_at - run.scored_at).total_seconds() / 86400)
            late += overdue(name, run.scored_at, st.due_date if st else None, today, review_days)
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
        },
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
