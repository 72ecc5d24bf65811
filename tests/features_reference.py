"""An obviously-correct pandas reference for cohorts, features and labels, and a generator of
small packages full of edge cases.

It loops over dates and officers and applies the rules as written in CONTRACT.md and
features/spec.py, sharing no code with the engines (windows use dateutil directly), so the
DuckDB and Spark results can be checked against it.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from dateutil.relativedelta import relativedelta

from ews.contract import Package, read_normalized, write_normalized

ANCHORS = [dt.date(2020, 1, 1), dt.date(2020, 3, 1), dt.date(2021, 1, 1)]
OFFSETS = [-800, -731, -730, -366, -365, -181, -180, -91, -90, -31, -30, -1, 0, 1, 29, 200]
DATE_POOL = sorted({a + dt.timedelta(days=d) for a in ANCHORS for d in OFFSETS})
EVENT_TYPES = ["complaint", "use_of_force", "arrest"]
CATEGORIES = [None, "05A EXCESSIVE FORCE", "01B ARREST", "0", "05"]
FINDINGS = [None, "pending", "sustained", "not_sustained", "unfounded", "no_finding"]
CASES = [None, "k1", "k2", "k3"]  # few case ids, so that officers share them often

# a spec that uses every metric, window kind and peer statistic
TEST_SPEC: dict[str, Any] = {
    "name": "test",
    "sources": {
        "complaint": {"event_type": "complaint"},
        # the concept by events.category_group, Chicago's "05" prefix for events without one
        "force_complaint": {
            "event_type": "complaint",
            "category_group": "excessive_force",
            "category_prefix": "05",
        },
        "force_code": {"event_type": "complaint", "category_prefix": "05"},  # the prefix alone
        "use_of_force": {"event_type": "use_of_force"},
        "arrest": {"event_type": "arrest"},
        "lawsuit": {"event_type": "lawsuit"},
    },
    "attributes": ["tenure_years", "age_years", "unit", "rank"],
    "aggregates": [
        {
            "sources": ["complaint", "force_complaint", "use_of_force", "lawsuit"],
            "windows": ["30d", "90d", "180d", "1y", "career"],
            "metrics": ["count", "sustained", "share_sustained", "days_since"],
        },
        {
            "sources": ["complaint", "force_complaint"],
            "windows": ["1y", "career"],
            "metrics": ["not_sustained", "unfounded", "exonerated"],
        },
        {"sources": ["complaint", "use_of_force"], "windows": ["90d", "1y"], "metrics": ["trend"]},
        {"sources": ["force_code"], "windows": ["1y", "career"], "metrics": ["count", "sustained"]},
        {
            "sources": ["use_of_force", "complaint"],
            "windows": ["1y", "career"],
            "metrics": ["per100_arrest", "per100_lawsuit"],
        },
    ],
    "peers": [
        {
            "columns": ["complaint_1y_count", "use_of_force_180d_count", "complaint_1y_trend"],
            "by": ["unit", "rank"],
            "stats": ["ratio", "z", "pct", "mean"],
        }
    ],
    "networks": [
        {
            "ties": "complaint",
            "windows": ["90d", "1y", "career"],
            "histories": [
                "complaint_career_count",
                "complaint_1y_sustained",
                "force_complaint_career_sustained",
                "use_of_force_180d_count",
            ],
            "stats": ["mean", "max", "share", "with"],
        },
        {
            "ties": "force_complaint",
            "windows": ["1y"],
            "histories": ["complaint_career_sustained"],
            "stats": ["share"],
        },
        {
            "ties": "use_of_force",
            "windows": ["180d"],
            "label": "officers co-involved in use-of-force reports",
            "histories": ["use_of_force_1y_count"],
            "stats": ["max", "with"],
        },
    ],
}


# ------------------------------------------------------------------ package generator
def make_package(
    choose: Callable[[Sequence[Any]], Any], integer: Callable[[int, int], int]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Officers, events and assignments drawn with ``choose``/``integer`` (hypothesis or
    random), biased towards dates on and around the as-of anchors and window edges."""
    n_off = integer(1, 6)
    officers = []
    for i in range(n_off):
        appointed = choose(DATE_POOL[: len(DATE_POOL) - 3])
        sep = None
        if integer(0, 2) == 0:
            sep = appointed + dt.timedelta(days=integer(0, 900))
        officers.append(
            {
                "officer_id": f"o{i}",
                "appointed_date": appointed,
                "separation_date": sep,
                "birth_year": choose([None, 1970, 1985, 1999]),
                "race": choose([None, "A", "B"]),
                "sex": choose([None, "F", "M"]),
            }
        )
    events = []
    for k in range(integer(0, 25)):
        ev_date = choose(DATE_POOL)
        reported = ev_date + dt.timedelta(days=choose([0, 0, 1, 30, 90]))
        finding = choose(FINDINGS)
        if finding == "no_finding" and k % 2:  # no extra draw: seeded packages stay the same
            finding = "exonerated"
        fdate = None
        if finding not in (None, "pending"):
            fdate = reported + dt.timedelta(days=choose([0, 1, 30, 200, 400]))
        events.append(
            {
                "event_id": f"e{k}",
                "officer_id": f"o{integer(0, n_off - 1)}",
                "event_type": choose(EVENT_TYPES),
                "event_date": ev_date,
                "reported_date": reported,
                "case_id": choose(CASES),
                "category": choose(CATEGORIES),
                "finding": finding,
                "finding_date": fdate,
            }
        )
        # the optional concept, derived without an extra draw (seeded packages stay the
        # same): a group that agrees with the "05" prefix, one that contradicts it, none
        cat = events[-1]["category"]
        events[-1]["category_group"] = {
            "05A EXCESSIVE FORCE": "excessive_force",
            "01B ARREST": "procedure",
            "0": "excessive_force" if k % 3 == 0 else "",
            "05": "" if k % 3 else "other",
        }.get(cat, "")
    assignments = []
    for _ in range(integer(0, 8)):
        start = choose(DATE_POOL)
        end = None if integer(0, 1) == 0 else start + dt.timedelta(days=choose([0, 1, 60, 365]))
        assignments.append(
            {
                "officer_id": f"o{integer(0, n_off - 1)}",
                "kind": choose(["unit", "rank", "shift"]),
                "value": choose(["a", "b", "c"]),
                "start_date": start,
                "end_date": end,
            }
        )
    cols = {
        "events": ["event_id", "officer_id", "event_type", "event_date"],
        "assignments": ["officer_id", "kind", "value", "start_date"],
    }
    ev = pd.DataFrame(events) if events else pd.DataFrame({c: [] for c in cols["events"]})
    asg = (
        pd.DataFrame(assignments)
        if assignments
        else pd.DataFrame({c: [] for c in cols["assignments"]})
    )
    return pd.DataFrame(officers), ev, asg


