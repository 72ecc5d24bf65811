"""The synthetic agency generator: a documented generative model with a known hidden truth.

``synthesize(out, officers, years, seed)`` writes a contract package (officers, events,
assignments) for the period [Jan 1 of ``start_year``, Jan 1 of ``start_year + years``) as it
would be extracted on the first day after the period: nothing reported on or after that day
is in it, and findings due later are still ``pending``. It is fully vectorized (numpy
``numpy.random.Generator``s seeded by ``seed``, so a seed gives byte-identical files) and
written with pyarrow, in chunks of 100,000 officers (``chunk_officers``): memory stays about
2.5 GiB however many officers (1M officers x 10 years: about 100M events). Officers never
interact in the model (units are shared, drawn first), so chunks are independent draws;
an agency of one chunk is the same files as before chunking existed.

Generative model
----------------
Units
    ``clip(officers / 60, 20, 200)`` units, named ``"001"``...: 60% patrol (exposure
    log-normal around 1.0, sigma 0.25), 20% specialized (x1.8), 20% desk (x0.2). Exposure
    scales every event rate. Patrol units are staffed 3x as heavily as desk units.
Officers
    75% are appointed during the 25 years before the period (all active at its start), 25%
    during the period. Each has a hidden propensity ``p``: ``log p`` is normal (sigma 0.5,
    mean -0.125 so E[p] = 1) in the first year and then takes a random walk (step sigma 0.15
    per year). Sex, race and birth year are drawn independently of everything else, so a
    bias audit of a model that finds ``p`` should show near-parity. A fake name and a
    distinct badge number (for the demo's pages) follow from the officer's number and sex.
Careers
    Separation hazard 3.5%/year x ``p0 ** 0.5`` (higher propensity, likelier to leave), from
    the later of appointment and period start. Transfers between units: Poisson, 0.15/year.
    Ranks: POLICE OFFICER from appointment; SERGEANT after 4 years + exponential(mean 15
    years); LIEUTENANT 3 years + exponential(mean 20 years) after that.
Events, per officer-month (Poisson, rate x active days / 365.25)
    Activity, rate ~ exposure: arrest 4.0, call_for_service 6.5, traffic_stop 2.0 per year.
    Misconduct, rate ~ exposure x p(year): complaint 0.25, use_of_force 0.45 per year (see
    ``RATES``); lawsuit 0.01 x exposure x p; criminal_conviction 0.001 x p**2.
    That is about 13-14 events per active officer-year; ``--officers 100000 --years 10``
    gives about 10 million events (about 7.4 active years per officer).
Complaints
    reported a few days after the incident (exponential, mean 5 days; 5% after months).
    Finding ``sustained`` with probability ``sigmoid(logit(0.08) + 0.8 log p)``, else
    not_sustained / unfounded / exonerated / no_finding (45/25/12/18%); ``finding_date`` =
    reported_date + 30 days + gamma(shape 2, scale 150 days) (months to about 2 years); a
    finding due after the period end is ``pending``. Categories use CPD-like codes (e.g.
    ``05A EXCESSIVE FORCE: ...``, ``10J ...``); 10% have none. One officer per case.
Sec. 3(b) records
    lawsuit (filed months after the incident), civil_judgment (25% of lawsuits, same
    case_id, later), criminal_conviction, termination (a share of separations, likelier
    with ``p``, dated on the separation date), decertification (40% of terminations, some
    weeks later), resignation_under_investigation (half of the other separations that
    happen while a complaint of the officer is still open).

The truth (officer-year: propensity, exposure, active days) goes to
``<out>.truth.parquet`` next to the package folder, never inside it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import SEC3B_EVENT_TYPES

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

DAYS_PER_YEAR = 365.25
# events per officer-year at exposure 1 (and propensity 1 for the misconduct kinds)
ACTIVITY_RATES = {"arrest": 4.0, "call_for_service": 6.5, "traffic_stop": 2.0}
RATES = {
    **ACTIVITY_RATES,
    "complaint": 0.25,
    "use_of_force": 0.45,
    "lawsuit": 0.01,
    "criminal_conviction": 0.001,
}
EVENT_TYPES = (*ACTIVITY_RATES, "complaint", "use_of_force", "lawsuit", *SEC3B_EVENT_TYPES)
UNIT_KINDS = {"patrol": (0.6, 1.0, 3.0), "specialized": (0.2, 1.8, 1.5), "desk": (0.2, 0.2, 1.0)}
# kind: (share of units, exposure multiplier, staffing weight)
COMPLAINT_CATEGORIES = (
    ("05A EXCESSIVE FORCE: ARRESTEE - DURING ARREST", 0.12),
    ("05D EXCESSIVE FORCE: NO ARREST", 0.08),
    ("10J OPERATION/PERSONNEL VIOLATION: NEGLECT OF DUTY", 0.18),
    ("03E ILLEGAL SEARCH: ILLEGAL ARREST", 0.14),
    ("01A ARREST/LOCKUP PROCEDURE: IMPROPER PROCESSING", 0.14),
    ("09A VERBAL ABUSE: USE OF PROFANITY", 0.14),
    ("04B LOCKUP PROCEDURES: PRISONER PROPERTY", 0.10),
)  # the remaining 10%: no category
# the concept of each complaint category (events.category_group, docs/contract.md)
COMPLAINT_GROUPS = (
    "excessive_force",
    "excessive_force",
    "procedure",
    "illegal_search_or_arrest",
    "procedure",
    "verbal_abuse",
    "procedure",
)
FORCE_CATEGORIES = (("PHYSICAL FORCE", 0.80), ("TASER", 0.17), ("FIREARM", 0.03))
FINDINGS_OTHER = (
    ("not_sustained", 0.45),
    ("unfounded", 0.25),
    ("exonerated", 0.12),
    ("no_finding", 0.18),
)
SUSTAINED_BASE = 0.08
SUSTAINED_SLOPE = 0.8
OUTCOMES_SUSTAINED = ("REPRIMAND", "1 DAY SUSPENSION", "5 DAY SUSPENSION", "30 DAY SUSPENSION")
RANKS = ("POLICE OFFICER", "SERGEANT", "LIEUTENANT")
RACES = (
    ("WHITE", 0.45),
    ("BLACK", 0.25),
    ("HISPANIC", 0.22),
    ("ASIAN/PACIFIC ISLANDER", 0.06),
    ("NATIVE AMERICAN/ALASKAN NATIVE", 0.02),
)
LOG_P_SIGMA = 0.5
DRIFT_SIGMA = 0.15
# Fake names and badge numbers, for the demo's pages only: a function of the officer's number
# (and sex), drawn from no random stream, so every other column is as it was without them.
# fmt: off
FIRST_NAMES = {
    "F": (
        "Ana", "Beth", "Carmen", "Dana", "Erin", "Fatima", "Grace", "Hana", "Iris", "Joy", "Kara",
        "Lena", "Maya", "Nora", "Olga", "Paula", "Rosa", "Sara", "Tanya", "Vera",
    ),
    "M": (
        "Adam", "Ben", "Carlos", "Dev", "Eric", "Frank", "Gus", "Hugo", "Ivan", "Jon", "Karl",
        "Luis", "Marc", "Nate", "Omar", "Paul", "Raj", "Sam", "Theo", "Victor", "Wes", "Yusuf",
    ),
}
LAST_NAMES = (
    "Abbott", "Baker", "Castillo", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ibarra",
    "Jensen", "Kim", "Lopez", "Murphy", "Nguyen", "Okafor", "Patel", "Quinn", "Reyes", "Schultz",
    "Torres", "Ueda", "Vasquez", "Walsh", "Xu", "Young", "Zielinski", "Brooks", "Carter", "Dunn",
    "Ellis", "Flores", "Grant", "Holt", "Jackson", "Kowalski", "Lewis", "Morales", "Novak",
    "Ortiz", "Price",
)
# fmt: on
CHUNK_OFFICERS = 100_000  # officers generated and written at a time


@dataclass
class SynthReport:
    """Counts of what :func:`synthesize` wrote, and where."""

    out: Path
    truth: Path
    officers: int = 0
    units: int = 0
    events: int = 0
    assignments: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    active_officer_years: float = 0.0
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"synthetic agency -> {self.out} (truth: {self.truth}) in {self.seconds:.1f} s",
            f"  officers: {self.officers:,}  units: {self.units:,}  "
            f"assignments: {self.assignments:,}",
            f"  events: {self.events:,} ({self.events / max(self.active_officer_years, 1e-9):.1f}"
            f" per active officer-year, {self.active_officer_years:,.0f} officer-years)",
        ]
        lines += [f"    {k}: {v:,}" for k, v in self.events_by_type.items()]
        return "\n".join(lines)


def truth_path(out: Path) -> Path:
    """Where the hidden truth of the package in ``out`` goes: next to it, not inside."""
    out = Path(out)
    return out.parent / f"{out.name}.truth.parquet"


def _days(year: int, month: int = 1) -> int:
    import numpy as np

    return int(np.datetime64(f"{year:04d}-{month:02d}", "D").astype(np.int64))


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    """Indices into ``table`` drawn with its probabilities; len(table) means 'none'."""
    import numpy as np

    p = np.array([w for _, w in table])
    p = np.append(p, max(0.0, 1.0 - p.sum()))
    return rng.choice(len(p), size=n, p=p / p.sum())


def _spells(
    owner: np.ndarray, start: np.ndarray, value: np.ndarray, stop: np.ndarray, end_day: int
) -> tuple[np.ndarray, ...]:
    """Turn change points (owner, start day, value) into spells [start, next start - 1].

    The last spell of an owner ends at ``stop[owner]`` (separation) or is open (-1) when
    that is on or after ``end_day``. Zero-length spells (two changes on one day) are dropped.
    """
    import numpy as np

    order = np.lexsort((start, owner))
    owner, start, value = owner[order], start[order], value[order]
    nxt_same = np.append(owner[1:] == owner[:-1], False)
    nxt_start = np.append(start[1:], 0)
    last_stop = stop[owner]
    end = np.where(nxt_same, nxt_start - 1, np.where(last_stop < end_day, last_stop, -1))
    keep = (end == -1) | (end >= start)
    return owner[keep], start[keep], value[keep], end[keep]


def _date_array(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    return pa.array(days.astype(np.int32), type=pa.int32(), mask=null).cast(pa.date32())


def _labels(codes: np.ndarray, labels: tuple[str, ...] | list[str]) -> pa.Array:
    """Strings from codes into ``labels``; a code outside it is a missing value."""
    import numpy as np
    import pyarrow as pa

    codes = np.asarray(codes)
    null = (codes < 0) | (codes >= len(labels))
    idx = pa.array(np.where(null, 0, codes).astype(np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(labels), pa.string())).cast(
        pa.string()
    )


def _schema(table: str) -> pa.Schema:
    """The normalized schema (with pandas metadata) that ews.contract writes; events also
    carry the optional ``category_group`` (the concept of each category, docs/contract.md),
    officers the optional name and badge columns."""
    import pandas as pd

    from ews.contract import CATEGORY_GROUP, DISPLAY_COLUMNS, arrow_table, empty_table

    frame = empty_table(table)
    if table == "events":
        frame[CATEGORY_GROUP] = pd.Series([], dtype="string")
    if table == "officers":
        for col in DISPLAY_COLUMNS:
            frame[col] = pd.Series([], dtype="string")
    return arrow_table(frame, table).schema


def _names(numbers: np.ndarray, female: np.ndarray, digits: int) -> dict[str, pa.Array]:
    """Plausible fake names and distinct badge numbers for officers numbered ``numbers``
    (1-based): a badge is the number times a prime modulo a power of ten (a bijection)."""
    import numpy as np
    import pyarrow as pa

    k = numbers.astype(np.int64)
    firsts = np.where(
        female,
        np.array(FIRST_NAMES["F"])[(k * 7) % len(FIRST_NAMES["F"])],
        np.array(FIRST_NAMES["M"])[(k * 7) % len(FIRST_NAMES["M"])],
    )
    lasts = np.array(LAST_NAMES)[(k * 13 + k // len(LAST_NAMES)) % len(LAST_NAMES)]
    badges = np.char.zfill(((k * 7919) % 10**digits).astype(str), digits)
    return {
        "name": pa.array(np.char.add(np.char.add(firsts, " "), lasts)),
        "badge": pa.array(badges),
    }


def _write(table: pa.Table, folder: Path, name: str, fmt: str) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = table.cast(_schema(name))
    if fmt == "parquet":
        pq.write_table(table, folder / f"{name}.parquet")
    else:
        options = pcsv.WriteOptions(quoting_style="needed")
        pcsv.write_csv(table, folder / f"{name}.csv", write_options=options)


class _Sink:
    """One output file written chunk by chunk (Parquet row groups or CSV rows after one
    header); a package made of a single chunk is written in one call, as before chunks."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str, chunked: bool) -> None:
        self.path, self.schema, self.fmt, self.chunked = path, schema, fmt, chunked
        self.writer: Any = None
        self.whole: pa.Table | None = None

    def add(self, table: pa.Table) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        table = table.cast(self.schema)
        if not self.chunked:
            self.whole = table
        elif self.writer is None:
            if self.fmt == "parquet":
                self.writer = pq.ParquetWriter(self.path, self.schema)
            else:
                options = pcsv.WriteOptions(quoting_style="needed")
                self.writer = pcsv.CSVWriter(self.path, self.schema, write_options=options)
        if self.writer is not None:
            self.writer.write_table(table)

    def close(self) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if self.writer is not None:
            self.writer.close()
        elif self.whole is not None and self.fmt == "parquet":
            pq.write_table(self.whole, self.path)
        elif self.whole is not None:
            options = pcsv.WriteOptions(quoting_style="needed")
            pcsv.write_csv(self.whole, self.path, write_options=options)


