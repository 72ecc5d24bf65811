"""Compile cohorts and feature specs into one Ibis expression, the same for every engine.

Shape of the computation (no per-row Python, no query per date or window):

1. ``dates``: one small table of as-of dates with each window's lower bound precomputed in
   Python (calendar arithmetic done once, identically for every engine).
2. ``cohort``: officers x dates with ``appointed_date < t`` and no separation before t, plus
   the officer's current assignment of each needed kind (the most recently started spell
   with ``start_date < t`` still open at t; ties broken by the larger value).
3. one join of the cohort with the relevant events known at t (``reported_date < t``) and
   one ``GROUP BY (officer_id, as_of_date)`` holding every window's conditional aggregate.
4. network indicators: the pairs of officers named on one case (a self-join of the tie
   source's events on ``case_id``, per officer and case the earliest report), joined with the
   cohort on ``tie date < t``; the tied officers' histories are the same conditional
   aggregates as 3., computed once per distinct (tied officer, t); then one ``GROUP BY``.
5. peer statistics as window functions partitioned by ``(as_of_date, unit)`` and so on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from features.durations import CAREER, Duration, parse_window
from features.spec import FINDING_METRICS, RATE_PREFIX, FeatureSpec

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pyarrow as pa
    from ibis.backends import BaseBackend

    from features.cohort import CohortSpec
    from features.engines import Tables

KEYS = ["officer_id", "as_of_date"]
# what to do with an intermediate table read more than once (see features_over)
Stage = Callable[["ir.Table"], "ir.Table"]


def as_dates(values: Iterable[Any]) -> list[dt.date]:
    """Sorted unique dates from dates, datetimes, pandas Timestamps or ISO strings."""
    import pandas as pd

    out: set[dt.date] = set()
    for v in values:
        if isinstance(v, dt.datetime):
            out.add(v.date())
        elif isinstance(v, dt.date):
            out.add(v)
        else:
            try:
                out.add(pd.Timestamp(v).date())
            except (ValueError, TypeError) as e:
                raise ValueError(f"not a date: {v!r} (use YYYY-MM-DD)") from e
    if not out:
        raise ValueError("no as-of dates given")
    return sorted(out)


def dates_table(
    con: BaseBackend,
    as_of_dates: Sequence[dt.date],
    lower: dict[str, tuple[Duration, int]] | None = None,
    upper: dict[str, Duration] | None = None,
) -> ir.Table:
    """The as-of dates with bound columns: ``lower[name] = (duration, k)`` gives
    ``t - k * duration``, ``upper[name] = duration`` gives ``t + duration``.

    It is created as a temporary table on the backend (not an Ibis memtable, which cached
    Spark expressions would not see)."""
    from features.engines import temp_table

    return temp_table(con, dates_arrow(as_of_dates, lower, upper))


def dates_arrow(
    as_of_dates: Sequence[dt.date],
    lower: dict[str, tuple[Duration, int]] | None = None,
    upper: dict[str, Duration] | None = None,
) -> pa.Table:
    """The rows of :func:`dates_table` as an Arrow table (calendar arithmetic in Python)."""
    import pyarrow as pa

    cols: dict[str, list[dt.date]] = {"as_of_date": list(as_of_dates)}
    for name, (d, k) in (lower or {}).items():
        cols[name] = [d.before(t, k) for t in as_of_dates]
    for name, d in (upper or {}).items():
        cols[name] = [d.after(t) for t in as_of_dates]
    return pa.table({k: pa.array(v, pa.date32()) for k, v in cols.items()})


def current_assignment(keys: ir.Table, assignments: ir.Table, kind: str) -> ir.Table:
    """(officer_id, as_of_date, <kind>) for the spell of ``kind`` held at each as-of date."""
    import ibis

    a = assignments.filter(assignments.kind == kind).select(
        a_officer_id="officer_id", start_date="start_date", end_date="end_date", value="value"
    )
    j = keys.select(*KEYS).join(
        a,
        [
            keys.officer_id == a.a_officer_id,
            a.start_date < keys.as_of_date,
            a.end_date.isnull() | (a.end_date >= keys.as_of_date),
        ],
    )
    rn = ibis.row_number().over(
        group_by=[j.officer_id, j.as_of_date],
        order_by=[ibis.desc(j.start_date), ibis.desc(j.value)],
    )
    j = j.mutate(_rn=rn)
    return j.filter(j._rn == 0).select("officer_id", "as_of_date", **{kind: j.value})


def cohort_expr(
    tables: Tables,
    dates: ir.Table,
    cohort: CohortSpec | None = None,
    kinds: Sequence[str] = (),
) -> ir.Table:
    """Cohort rows at each date with officer attributes, date bounds and assignment kinds."""
    o = tables.officers
    c = o.join(dates, [o.appointed_date < dates.as_of_date])
    c = c.filter(c.separation_date.isnull() | (c.separation_date >= c.as_of_date))
    required = cohort.require_assignment if cohort is not None else None
    all_kinds = list(kinds) + ([required] if required and required not in kinds else [])
    for kind in all_kinds:
        cur = current_assignment(c, tables.assignments, kind)
        cur = cur.rename(_k_officer_id="officer_id", _k_as_of_date="as_of_date")
        how = "inner" if kind == required else "left"
        c = c.join(
            cur,
            [c.officer_id == cur._k_officer_id, c.as_of_date == cur._k_as_of_date],
            how=how,
        ).drop("_k_officer_id", "_k_as_of_date")
    if required and required not in kinds:
        c = c.drop(required)
    return c


def date_bounds(spec: FeatureSpec) -> dict[str, tuple[Duration, int]]:
    """The lower bound columns the dates table needs for ``spec`` (``_lo_<window>``, and
    ``_lo2_<window>`` for trends), as :func:`dates_table` takes them."""
    lower: dict[str, tuple[Duration, int]] = {}
    for col in spec.columns:
        if col.family == "peer" or col.window is None:
            continue
        d = parse_window(col.window)
        if d is not None:
            lower[f"_lo_{col.window}"] = (d, 1)
            if col.metric == "trend":
                lower[f"_lo2_{col.window}"] = (d, 2)
    return lower


def features_expr(
    tables: Tables,
    as_of_dates: Sequence[dt.date],
    spec: FeatureSpec,
    cohort: CohortSpec | None = None,
    cache: bool = True,
    con: BaseBackend | None = None,
) -> ir.Table:
    """The whole feature table for ``as_of_dates`` as one Ibis expression.

    With ``cache`` (the default) the per-officer columns are materialized once on the
    backend (a temporary table in DuckDB, a cached DataFrame in Spark) before the peer
    statistics read them; without it the expression stays lazy (and computes them twice)."""
    backend = con or tables.con
    assert backend is not None, "tables bound to no backend: pass con"
    dates = dates_table(backend, as_of_dates, date_bounds(spec))
    stage: Stage = (lambda t: t.cache()) if cache else (lambda t: t)
    return features_over(tables, dates, spec, cohort, stage)


def dates_schema(spec: FeatureSpec) -> dict[str, str]:
    """The Ibis schema of the dates table :func:`features_expr` builds for ``spec``."""
    return {"as_of_date": "date", **dict.fromkeys(date_bounds(spec), "date")}


def features_over(
    tables: Tables,
    dates: ir.Table,
    spec: FeatureSpec,
    cohort: CohortSpec | None,
    stage: Stage,
) -> ir.Table:
    """The feature table over a dates table (columns :func:`dates_schema`), with ``stage``
    applied to each intermediate table read more than once (``t.cache()`` materializes it;
    features.plan names it instead, so the whole build compiles to reusable SQL)."""
    import ibis

    f64 = "float64"
    kinds = spec.peer_kinds()
    c = cohort_expr(tables, dates, cohort, kinds)

    # --- which internal aggregates are needed: n (count), s (sustained), k (known finding),
    #     last (latest reported_date), p (count in the window before, for trends)
    needed: dict[str, tuple[str, str, str]] = {}

    def need(q: str, src: str, w: str) -> str:
        name = f"_{q}__{src}__{w}"
        needed[name] = (q, src, w)
        return name

    for col in spec.columns:
        if col.family in ("attribute", "peer", "network") or col.source is None:
            continue
        assert col.window is not None
        m, s, w = col.metric or "", col.source, col.window
        need("n", s, w)
        if m in ("sustained", "share_sustained"):
            need("s", s, w)
        if m in FINDING_METRICS:
            need(m, s, w)
        if m == "share_sustained":
            need("k", s, w)
        if m == "days_since":
            need("last", s, w)
        if m == "trend":
            need("p", s, w)
        if m.startswith(RATE_PREFIX):
            need("n", m[len(RATE_PREFIX) :], w)

    if needed:
        c = stage(c)  # the cohort is read once per event type and once by the result
    base = c
    if needed:
        bound_cols = [n for n in dates.columns if n != "as_of_date"]
        keys = c.select(*KEYS, *bound_cols)
        # one join + aggregate per event type: rows of a frequent type (arrests) evaluate
        # only their own few conditional sums, not every source's
        by_type: dict[str, list[str]] = {}
        for name, (_, src, _) in needed.items():
            by_type.setdefault(spec.sources[src].event_type, []).append(name)
        for etype, names in sorted(by_type.items()):
            base = base_join(base, keys, tables.events, etype, spec, {n: needed[n] for n in names})
        fills = {name: base[name].fill_null(0) for name, (q, _, _) in needed.items() if q != "last"}
        base = base.mutate(**fills)

    # --- the spec's columns (attributes and aggregates)
    values: dict[str, Any] = {}
    for col in spec.columns:
        if col.family in ("peer", "network"):
            continue
        if col.family == "attribute":
            if col.name == "tenure_years":
                days = base.as_of_date.delta(base.appointed_date, unit="day")
                values[col.name] = days.cast(f64) / 365.25
            elif col.name == "age_years":
                values[col.name] = (base.as_of_date.year() - base.birth_year).cast(f64)
            else:
                values[col.name] = base[col.name]
            continue
        assert col.source is not None and col.window is not None and col.metric is not None
        s, w, m = col.source, col.window, col.metric
        n = base[f"_n__{s}__{w}"]
        if m == "count":
            values[col.name] = n
        elif m == "sustained":
            values[col.name] = base[f"_s__{s}__{w}"]
        elif m in FINDING_METRICS:
            values[col.name] = base[f"_{m}__{s}__{w}"]
        elif m == "share_sustained":
            k = base[f"_k__{s}__{w}"]
            values[col.name] = base[f"_s__{s}__{w}"].cast(f64) / k.cast(f64).nullif(0.0)
        elif m == "days_since":
            last = base[f"_last__{s}__{w}"]
            values[col.name] = base.as_of_date.delta(last, unit="day").cast(f64)
        elif m == "trend":
            values[col.name] = n - base[f"_p__{s}__{w}"]
        else:
            act = base[f"_n__{m[len(RATE_PREFIX) :]}__{w}"]
            values[col.name] = n.cast(f64) * 100.0 / act.cast(f64).nullif(0.0)
    feats = base.select(*KEYS, *kinds, **{k: v for k, v in values.items() if k not in kinds})

    # --- networks: officers tied by a shared case id, and their histories as of t
    for i in range(len(spec.networks)):
        net_cols = spec.network_columns(i)
        bounds = [n for n in dates.columns if n != "as_of_date"]
        stats = network_expr(tables, c.select(*KEYS, *bounds), dates, spec, i, stage)
        feats = feats.left_join(
            stats,
            [feats.officer_id == stats._n_officer_id, feats.as_of_date == stats._n_as_of_date],
        ).drop("_n_officer_id", "_n_as_of_date")
        fills = {
            col.name: feats[col.name].fill_null(0) for col in net_cols if col.stat in (None, "with")
        }
        feats = feats.mutate(**fills)

    # --- peers: window functions over (as_of_date, group), on a narrow table per group kind
    #     (keys, group, base columns) joined back, so the sorts never carry the wide rows
    peer_cols = [c for c in spec.columns if c.family == "peer"]
    if peer_cols:
        feats = stage(feats)  # computed once, read by each peer kind and the join back
    for kind in dict.fromkeys(c.peer for c in peer_cols):
        cols = [c for c in peer_cols if c.peer == kind]
        bases = list(dict.fromkeys(c.base for c in cols if c.base is not None))
        nar = feats.select(*KEYS, _g=feats[kind], **{f"_x_{b}": feats[b].cast(f64) for b in bases})
        win = ibis.window(group_by=[nar.as_of_date, nar._g])
        peers: dict[str, Any] = {}
        for col in cols:
            x = nar[f"_x_{col.base}"]
            mean = x.mean().over(win)
            if col.stat == "ratio":
                v = x / mean.nullif(0.0)
            elif col.stat == "z":
                # (x - mean) / population sd = (n x - sum) / sqrt(n sum(x^2) - sum^2): the
                # bases are counts, so both sides are exact sums of integers and z does not
                # depend on the order of the rows (the same in every batch and on every engine)
                n_g, s1 = x.count().over(win).cast(f64), x.sum().over(win)
                d = n_g * (x * x).sum().over(win) - s1 * s1
                v = ((n_g * x - s1) / d.sqrt().nullif(0.0)).fill_null(0.0)
            elif col.stat == "mean":
                v = mean
            else:
                v = ibis.percent_rank().over(group_by=[nar.as_of_date, nar._g], order_by=x) * 100.0
            peers[col.name] = ibis.ifelse(nar._g.isnull(), ibis.null().cast(f64), v)
        stats = nar.select(_p_officer_id=nar.officer_id, _p_as_of_date=nar.as_of_date, **peers)
        feats = feats.left_join(
            stats,
            [feats.officer_id == stats._p_officer_id, feats.as_of_date == stats._p_as_of_date],
        ).drop("_p_officer_id", "_p_as_of_date")
    return feats.select(*KEYS, *spec.column_names)


def category_match(ev: ir.Table, src: Any) -> Any:
    """Whether an event is of the source by category (None: every event of its type): its
    ``category_group`` is the source's group, or, for an event without a group, its
    ``category`` starts with the source's prefix (see features.spec.SourceSpec)."""
    import ibis

    prefix, group = src.category_prefix, src.category_group
    if not prefix and not group:
        return None
    by_prefix = ev.category.fill_null("").startswith(prefix) if prefix else ibis.literal(False)
    if not group:
        return by_prefix
    given = ev.category_group.fill_null("")
    return (given == group) | ((given == "") & by_prefix)