def random_package(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rnd = random.Random(seed)
    return make_package(lambda seq: rnd.choice(list(seq)), rnd.randint)


def write_package(folder: Path, tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> Path:
    officers, events, assignments = tables
    return write_normalized(folder, officers, events, assignments)


# ------------------------------------------------------------------ helpers
def _d(x: Any) -> dt.date | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x):
        return None
    return pd.Timestamp(x).date()


def _window_start(t: dt.date, token: str, times: int = 1) -> dt.date | None:
    if token == "career":
        return None
    n, unit = int(token[:-1]), {"d": "days", "w": "weeks", "m": "months", "y": "years"}[token[-1]]
    return t - relativedelta(**{unit: n * times})


def ref_cohort(pkg: Package, dates: Sequence[dt.date], require: str | None = None) -> list:
    rows = []
    for t in sorted(set(dates)):
        for o in pkg.officers.itertuples():
            appointed, sep = _d(o.appointed_date), _d(o.separation_date)
            if not (appointed < t and (sep is None or sep >= t)):
                continue
            if require and ref_assignment(pkg, o.officer_id, t, require) is None:
                continue
            rows.append((str(o.officer_id), t))
    return rows


def ref_assignment(pkg: Package, officer_id: str, t: dt.date, kind: str) -> str | None:
    best: tuple[dt.date, str] | None = None
    for a in pkg.assignments.itertuples():
        if a.officer_id != officer_id or a.kind != kind:
            continue
        start, end = _d(a.start_date), _d(a.end_date)
        if start < t and (end is None or end >= t):
            cand = (start, str(a.value))
            if best is None or cand > best:
                best = cand
    return None if best is None else best[1]


def _matches(e: Any, src: dict[str, Any]) -> bool:
    """An event of the source: its category_group is the source's group, or, without a
    group, its category starts with the source's prefix (features.spec.SourceSpec)."""
    if e.event_type != src["event_type"]:
        return False
    prefix, group = src.get("category_prefix"), src.get("category_group")
    if not prefix and not group:
        return True
    cat = e.category if isinstance(e.category, str) else ""
    given = getattr(e, "category_group", None)
    given = given if isinstance(given, str) else ""
    by_prefix = bool(prefix) and cat.startswith(prefix)
    if not group:
        return by_prefix
    return given == group or (given == "" and by_prefix)


def _aggregate(known: list, t: dt.date, col: Any, sources: dict[str, dict[str, Any]]) -> Any:
    """One aggregate column of one officer at t, from his events known at t."""

    def in_window(src: str, token: str, times: int = 1) -> list:
        lo = _window_start(t, token, times)
        return [
            e
            for e in known
            if _matches(e, sources[src]) and (lo is None or _d(e.reported_date) >= lo)
        ]

    evs = in_window(col.source, col.window)
    n = len(evs)
    sustained = sum(
        1
        for e in evs
        if e.finding == "sustained" and _d(e.finding_date) is not None and _d(e.finding_date) < t
    )
    decided = sum(
        1
        for e in evs
        if isinstance(e.finding, str)
        and e.finding != "pending"
        and _d(e.finding_date) is not None
        and _d(e.finding_date) < t
    )
    m = col.metric
    if m == "count":
        return n
    if m == "sustained":
        return sustained
    if m in ("not_sustained", "unfounded", "exonerated"):
        return sum(
            1
            for e in evs
            if e.finding == m and _d(e.finding_date) is not None and _d(e.finding_date) < t
        )
    if m == "share_sustained":
        return sustained / decided if decided else float("nan")
    if m == "days_since":
        return float((t - max(_d(e.reported_date) for e in evs)).days) if evs else float("nan")
    if m == "trend":
        before = len(in_window(col.source, col.window, 2)) - n
        return n - before
    act = len(in_window(m.removeprefix("per100_"), col.window))
    return 100.0 * n / act if act else float("nan")


def ref_network(pkg: Package, oid: str, t: dt.date, spec: Any, i: int) -> dict[str, Any]:
    """The columns of ``spec.networks[i]`` for one officer at t, by loops over case ids."""
    net = spec.networks[i]
    sources = {k: v.model_dump() for k, v in spec.sources.items()}
    # when each officer was first reported on each case (events of the tie source)
    named: dict[tuple[str, str], dt.date] = {}
    for e in pkg.events.itertuples():
        if _matches(e, sources[net.ties]) and isinstance(e.case_id, str) and e.case_id:
            key, rd = (e.officer_id, e.case_id), _d(e.reported_date)
            named[key] = min(named.get(key, rd), rd)
    appointed = {o.officer_id: _d(o.appointed_date) for o in pkg.officers.itertuples()}
    last: dict[str, dt.date] = {}  # tied officer -> latest tie date before t
    for (o, case), mine in named.items():
        if o != oid:
            continue
        for (p, other_case), theirs in named.items():
            tie = max(mine, theirs)
            if other_case == case and p != oid and tie < t and appointed.get(p, t) < t:
                last[p] = max(last.get(p, tie), tie)
    by_name = {c.name: c for c in spec.columns}
    out: dict[str, Any] = {}
    for col in spec.network_columns(i):
        lo = _window_start(t, col.window)
        tied = [p for p, d in last.items() if lo is None or d >= lo]
        if col.stat is None:
            out[col.name] = len(tied)
            continue
        base = by_name[col.base]
        values = []
        for p in tied:
            known = [
                e for e in pkg.events.itertuples() if e.officer_id == p and _d(e.reported_date) < t
            ]
            values.append(_aggregate(known, t, base, sources))
        n_with = sum(1 for v in values if v > 0)
        if col.stat == "with":
            out[col.name] = n_with
        elif not values:
            out[col.name] = float("nan")
        elif col.stat == "mean":
            out[col.name] = sum(values) / len(values)
        elif col.stat == "max":
            out[col.name] = float(max(values))
        else:
            out[col.name] = n_with / len(values)
    return out


def ref_features(
    pkg: Package, dates: Sequence[dt.date], spec: Any, require: str | None = None
) -> pd.DataFrame:
    """The feature table by loops (spec: a features.spec.FeatureSpec)."""
    sources = {k: v.model_dump() for k, v in spec.sources.items()}
    events = list(pkg.events.itertuples())
    rows = []
    for oid, t in ref_cohort(pkg, dates, require):
        off = pkg.officers[pkg.officers.officer_id == oid].iloc[0]
        known = [e for e in events if e.officer_id == oid and _d(e.reported_date) < t]
        row: dict[str, Any] = {"officer_id": oid, "as_of_date": pd.Timestamp(t)}
        for col in spec.columns:
            if col.family == "peer":
                continue
            if col.name == "tenure_years":
                row[col.name] = (t - _d(off.appointed_date)).days / 365.25
            elif col.name == "age_years":
                by = off.birth_year
                row[col.name] = float("nan") if pd.isna(by) else float(t.year - int(by))
            elif col.family == "attribute":
                row[col.name] = ref_assignment(pkg, oid, t, col.name)
            elif col.family == "network":
                continue  # below, once per network
            else:
                row[col.name] = _aggregate(known, t, col, sources)
        for i in range(len(spec.networks)):
            row.update(ref_network(pkg, oid, t, spec, i))
        rows.append(row)
    df = pd.DataFrame(rows, columns=["officer_id", "as_of_date"] + spec.column_names)
    # peers: loops over each group
    for col in spec.columns:
        if col.family != "peer":
            continue
        out = []
        for r in df.itertuples(index=False):
            g = getattr(r, col.peer)
            if g is None or (isinstance(g, float) and math.isnan(g)):
                out.append(float("nan"))
                continue
            peers = df[(df.as_of_date == r.as_of_date) & (df[col.peer] == g)][col.base]
            vals = [float(x) for x in peers]
            x = float(getattr(r, col.base))
            mean = sum(vals) / len(vals)
            if col.stat == "ratio":
                out.append(x / mean if mean != 0 else float("nan"))
            elif col.stat == "z":
                std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
                out.append((x - mean) / std if std != 0 else 0.0)
            elif col.stat == "mean":
                out.append(mean)
            else:
                below = sum(1 for v in vals if v < x)
                out.append(100.0 * below / (len(vals) - 1) if len(vals) > 1 else 0.0)
        df[col.name] = out
    return df.sort_values(["as_of_date", "officer_id"]).reset_index(drop=True)


def ref_labels(
    pkg: Package,
    dates: Sequence[dt.date],
    label: Any,
    known_by: dt.date | None = None,
    require: str | None = None,
) -> pd.DataFrame:
    n, unit = label.window[:-1], label.window[-1]
    step = relativedelta(**{{"d": "days", "m": "months", "y": "years"}[unit]: int(n)})
    rows = []
    for oid, t in ref_cohort(pkg, dates, require):
        hi = t + step
        hit = 0
        for e in pkg.events.itertuples():
            rd = _d(e.reported_date)
            if e.officer_id != oid or not (t <= rd < hi):
                continue
            if known_by is not None and not rd < known_by:
                continue
            for cl in label.any_of:
                src = {"event_type": cl.event_type, "category_prefix": cl.category_prefix}
                if not _matches(e, src):
                    continue
                if cl.finding is not None:
                    fd = _d(e.finding_date)
                    if e.finding != cl.finding or fd is None:
                        continue
                    if known_by is not None and not fd < known_by:
                        continue
                hit = 1
        rows.append({"officer_id": oid, "as_of_date": pd.Timestamp(t), "label": hit})
    df = pd.DataFrame(rows, columns=["officer_id", "as_of_date", "label"])
    return df.sort_values(["as_of_date", "officer_id"]).reset_index(drop=True)


def truncate(pkg: Package, t: dt.date) -> Package:
    """The package as known at t, cut exactly as CONTRACT.md says."""
    ts = pd.Timestamp(t)
    ev = pkg.events[pkg.events.reported_date < ts].copy()
    late = ev.finding_date.notna() & (ev.finding_date >= ts)
    ev.loc[late, "finding"] = None
    ev.loc[late, "finding_date"] = pd.NaT
    off = pkg.officers[pkg.officers.appointed_date < ts].copy()
    off.loc[off.separation_date >= ts, "separation_date"] = pd.NaT
    asg = pkg.assignments[pkg.assignments.start_date < ts].copy()
    asg.loc[asg.end_date >= ts, "end_date"] = pd.NaT
    return Package(off, ev, asg)


def read(folder: Path) -> Package:
    """The package in pandas with plain None for missing strings (easy to loop over)."""
    pkg = read_normalized(folder)
    out = {}
    for name in ("officers", "events", "assignments"):
        df = pkg.table(name).copy()
        for c in df.columns:
            if not pd.api.types.is_datetime64_any_dtype(df[c]):
                df[c] = df[c].astype(object).where(df[c].notna(), None)
        out[name] = df
    return Package(**out)


def assert_frames_equal(got: pd.DataFrame, want: pd.DataFrame, spec: Any) -> None:
    """Exact equality for keys, integers and strings; 1e-9 relative for floats."""
    import numpy as np

    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want), f"{len(got)} rows, want {len(want)}"
    assert got.officer_id.tolist() == want.officer_id.tolist()
    assert (got.as_of_date.values == want.as_of_date.values).all()
    for col in spec.columns:
        g, w = got[col.name], want[col.name]
        if col.dtype == "int":
            assert g.tolist() == [int(x) for x in w], col.name
        elif col.dtype == "str":
            norm = [
                None if (x is None or (isinstance(x, float) and math.isnan(x))) else x for x in w
            ]
            assert g.tolist() == norm, col.name
        else:
            gv, wv = g.to_numpy(float), w.to_numpy(float)
            assert (np.isnan(gv) == np.isnan(wv)).all(), (col.name, gv, wv)
            ok = ~np.isnan(wv)
            assert np.allclose(gv[ok], wv[ok], rtol=1e-9, atol=1e-9), (col.name, gv, wv)