@dataclass
class _Agency:
    """What every chunk of officers shares: the period, the units, the id formats and the
    running numbers of events and cases."""

    start_year: int
    years: int
    S: int  # first day of the period (days since 1970-01-01)
    E: int  # first day after it
    width: int  # digits of an officer id
    unit_exposure: np.ndarray
    unit_weight: np.ndarray
    unit_names: list[str]
    next_event: int = 1
    next_case: dict[str, int] = field(default_factory=lambda: {"CR": 0, "LS": 0})
    badge_digits: int = 5  # digits of a badge number: more than the officers need


def synthesize(
    out: Path,
    officers: int,
    years: int,
    seed: int,
    start_year: int = 2010,
    fmt: str = "parquet",
    quiet: bool = False,
    chunk_officers: int = CHUNK_OFFICERS,
) -> SynthReport:
    """Write a synthetic agency package to ``out`` and its hidden truth next to it.

    ``officers`` officers over ``years`` years from Jan 1 of ``start_year``; ``fmt`` is
    ``parquet`` (normalized Parquet, as ``ews.contract.write_normalized`` writes) or ``csv``.
    Officers are generated and written in chunks of ``chunk_officers`` (memory grows with
    the chunk, about 2 GiB per 100,000 officers over 10 years, not with the agency): the
    first chunk continues the draws of ``seed`` after the units, chunk k draws from
    ``(seed, k)``, so an agency of one chunk is the same files as before chunks existed.
    One progress line per stage goes to stderr unless ``quiet``. Returns the counts.
    """
    import numpy as np
    import pyarrow.parquet as pq

    if officers < 1 or years < 1:
        raise ValueError(f"officers and years must be positive, got {officers} and {years}")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    if not 1900 < start_year < 2200:
        raise ValueError(f"start_year {start_year} is not a plausible year")
    if chunk_officers < 1:
        raise ValueError(f"chunk_officers must be positive, got {chunk_officers}")
    out = Path(out)
    t0 = time.perf_counter()
    clock = [t0]
    prefix = [""]

    def stage(msg: str) -> None:
        now = time.perf_counter()
        if not quiet:
            print(f"[synth] {prefix[0]}{msg} ({now - clock[0]:.1f} s)", file=sys.stderr, flush=True)
        clock[0] = now

    rng = np.random.default_rng(seed)
    n = int(officers)
    report = SynthReport(out=out, truth=truth_path(out))

    # ---- units ---------------------------------------------------------------------------
    n_units = int(np.clip(round(n / 60), 20, 200))
    kinds = list(UNIT_KINDS)
    shares = np.array([UNIT_KINDS[k][0] for k in kinds])
    unit_kind = np.repeat(np.arange(len(kinds)), np.round(shares * n_units).astype(int))
    unit_kind = np.resize(unit_kind, n_units)  # fix rounding to exactly n_units
    unit_exposure = np.array([UNIT_KINDS[kinds[k]][1] for k in unit_kind]) * rng.lognormal(
        0.0, 0.25, n_units
    )
    unit_weight = np.array([UNIT_KINDS[kinds[k]][2] for k in unit_kind])
    unit_weight = unit_weight / unit_weight.sum()
    report.units = n_units
    agency = _Agency(
        start_year=start_year,
        years=years,
        S=_days(start_year),
        E=_days(start_year + years),
        width=max(6, len(str(n))),
        badge_digits=max(5, len(str(n)) + 1),
        unit_exposure=unit_exposure,
        unit_weight=unit_weight,
        unit_names=[f"{u + 1:03d}" for u in range(n_units)],
    )

    out.mkdir(parents=True, exist_ok=True)
    for name in ("officers", "events", "assignments"):
        for suffix in (".parquet", ".csv", ".csv.gz"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    bounds = list(range(0, n, chunk_officers)) + [n]
    chunked = len(bounds) > 2
    ext = "parquet" if fmt == "parquet" else "csv"
    sinks = {
        name: _Sink(out / f"{name}.{ext}", _schema(name), fmt, chunked)
        for name in ("officers", "assignments", "events")
    }
    truth_sink = _Sink(report.truth, _truth_schema(), "parquet", chunked)
    try:
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=False)):
            if chunked:
                prefix[0] = f"officers {lo + 1:,}-{hi:,}: "
            chunk_rng = rng if k == 0 else np.random.default_rng([seed, k])
            tables = _chunk(chunk_rng, agency, lo, hi, report, stage)
            for name, sink in sinks.items():
                sink.add(tables[name])
            truth_sink.add(tables["truth"])
            del tables
        for sink in (*sinks.values(), truth_sink):
            sink.close()
    except BaseException:
        for sink in (*sinks.values(), truth_sink):
            if sink.writer is not None:
                sink.writer.close()
        raise
    del pq
    report.seconds = time.perf_counter() - t0
    prefix[0] = ""
    stage(f"written to {out} ({fmt}) and {report.truth.name}")
    return report