def network_expr(
    tables: Tables, keys: ir.Table, dates: ir.Table, spec: FeatureSpec, i: int, stage: Stage
) -> ir.Table:
    """The columns of ``spec.networks[i]`` per (``_n_officer_id``, ``_n_as_of_date``) of
    ``keys`` (cohort keys with the dates' bound columns) that have at least one tie known at
    t (see features.spec for the rules)."""
    import ibis

    f64 = "float64"
    net = spec.networks[i]
    cols = spec.network_columns(i)
    src = spec.sources[net.ties]
    ev = tables.events
    ev = ev.filter((ev.event_type == src.event_type) & ev.case_id.notnull() & (ev.case_id != ""))
    match = category_match(ev, src)
    if match is not None:
        ev = ev.filter(match)
    # per officer and case, the day the officer was first reported on it
    named = ev.group_by(["officer_id", "case_id"]).aggregate(named=ev.reported_date.min())
    other = named.select(p_id="officer_id", p_case="case_id", p_named="named")
    pairs = named.join(
        other, [named.case_id == other.p_case, named.officer_id != other.p_id]
    ).select(
        t_officer_id="officer_id",
        peer_id="p_id",
        tie_date=ibis.greatest(named.named, other.p_named),
    )
    pairs = pairs.distinct()
    # the tied officer must be known at t (appointed before t)
    o = tables.officers.select(q_id="officer_id", q_appointed="appointed_date")
    lows = {w: f"_lo_{w}" for w in net.windows if w != CAREER}
    k = keys.select(*KEYS, *lows.values())
    preds = [k.officer_id == pairs.t_officer_id, pairs.tie_date < k.as_of_date]
    if len(lows) == len(net.windows):  # every window bounded: older ties never count
        bounds = [k[b] for b in lows.values()]
        preds.append(pairs.tie_date >= (ibis.least(*bounds) if len(bounds) > 1 else bounds[0]))
    j = k.join(pairs, preds)
    j = j.join(o, [j.peer_id == o.q_id, o.q_appointed < j.as_of_date])
    tied = j.group_by([*KEYS, "peer_id", *lows.values()]).aggregate(last_tie=j.tie_date.max())
    tied = stage(tied)

    # the tied officers' histories at t: the aggregates of base_join on (peer, t) keys
    hist_cols = [spec_col for spec_col in spec.columns if spec_col.name in net.histories]
    hist: ir.Table | None = None
    if hist_cols:
        needed: dict[str, tuple[str, str, str]] = {}
        for hc in hist_cols:
            assert hc.source is not None and hc.window is not None
            q = "n" if hc.metric == "count" else "s"
            needed[f"_h_{hc.name}"] = (q, hc.source, hc.window)
        pk = tied.select(p_officer_id=tied.peer_id, p_as_of_date=tied.as_of_date).distinct()
        pk = pk.join(dates, pk.p_as_of_date == dates.as_of_date).select(
            officer_id=pk.p_officer_id,
            as_of_date=pk.p_as_of_date,
            **{c: dates[c] for c in dates.columns if c != "as_of_date"},
        )
        hist = pk
        by_type: dict[str, list[str]] = {}
        for name, (_, s, _) in needed.items():
            by_type.setdefault(spec.sources[s].event_type, []).append(name)
        for etype, names in sorted(by_type.items()):
            hist = base_join(hist, pk, tables.events, etype, spec, {n: needed[n] for n in names})
        hist = hist.select(
            h_id="officer_id",
            h_as_of_date="as_of_date",
            **{n: hist[n].fill_null(0) for n in needed},
        )
        tied = tied.left_join(
            hist, [tied.peer_id == hist.h_id, tied.as_of_date == hist.h_as_of_date]
        )

    aggs: dict[str, Any] = {}
    for col in cols:
        assert col.window is not None
        if col.window == CAREER:
            inw = tied.last_tie.notnull()  # every tie known at t
        else:
            inw = tied.last_tie >= tied[lows[col.window]]
        if col.stat is None:
            aggs[col.name] = ibis.ifelse(inw, 1, 0).sum()
            continue
        h = tied[f"_h_{col.base}"]
        n_in = ibis.ifelse(inw, 1, 0).sum()
        n_with = ibis.ifelse(inw & (h > 0), 1, 0).sum()
        if col.stat == "mean":
            aggs[col.name] = ibis.ifelse(inw, h.cast(f64), ibis.null().cast(f64)).mean()
        elif col.stat == "max":
            aggs[col.name] = ibis.ifelse(inw, h.cast(f64), ibis.null().cast(f64)).max()
        elif col.stat == "share":
            aggs[col.name] = n_with.cast(f64) / n_in.cast(f64).nullif(0.0)
        else:
            aggs[col.name] = n_with
    out = tied.group_by(KEYS).aggregate(**aggs)
    return out.rename(_n_officer_id="officer_id", _n_as_of_date="as_of_date")


def base_join(
    base: ir.Table,
    keys: ir.Table,
    events: ir.Table,
    event_type: str,
    spec: FeatureSpec,
    needed: dict[str, tuple[str, str, str]],
) -> ir.Table:
    """Join the cohort keys with the events of one type known at t, aggregate the needed
    quantities per (officer_id, as_of_date), and left-join them onto ``base``."""
    import ibis

    srcs = sorted({src for _, src, _ in needed.values()})
    ev = events.filter(events.event_type == event_type)
    flags: dict[str, Any] = {}
    for s in srcs:
        match = category_match(ev, spec.sources[s])
        flags[f"_f__{s}"] = ibis.literal(True) if match is None else match
    ev = ev.select(
        e_officer_id=ev.officer_id,
        reported_date=ev.reported_date,
        finding=ev.finding,
        finding_date=ev.finding_date,
        **flags,
    )
    preds = [keys.officer_id == ev.e_officer_id, ev.reported_date < keys.as_of_date]
    lows = []
    for q, _, w in needed.values():
        if w == CAREER:
            break
        lows.append(keys[f"_lo2_{w}" if q == "p" else f"_lo_{w}"])
    else:  # every quantity has a lower bound: skip events older than the earliest one
        preds.append(ev.reported_date >= (ibis.least(*lows) if len(lows) > 1 else lows[0]))
    j = keys.join(ev, preds)
    known_t = j.finding_date.notnull() & (j.finding_date < j.as_of_date)

    def total(cond: Any) -> Any:
        return ibis.ifelse(cond, 1, 0).sum()

    def in_window(src: str, w: str) -> Any:
        cond = j[f"_f__{src}"]
        if w != CAREER:
            cond = cond & (j.reported_date >= j[f"_lo_{w}"])
        return cond

    aggs: dict[str, Any] = {}
    for name, (q, src, w) in needed.items():
        inw = in_window(src, w)
        if q == "n":
            aggs[name] = total(inw)
        elif q == "s":
            aggs[name] = total(inw & (j.finding.fill_null("") == "sustained") & known_t)
        elif q in FINDING_METRICS:
            aggs[name] = total(inw & (j.finding.fill_null("") == q) & known_t)
        elif q == "k":
            f = j.finding.fill_null("")
            aggs[name] = total(inw & (f != "") & (f != "pending") & known_t)
        elif q == "last":
            aggs[name] = j.reported_date.max(where=inw)
        elif q == "p":
            aggs[name] = total(
                j[f"_f__{src}"]
                & (j.reported_date >= j[f"_lo2_{w}"])
                & (j.reported_date < j[f"_lo_{w}"])
            )
    agg = j.group_by(KEYS).aggregate(**aggs)
    agg = agg.rename(_a_officer_id="officer_id", _a_as_of_date="as_of_date")
    return base.left_join(
        agg, [base.officer_id == agg._a_officer_id, base.as_of_date == agg._a_as_of_date]
    ).drop("_a_officer_id", "_a_as_of_date")