def _truth_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("officer_id", pa.string()),
            ("year", pa.int32()),
            ("propensity", pa.float64()),
            ("exposure", pa.float64()),
            ("active_days", pa.int32()),
        ]
    )


def _chunk(
    rng: np.random.Generator,
    agency: _Agency,
    i0: int,
    i1: int,
    report: SynthReport,
    stage: Callable[[str], None],
) -> dict[str, pa.Table]:
    """Officers ``i0`` .. ``i1 - 1`` (0-based) of the agency, their assignments, events and
    truth, as Arrow tables; adds their counts to ``report``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = i1 - i0
    S, E, years, start_year = agency.S, agency.E, agency.years, agency.start_year
    unit_exposure, unit_weight = agency.unit_exposure, agency.unit_weight
    n_units = unit_weight.size

    # ---- officers ------------------------------------------------------------------------
    during = rng.random(n) < 0.25
    appt = np.where(
        during,
        S + (rng.random(n) * max(E - S - 30, 1)).astype(np.int64),
        S - 1 - (rng.random(n) * 25 * DAYS_PER_YEAR).astype(np.int64),
    )
    log_p = rng.normal(-(LOG_P_SIGMA**2) / 2, LOG_P_SIGMA, n)
    steps = rng.normal(0.0, DRIFT_SIGMA, (n, years))
    steps[:, 0] = 0.0
    prop = np.exp(log_p[:, None] + np.cumsum(steps, axis=1))  # (n, years)
    hazard = 0.035 * np.exp(log_p) ** 0.5
    sep = np.maximum(appt, S) + np.ceil(rng.exponential(1.0 / hazard) * DAYS_PER_YEAR).astype(
        np.int64
    )
    separated = sep < E
    stop = np.where(separated, sep, E)  # first day not active
    appt_year = 1970 + (appt / DAYS_PER_YEAR).astype(int)
    birth_year = appt_year - rng.integers(21, 36, n)
    female = rng.random(n) < 0.2
    race = _choice(rng, RACES, n)
    numbers = np.arange(i0 + 1, i1 + 1).astype(str)
    officer_ids = pa.array(np.char.add("O", np.char.zfill(numbers, agency.width)))
    report.officers += n
    stage(f"{n:,} officers, {n_units} units")

    # ---- assignments: units (transfers) and ranks (promotions) ----------------------------
    lo = np.maximum(appt, S - int(5 * DAYS_PER_YEAR))
    span = np.maximum(stop - lo, 0)
    k_tr = rng.poisson(0.15 * span / DAYS_PER_YEAR)
    tr_owner = np.repeat(np.arange(n), k_tr)
    tr_day = lo[tr_owner] + (rng.random(tr_owner.size) * span[tr_owner]).astype(np.int64)
    first_unit = rng.choice(n_units, size=n, p=unit_weight)
    tr_unit = rng.choice(n_units, size=tr_owner.size, p=unit_weight)
    u_owner = np.concatenate([np.arange(n), tr_owner])
    u_start = np.concatenate([appt, tr_day])
    u_value = np.concatenate([first_unit, tr_unit])
    u_owner, u_start, u_value, u_end = _spells(u_owner, u_start, u_value, stop, E)

    sgt = appt + ((4 + rng.exponential(15.0, n)) * DAYS_PER_YEAR).astype(np.int64)
    lt = sgt + ((3 + rng.exponential(20.0, n)) * DAYS_PER_YEAR).astype(np.int64)
    has_sgt, has_lt = sgt < stop, lt < stop
    r_owner = np.concatenate([np.arange(n), np.flatnonzero(has_sgt), np.flatnonzero(has_lt)])
    r_start = np.concatenate([appt, sgt[has_sgt], lt[has_lt]])
    r_value = np.concatenate(
        [np.zeros(n, int), np.ones(has_sgt.sum(), int), np.full(has_lt.sum(), 2)]
    )
    r_owner, r_start, r_value, r_end = _spells(r_owner, r_start, r_value, stop, E)
    assignments = pa.table(
        {
            "officer_id": officer_ids.take(pa.array(np.concatenate([u_owner, r_owner]))),
            "kind": _labels(
                np.concatenate([np.zeros(u_owner.size, int), np.ones(r_owner.size, int)]),
                ["unit", "rank"],
            ),
            "value": pc.if_else(
                pa.array(
                    np.concatenate([np.ones(u_owner.size, bool), np.zeros(r_owner.size, bool)])
                ),
                _labels(np.concatenate([u_value, np.full(r_owner.size, -1)]), agency.unit_names),
                _labels(np.concatenate([np.full(u_owner.size, -1), r_value]), RANKS),
            ),
            "start_date": _date_array(np.concatenate([u_start, r_start])),
            "end_date": _date_array(
                np.concatenate([u_end, r_end]), null=np.concatenate([u_end, r_end]) == -1
            ),
        }
    )
    report.assignments += assignments.num_rows
    stage(f"{assignments.num_rows:,} assignments (units and ranks)")

    # ---- officer-months: active days and exposure ----------------------------------------
    n_months = 12 * years
    month_start = np.array(
        [_days(start_year + m // 12, m % 12 + 1) for m in range(n_months + 1)], dtype=np.int64
    )
    ms, me = month_start[:-1], month_start[1:]
    cell_lo = np.maximum(ms[None, :], appt[:, None])
    cell_hi = np.minimum(me[None, :], stop[:, None])
    active = cell_hi > cell_lo
    c_off, c_month = np.nonzero(active)
    c_lo, c_hi = cell_lo[active], cell_hi[active]
    del cell_lo, cell_hi, active
    c_days = c_hi - c_lo
    mid = (c_lo + c_hi) // 2
    key_scale = np.int64(1 << 24)
    spell_key = u_owner.astype(np.int64) * key_scale + (u_start - S + (1 << 23))
    cell_key = c_off.astype(np.int64) * key_scale + (mid - S + (1 << 23))
    c_unit = u_value[np.searchsorted(spell_key, cell_key, side="right") - 1]
    c_exp = unit_exposure[c_unit]
    c_year = c_month // 12
    c_prop = prop[c_off, c_year]
    years_active = c_days / DAYS_PER_YEAR
    report.active_officer_years += float(years_active.sum())
    stage(f"{c_off.size:,} active officer-months")

    # ---- events ---------------------------------------------------------------------------
    parts: dict[str, dict[str, Any]] = {}

    def draw(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Events per cell ~ Poisson(lam); returns the cell of each event and its day."""
        cells = np.repeat(np.arange(lam.size), rng.poisson(lam))
        day = c_lo[cells] + (rng.random(cells.size) * c_days[cells]).astype(np.int64)
        return cells, day

    def add(kind: str, off: np.ndarray, day: np.ndarray, **cols: Any) -> None:
        parts[kind] = {"off": off, "day": day, **cols}

    cells, day = draw(sum(ACTIVITY_RATES.values()) * c_exp * years_active)
    act_p = np.array(list(ACTIVITY_RATES.values()))
    act_type = rng.choice(len(act_p), size=cells.size, p=act_p / act_p.sum())
    for i, kind in enumerate(ACTIVITY_RATES):
        sel = act_type == i
        add(kind, c_off[cells[sel]], day[sel])
    del act_type
    stage(f"{cells.size:,} activity events")

    risk = c_exp * c_prop * years_active
    # complaints: reported days after; findings months later
    cells, day = draw(RATES["complaint"] * risk)
    late = rng.random(cells.size) < 0.05
    delay = np.where(late, rng.exponential(120.0, cells.size), rng.exponential(5.0, cells.size))
    rep = day + delay.astype(np.int64)
    keep = rep < E
    cells, day, rep = cells[keep], day[keep], rep[keep]
    p = c_prop[cells]
    logit = np.log(SUSTAINED_BASE / (1 - SUSTAINED_BASE)) + SUSTAINED_SLOPE * np.log(p)
    sustained = rng.random(cells.size) < 1.0 / (1.0 + np.exp(-logit))
    other = _choice(rng, FINDINGS_OTHER, cells.size)
    finding_labels = ("sustained",) + tuple(f for f, _ in FINDINGS_OTHER) + ("pending",)
    finding = np.where(sustained, 0, 1 + np.minimum(other, len(FINDINGS_OTHER) - 1))
    fdate = rep + 30 + rng.gamma(2.0, 150.0, cells.size).astype(np.int64)
    pending = fdate >= E
    finding = np.where(pending, len(finding_labels) - 1, finding)
    outcome_labels = ("NO ACTION TAKEN",) + OUTCOMES_SUSTAINED
    outcome = np.where(finding == 0, 1 + rng.integers(0, len(OUTCOMES_SUSTAINED), cells.size), 0)
    outcome = np.where(pending, -1, outcome)
    add(
        "complaint",
        c_off[cells],
        day,
        rep=rep,
        case=agency.next_case["CR"] + np.arange(cells.size),
        case_prefix="CR",
        category=_choice(rng, COMPLAINT_CATEGORIES, cells.size),
        categories=tuple(c for c, _ in COMPLAINT_CATEGORIES),
        groups=COMPLAINT_GROUPS,
        finding=finding,
        fdate=np.where(pending, -1, fdate),
        outcome=outcome,
        outcomes=outcome_labels,
    )
    agency.next_case["CR"] += cells.size
    open_from, open_to, open_off = rep, np.where(pending, E, fdate), c_off[cells]

    cells, day = draw(RATES["use_of_force"] * risk)
    add(
        "use_of_force",
        c_off[cells],
        day,
        category=_choice(rng, FORCE_CATEGORIES, cells.size),
        categories=tuple(c for c, _ in FORCE_CATEGORIES),
    )

    # lawsuits (filed months later) and civil judgments (later still, same case)
    cells, day = draw(RATES["lawsuit"] * risk)
    rep = day + rng.gamma(2.0, 120.0, cells.size).astype(np.int64)
    keep = rep < E
    cells, day, rep = cells[keep], day[keep], rep[keep]
    ls_first = agency.next_case["LS"]
    add(
        "lawsuit",
        c_off[cells],
        day,
        rep=rep,
        case=ls_first + np.arange(cells.size),
        case_prefix="LS",
    )
    agency.next_case["LS"] += cells.size
    judged = rng.random(cells.size) < 0.25
    jday = rep + rng.gamma(2.0, 200.0, cells.size).astype(np.int64)
    judged &= jday < E
    add(
        "civil_judgment",
        c_off[cells[judged]],
        jday[judged],
        case=ls_first + np.flatnonzero(judged),
        case_prefix="LS",
        outcome=np.zeros(judged.sum(), int),
        outcomes=("JUDGMENT FOR PLAINTIFF",),
    )

    cells, day = draw(RATES["criminal_conviction"] * c_prop**2 * years_active)
    rep = day + rng.integers(60, 366, cells.size)
    keep = rep < E
    add("criminal_conviction", c_off[cells[keep]], day[keep], rep=rep[keep])

    # separations: terminations, decertifications, resignations under investigation
    sep_off = np.flatnonzero(separated)
    sep_year = np.clip((sep[sep_off] - S) // DAYS_PER_YEAR, 0, years - 1).astype(int)
    p_sep = prop[sep_off, sep_year]
    logit = np.log(0.06 / 0.94) + 1.2 * np.log(p_sep)
    terminated = rng.random(sep_off.size) < 1.0 / (1.0 + np.exp(-logit))
    t_off = sep_off[terminated]
    add(
        "termination",
        t_off,
        sep[t_off],
        outcome=np.zeros(t_off.size, int),
        outcomes=("TERMINATED",),
    )
    d_day = sep[t_off] + rng.gamma(2.0, 30.0, t_off.size).astype(np.int64)
    decert = (rng.random(t_off.size) < 0.4) & (d_day < E)
    add("decertification", t_off[decert], d_day[decert])
    # an officer separating while one of his complaints is open (reported, no final finding)
    open_at_sep = (open_from < stop[open_off]) & (open_to > stop[open_off]) & separated[open_off]
    under = np.zeros(n, bool)
    under[open_off[open_at_sep]] = True
    under[t_off] = False
    rui = np.flatnonzero(under)
    rui = rui[rng.random(rui.size) < 0.5]
    add("resignation_under_investigation", rui, sep[rui])
    stage("misconduct, findings and Sec. 3(b) records")

    # ---- assemble: one Arrow chunk per event type (rows grouped by type, then officer and
    # month; no global sort: at 10M rows the gather would cost more than the generation) ----
    schema = _schema("events")
    chunks: list[pa.Table] = []
    first_id = agency.next_event
    for kind in EVENT_TYPES:
        part = parts[kind]
        m = part["off"].size
        day = _date_array(part["day"])

        def text(key: str, labels: tuple[str, ...] | None, part: dict[str, Any] = part) -> pa.Array:
            if key not in part or labels is None:
                return pa.nulls(part["off"].size, pa.string())
            return _labels(part[key], labels)

        if "case" in part:
            numbers = pa.array(part["case"] + 1).cast(pa.string())
            case = pc.binary_join_element_wise(part["case_prefix"], numbers, "")
        else:
            case = pa.nulls(m, pa.string())
        numbers = pa.array(np.arange(first_id, first_id + m)).cast(pa.string())
        chunk = pa.table(
            {
                "event_id": pc.binary_join_element_wise("e", numbers, ""),
                "officer_id": officer_ids.take(pa.array(part["off"])),
                "event_type": _labels(np.zeros(m, np.int8), (kind,)),
                "event_date": day,
                "reported_date": _date_array(part["rep"]) if "rep" in part else day,
                "case_id": case,
                "category": text("category", part.get("categories")),
                "finding": text("finding", finding_labels),
                "finding_date": _date_array(part["fdate"], null=part["fdate"] < 0)
                if "fdate" in part
                else pa.nulls(m, pa.date32()),
                "outcome": text("outcome", part.get("outcomes")),
                "category_group": text("category", part.get("groups")),
            }
        )
        chunks.append(chunk.cast(schema))
        first_id += m
        report.events_by_type[kind] = report.events_by_type.get(kind, 0) + m
    parts.clear()
    agency.next_event = first_id
    events = pa.concat_tables(chunks)
    report.events += events.num_rows
    stage(f"{events.num_rows:,} events assembled")

    officers_t = pa.table(
        {
            "officer_id": officer_ids,
            "appointed_date": _date_array(appt),
            "separation_date": _date_array(sep, null=~separated),
            "birth_year": pa.array(birth_year.astype(np.int32)),
            "sex": _labels(female.astype(int), ["MALE", "FEMALE"]),
            "race": _labels(race, [r for r, _ in RACES]),
            **_names(np.arange(i0 + 1, i1 + 1), female, agency.badge_digits),
        }
    )

    # ---- the hidden truth, next to the package ----------------------------------------------
    oy = c_off.astype(np.int64) * years + c_year
    days_oy = np.bincount(oy, weights=c_days, minlength=n * years)
    exp_oy = np.bincount(oy, weights=c_days * c_exp, minlength=n * years)
    with np.errstate(invalid="ignore", divide="ignore"):
        exp_oy = np.where(days_oy > 0, exp_oy / days_oy, np.nan)
    truth = pa.table(
        {
            "officer_id": officer_ids.take(pa.array(np.repeat(np.arange(n), years))),
            "year": pa.array(
                np.tile(np.arange(start_year, start_year + years), n).astype(np.int32)
            ),
            "propensity": pa.array(prop.reshape(-1)),
            "exposure": pa.array(exp_oy),
            "active_days": pa.array(days_oy.astype(np.int32)),
        }
    )
    return {"officers": officers_t, "assignments": assignments, "events": events, "truth": truth}
