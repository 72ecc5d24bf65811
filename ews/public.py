"""The Sec. 3(c) public release: aggregated, anonymized counts with small-cell suppression.

Sec. 3(c) of the Executive Order on Safe Policing for Safe Communities asks for public,
aggregated and anonymized data. :func:`build_release` reads each agency's newest snapshot
and counts, per agency and calendar year of ``event_date``:

- ``complaints``: complaint allegations by category and finding;
- ``use_of_force``: use-of-force reports by category and finding;
- ``sec3b_records``: terminations, decertifications, criminal convictions, civil judgments
  and resignations under investigation (``ews.contract.SEC3B_EVENT_TYPES``) by year.

The unit of count is the event row of the data contract: one complaint naming three
officers is three allegations (three rows sharing a ``case_id``). Counting distinct cases
instead would break additivity (a case can carry several categories and findings, so its
cells would not sum to the totals) and with it the suppression guarantee below.

Every table is a two-way table published with its row totals, column totals and grand
total (the ``all`` rows). No officer, case, event or unit identifier and no date finer than
the year is published: the only labels are the agency, the year, the category as the agency
codes it, the finding and the event type; a category label equal to an identifier of the
input is published as ``other``.

Small-cell protection (:func:`protect`): no published count lies in ``1 .. min_count - 1``
(default: only 0 or at least 11 are published; ``s`` marks a suppressed number).

1. Primary suppression: every cell and total in ``1 .. min_count - 1``.
2. Complementary suppression, greedy: every line of the table (a row with its total, a
   column with its total, the totals with the grand total) that has one suppressed number
   gets a second one: an inner cell of that line (a total only when none is left), a
   positive count before a zero, preferring one whose crossing line also needs a second,
   then the smallest.
3. Audit: an attacker knows every published number, that each line sums to its total and
   that counts are non-negative. A suppressed number is pinned when those constraints allow
   it one value only. :func:`pinned_cells` finds pinned numbers exactly and fast (a number
   can move iff it lies on a cycle of suppressed numbers, zeros only moving up); for each,
   one more number of its lines is suppressed and steps 2-3 run again. The final pattern is
   certified by linear programming (``scipy.optimize.linprog``): :func:`certify` shows two
   feasible values for every suppressed number, and any leak it found would send the loop
   round again. :func:`audit` computes each suppressed number's exact minimum and maximum
   (two LPs per number), as an attacker would.

The constraint matrix of a two-way table with margins is totally unimodular, so the LP's
bounds are integers and equal those of an integer program: an attacker who adds
integrality learns nothing more (the tests check this with ``integrality``). Published
totals are the true totals, never perturbed.

No well-kept Python library for cell suppression was found (``pytauargus`` on PyPI is
new, with no track record); the greedy pattern plus an exact audit is small and checkable.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ews.contract import DISPLAY_COLUMNS, FINDINGS, SEC3B_EVENT_TYPES

if TYPE_CHECKING:
    import pandas as pd

    from ews.contract import Package
    from ews.store import Workspace

SUPPRESSED = "s"
ALL = "all"
NONE_RECORDED = "none recorded"
OTHER = "other"
DEFAULT_MIN_COUNT = 11
FINDING_COLUMNS = (*FINDINGS, NONE_RECORDED)
TABLE_FILES = ("complaints", "use_of_force", "sec3b_records")
TABLE_COLUMNS = {
    "complaints": ("agency", "year", "category", "finding", "count"),
    "use_of_force": ("agency", "year", "category", "finding", "count"),
    "sec3b_records": ("agency", "event_type", "year", "count"),
}
# a pinned number: the attacker's interval is narrower than one count
_MIN_WIDTH = 0.5


class PublicExportError(ValueError):
    """The release cannot be written as asked (an output folder in use, no data)."""


# -- suppression on one two-way table ------------------------------------------------------


def augment(counts: np.ndarray) -> np.ndarray:
    """The ``(r + 1) x (c + 1)`` grid of a table with its margins: inner cells, the row
    totals in the last column, the column totals in the last row, the grand total in the
    corner. Each row and each column of the grid is a *line*: its entries but the last sum to
    the last."""
    counts = np.asarray(counts, dtype=np.int64)
    r, c = counts.shape
    grid = np.zeros((r + 1, c + 1), dtype=np.int64)
    grid[:r, :c] = counts
    grid[:r, c] = counts.sum(axis=1)
    grid[r, :c] = counts.sum(axis=0)
    grid[r, c] = counts.sum()
    return grid


def _lines(shape: tuple[int, int]) -> list[list[tuple[int, int]]]:
    """Every line of a grid: its positions, the total last."""
    n_rows, n_cols = shape
    rows = [[(i, j) for j in range(n_cols)] for i in range(n_rows)]
    cols = [[(i, j) for i in range(n_rows)] for j in range(n_cols)]
    return rows + cols


def primary_suppression(grid: np.ndarray, min_count: int) -> np.ndarray:
    """The numbers of the grid in ``1 .. min_count - 1``."""
    mask: np.ndarray = (grid >= 1) & (grid < min_count)
    return mask


def _kind(grid: np.ndarray, pos: tuple[int, int]) -> int:
    """0 an inner cell, 1 a row or column total, 2 the grand total."""
    return int(pos[0] == grid.shape[0] - 1) + int(pos[1] == grid.shape[1] - 1)


def _cost(
    grid: np.ndarray, mask: np.ndarray, pos: tuple[int, int]
) -> tuple[int, int, int, int, int]:
    """Order of preference for a complementary suppression (lowest first): an inner cell
    before a total, the grand total last; a positive count before a zero (a zero can only
    rise, and one in a line whose published total is 0 cannot move at all); a number whose
    crossing line also holds a single suppressed number (one suppression then mends two
    lines); the smallest count; a fixed tie-break."""
    i, j = pos
    lonely = int(mask[i, :].sum() == 1) + int(mask[:, j].sum() == 1)
    value = int(grid[i, j])
    return (_kind(grid, pos), int(value == 0), -lonely, value, i * grid.shape[1] + j)


def complete_lines(grid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Complementary suppression: until no line of the grid holds exactly one suppressed
    number, suppress the cheapest other number (:func:`_cost`) of such a line."""
    mask = mask.copy()
    lines = _lines(grid.shape)
    changed = True
    while changed:
        changed = False
        for line in lines:
            if sum(mask[p] for p in line) != 1:
                continue
            free = [p for p in line if not mask[p]]
            mask[min(free, key=lambda p: _cost(grid, mask, p))] = True
            changed = True
    return mask


@dataclass(frozen=True)
class Interval:
    """Values one suppressed number can take under the published numbers, the lines' sums
    and non-negativity: from :func:`audit` the least and the greatest (``high`` may be
    infinite), from :func:`certify` two that feasible solutions reach. Pinned: one value."""

    pos: tuple[int, int]
    value: int
    low: float
    high: float

    @property
    def pinned(self) -> bool:
        return self.high - self.low < _MIN_WIDTH


def _edge(shape: tuple[int, ...], pos: tuple[int, int]) -> tuple[int, int]:
    """A grid number as an edge ``(tail, head)`` of the table's network.

    Nodes ``0 .. n_rows - 1`` are the grid's rows, the next ``n_cols`` its columns. With
    the totals row's and the inner columns' equations negated, every number has +1 in one
    equation and -1 in the other, so the lines' sums are flow conservation and an unknown
    change of the suppressed numbers is a circulation on their edges (the matrix is a
    network matrix: totally unimodular)."""
    n_rows, n_cols = shape
    i, j = pos
    in_row = (1 if j < n_cols - 1 else -1) * (1 if i < n_rows - 1 else -1)
    row, col = i, n_rows + j
    return (col, row) if in_row > 0 else (row, col)


def pinned_cells(grid: np.ndarray, mask: np.ndarray) -> list[tuple[int, int]]:
    """The suppressed numbers an attacker can recover exactly (a fast exact test; the LP of
    :func:`audit` is the certificate).

    A suppressed number can move, with every line still summing and no count negative, iff
    it lies on a cycle of suppressed numbers that it may travel: a positive number either
    way, a zero only upwards (a conformal cycle of the circulation)."""
    unknowns = [(int(i), int(j)) for i, j in zip(*np.nonzero(mask), strict=True)]
    edges = [_edge(grid.shape, p) for p in unknowns]

    def reaches(source: int, target: int, skip: int) -> bool:
        arcs: dict[int, list[int]] = {}
        for k, (tail, head) in enumerate(edges):
            if k == skip:
                continue
            arcs.setdefault(tail, []).append(head)
            if grid[unknowns[k]] > 0:
                arcs.setdefault(head, []).append(tail)
        seen, todo = {source}, [source]
        while todo:
            for nxt in arcs.get(todo.pop(), []):
                if nxt == target:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    pinned = []
    for k, (tail, head) in enumerate(edges):
        up = reaches(head, tail, k)
        down = grid[unknowns[k]] > 0 and reaches(tail, head, k)
        if not (up or down):
            pinned.append(unknowns[k])
    return pinned


def _components(grid: np.ndarray, mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """The suppressed numbers in groups that share no line (connected parts of the
    network): the attacker's system splits into one independent system per group."""
    parent = list(range(sum(grid.shape)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    unknowns = [(int(i), int(j)) for i, j in zip(*np.nonzero(mask), strict=True)]
    for p in unknowns:
        tail, head = _edge(grid.shape, p)
        parent[find(tail)] = find(head)
    groups: dict[int, list[tuple[int, int]]] = {}
    for p in unknowns:
        groups.setdefault(find(_edge(grid.shape, p)[0]), []).append(p)
    return list(groups.values())


def _system(
    grid: np.ndarray, mask: np.ndarray, unknowns: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's linear system over ``unknowns`` (suppressed numbers that share lines
    with no other suppressed number): one equation per line holding one of them, published
    numbers moved to the right-hand side."""
    index = {p: k for k, p in enumerate(unknowns)}
    rows_a: list[np.ndarray] = []
    rhs: list[float] = []
    for line in _lines(grid.shape):
        *parts, total = line
        if not any(p in index for p in line):
            continue
        coef = np.zeros(len(unknowns))
        const = 0.0
        for p, sign in [*((q, 1.0) for q in parts), (total, -1.0)]:
            if mask[p]:
                coef[index[p]] += sign
            else:
                const += sign * float(grid[p])
        rows_a.append(coef)
        rhs.append(-const)
    return np.array(rows_a), np.array(rhs)


def audit(grid: np.ndarray, mask: np.ndarray, integral: bool = False) -> list[Interval]:
    """For every suppressed number of the grid, the minimum and maximum of its value that an
    attacker can derive by linear programming from the published numbers: every line sums
    to its total, counts are non-negative (``integral``: and whole, an integer program).
    One ``scipy.optimize.linprog`` per bound, over the number's group (:func:`_components`)."""
    from scipy.optimize import linprog

    out = []
    for unknowns in _components(grid, mask):
        a_eq, b_eq = _system(grid, mask, unknowns)
        n = len(unknowns)
        for k, pos in enumerate(unknowns):
            objective = np.zeros(n)
            objective[k] = 1.0
            ends = []
            for sign in (1.0, -1.0):
                res = linprog(
                    sign * objective,
                    A_eq=a_eq,
                    b_eq=b_eq,
                    bounds=[(0, None)] * n,
                    method="highs",
                    integrality=np.ones(n) if integral else None,
                )
                if sign < 0 and res.status in (3, 4):  # the minimum was found (feasible),
                    ends.append(float("inf"))  # so unbounded; HiGHS says 4 for a MILP
                elif res.status != 0:
                    raise RuntimeError(f"the suppression audit failed at {pos}: {res.message}")
                else:
                    ends.append(sign * float(res.fun))
            out.append(Interval(pos, int(grid[pos]), ends[0], ends[1]))
    return sorted(out, key=lambda iv: iv.pos)


def certify(grid: np.ndarray, mask: np.ndarray, seed: int = 0) -> list[Interval]:
    """An LP certificate, with few LPs, that no suppressed number is pinned: for each, two
    values it can take with every published number kept (``low < high``, witnessed by
    feasible solutions; :func:`audit` gives the extreme ones at two LPs per number).

    The true table is one solution; ``scipy.optimize.linprog`` optimizes random weightings
    of the numbers not yet certified, and every number whose value differs from the truth
    at the optimum is certified (the constraint matrix is totally unimodular, so differing
    at all means differing by at least one). What stays uncertified after two fruitless
    rounds gets its own maximum and minimum; a number pinned there is returned with
    ``low == high``."""
    rng = np.random.default_rng(seed)
    out = []
    for unknowns in _components(grid, mask):
        out += _certify_group(grid, mask, unknowns, rng)
    return sorted(out, key=lambda iv: iv.pos)


def _certify_group(
    grid: np.ndarray,
    mask: np.ndarray,
    unknowns: list[tuple[int, int]],
    rng: np.random.Generator,
) -> list[Interval]:
    from scipy.optimize import linprog

    a_eq, b_eq = _system(grid, mask, unknowns)
    n = len(unknowns)
    low = np.array([float(grid[p]) for p in unknowns])
    high = low.copy()

    def solve(objective: np.ndarray) -> np.ndarray | None:
        """The optimum (minimum) of ``objective``, or None when it is unbounded."""
        res = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=[(0, None)] * n, method="highs")
        if res.status == 3:
            return None
        if res.status != 0:
            raise RuntimeError(f"the suppression certificate failed: {res.message}")
        return np.asarray(res.x)

    def stuck() -> np.ndarray:
        result: np.ndarray = high - low < 1e-6
        return result

    fruitless = 0
    while fruitless < 2 and stuck().any():
        before = int(stuck().sum())
        x = solve(np.where(stuck(), rng.uniform(-1.0, 1.0, n), 0.0))
        if x is not None:
            np.minimum(low, x, out=low)
            np.maximum(high, x, out=high)
        fruitless = fruitless + 1 if int(stuck().sum()) == before else 0
    for k in np.nonzero(stuck())[0]:
        unit = np.zeros(n)
        unit[k] = 1.0
        for objective in (-unit, unit):  # its maximum (perhaps unbounded), then its minimum
            x = solve(objective)
            if x is None:
                high[k] = np.inf
            else:
                low[k], high[k] = min(low[k], x[k]), max(high[k], x[k])
            if not stuck()[k]:
                break
    return [
        Interval(p, int(grid[p]), float(low[k]), float(high[k])) for k, p in enumerate(unknowns)
    ]


@dataclass
class Protection:
    """A protected grid: the numbers, which are suppressed, and the audit that passed."""

    grid: np.ndarray
    mask: np.ndarray
    primary: np.ndarray
    intervals: list[Interval]
    rounds: int

    @property
    def suppressed(self) -> int:
        return int(self.mask.sum())

    @property
    def complementary(self) -> int:
        return int((self.mask & ~self.primary).sum())


def protect(counts: np.ndarray, min_count: int = DEFAULT_MIN_COUNT) -> Protection:
    """Suppress the table's small numbers and enough others that none can be recovered: see
    the module's docstring. Returns the grid with its margins, the suppression mask and the
    final audit (no interval pinned)."""
    grid = augment(counts)
    primary = primary_suppression(grid, min_count)
    mask = primary.copy()
    rounds = 0
    while True:
        rounds += 1
        mask = complete_lines(grid, mask)
        pinned = pinned_cells(grid, mask)
        if not pinned:  # the fast test passed: the LP certifies (or finds a leak)
            intervals = certify(grid, mask)
            pinned = [iv.pos for iv in intervals if iv.pinned]
            if not pinned:
                return Protection(grid, mask, primary, intervals, rounds)
        if mask.all():  # cannot happen: with nothing published, x -> 2x keeps every line
            raise RuntimeError(f"no suppression pattern protects {pinned}")
        for pos in pinned:
            if not mask.all():
                mask[_widen(grid, mask, pos)] = True


def _widen(grid: np.ndarray, mask: np.ndarray, pos: tuple[int, int]) -> tuple[int, int]:
    """One more number to suppress for a pinned one: the cheapest published number of its
    lines, else of the whole grid."""
    i, j = pos
    near = [(i, q) for q in range(grid.shape[1])] + [(p, j) for p in range(grid.shape[0])]
    free = [p for p in near if not mask[p]]
    if not free:
        free = [(int(p), int(q)) for p, q in zip(*np.nonzero(~mask), strict=True)]
    return min(free, key=lambda p: _cost(grid, mask, p))


# -- the release -------------------------------------------------------------------------


@dataclass
class Table:
    """One published two-way table: ``rows`` x ``cols`` counts of one agency (and year)."""

    name: str
    keys: dict[str, str]
    row_label: str
    col_label: str
    rows: list[str]
    cols: list[str]
    counts: np.ndarray
    protection: Protection | None = None

    def records(self) -> list[dict[str, str]]:
        """The tidy rows of the table's CSV (totals as ``all``, suppressed as ``s``)."""
        if self.protection is None:
            raise RuntimeError(f"table {self.name} {self.keys} is not protected yet")
        grid, mask = self.protection.grid, self.protection.mask
        out = []
        for i, row in enumerate([*self.rows, ALL]):
            for j, col in enumerate([*self.cols, ALL]):
                value = SUPPRESSED if mask[i, j] else str(int(grid[i, j]))
                out.append({**self.keys, self.row_label: row, self.col_label: col, "count": value})
        return out


@dataclass
class Release:
    """Every table of a release, with where it came from."""

    tables: list[Table]
    snapshots: dict[str, str]
    min_count: int
    created: dt.date

    def summary(self) -> dict[str, int]:
        protections = [t.protection for t in self.tables if t.protection is not None]
        return {
            "tables": len(self.tables),
            "numbers": sum(p.grid.size for p in protections),
            "suppressed": sum(p.suppressed for p in protections),
            "primary": sum(int(p.primary.sum()) for p in protections),
            "complementary": sum(p.complementary for p in protections),
            "checked": sum(len(p.intervals) for p in protections),
        }


def identifiers(package: Package) -> set[str]:
    """Every identifier of a package that must never be published: officer, event and case
    ids, officers' names and badges, and assignment values (units, districts, ...),
    lower-cased."""
    values: set[str] = set()
    for series in (
        package.officers["officer_id"],
        *(package.officers[c] for c in DISPLAY_COLUMNS if c in package.officers.columns),
        package.events["event_id"],
        package.events["officer_id"],
        package.events["case_id"],
        package.assignments["value"],
    ):
        values.update(str(v).strip().lower() for v in series.dropna().unique())
    return values


def _label(value: object, forbidden: set[str]) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return NONE_RECORDED
    text = " ".join(str(value).split())
    if not text or text.lower() in ("<na>", "nan"):
        return NONE_RECORDED
    return OTHER if text.lower() in forbidden else text


def _crosstab(frame: pd.DataFrame, rows: Sequence[object], cols: Sequence[object]) -> np.ndarray:
    import pandas as pd

    if frame.empty:
        return np.zeros((len(rows), len(cols)), dtype=np.int64)
    table = pd.crosstab(frame["row"], frame["col"])
    table = table.reindex(index=list(rows), columns=list(cols), fill_value=0)
    return table.to_numpy(dtype=np.int64)


def agency_tables(agency: str, package: Package) -> list[Table]:
    """The unprotected tables of one agency: for each year of its events, complaints and
    use-of-force reports by category and finding; the Sec. 3(b) records by type and year."""
    import pandas as pd

    events = package.events
    forbidden = identifiers(package)
    years_all = pd.to_datetime(events["event_date"]).dt.year
    if events.empty:
        return []
    years = list(range(int(years_all.min()), int(years_all.max()) + 1))
    tables: list[Table] = []
    for kind, name in (("complaint", "complaints"), ("use_of_force", "use_of_force")):
        chosen = events["event_type"] == kind
        ev = pd.DataFrame(
            {
                "year": years_all[chosen].to_numpy(),
                "row": [_label(v, forbidden) for v in events.loc[chosen, "category"]],
                "col": [_label(v, set()) for v in events.loc[chosen, "finding"]],
            }
        )
        named = sorted({c for c in ev["row"] if c not in (NONE_RECORDED, OTHER)})
        categories = named + [c for c in (OTHER, NONE_RECORDED) if c in set(ev["row"])]
        if not categories:
            categories = [NONE_RECORDED]
        for year in years:
            counts = _crosstab(ev[ev["year"] == year], categories, FINDING_COLUMNS)
            tables.append(
                Table(
                    name,
                    {"agency": agency, "year": str(year)},
                    "category",
                    "finding",
                    categories,
                    list(FINDING_COLUMNS),
                    counts,
                )
            )
    chosen = events["event_type"].isin(SEC3B_EVENT_TYPES)
    ev = pd.DataFrame(
        {"row": events.loc[chosen, "event_type"].to_numpy(), "col": years_all[chosen].to_numpy()}
    )
    counts = _crosstab(ev, SEC3B_EVENT_TYPES, years)
    tables.append(
        Table(
            "sec3b_records",
            {"agency": agency},
            "event_type",
            "year",
            list(SEC3B_EVENT_TYPES),
            [str(y) for y in years],
            counts,
        )
    )
    return tables


def build_release(
    workspace: Workspace,
    agencies: Iterable[str] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    progress: Callable[[str], None] | None = None,
) -> Release:
    """Count and protect every table of the agencies' newest snapshots (default: every
    agency of the workspace)."""
    if min_count < 1:
        raise PublicExportError(f"the minimum count must be at least 1, got {min_count}")
    names = list(agencies) if agencies is not None else workspace.agencies()
    if not names:
        raise PublicExportError(f"the workspace {workspace.home} holds no data yet")
    tables: list[Table] = []
    snapshots: dict[str, str] = {}
    for agency in names:
        snap = workspace.snapshot(agency)
        snapshots[agency] = snap.id
        for table in agency_tables(agency, snap.read()):
            table.protection = protect(table.counts, min_count)
            tables.append(table)
        if progress is not None:
            progress(f"{agency}: snapshot {snap.id}, tables counted and protected")
    return Release(tables, snapshots, min_count, dt.datetime.now(dt.UTC).date())


# -- writing -----------------------------------------------------------------------------


def _readme(release: Release) -> str:
    s = release.summary()
    t = release.min_count
    snaps = "\n".join(f"- `{a}`: snapshot `{i}`" for a, i in release.snapshots.items())
    findings = ", ".join(f"`{f}`" for f in FINDING_COLUMNS)
    sec3b = ", ".join(f"`{e}`" for e in SEC3B_EVENT_TYPES)
    rule = (
        f"No published count lies between 1 and {t - 1}: only 0 or counts of at least {t} "
        "are published, and `s` marks a suppressed number."
        if t > 1
        else "No suppression was asked for (minimum count 1): every count is published."
    )
    return f"""# Public release (Sec. 3(c) of the Executive Order on Safe Policing)

Aggregated, anonymized counts of each agency's records, written by `ews export-public` on
{release.created.isoformat()}. Source snapshots (the newest of each agency at that date):

{snaps}

## Tables

Every file is a tidy CSV (UTF-8, comma, header row); `count` is a whole number or `s`.
Each table is published with its totals: `all` in a label column marks a total over that
column's values (a row total, a column total, or the grand total when both are `all`).

- `complaints.csv` (`agency, year, category, finding, count`): complaint **allegations**
  per calendar year of the incident (`event_date`), by category as the agency codes it and
  by finding. The unit is the allegation, one officer named in one complaint: a complaint
  naming three officers counts three times. Distinct complaints are not counted (a
  complaint can carry several categories and findings, so they would not add up).
- `use_of_force.csv` (`agency, year, category, finding, count`): use-of-force reports
  (one per officer and report) per calendar year, by category and finding.
- `sec3b_records.csv` (`agency, event_type, year, count`): the records Sec. 3(b) asks to
  track ({sec3b}) by type and calendar year; `year` = `all` is the total over the years.

Findings:
{findings}.
`pending` is an investigation without a final finding at the snapshot; `none recorded`
is a record with no finding (and a category `none recorded` one with no category).
A category equal to an identifier of the data is shown as `other`.

No officer, case, event or unit identifier appears, and no date finer than the year.

## Small-cell protection

{rule}

1. Primary suppression: every count and total from 1 to {t - 1}.
2. Complementary suppression: every row, column or line of totals that holds one
   suppressed number has a second one suppressed (the smallest count, a total only when no
   count is left), so no suppressed number is the difference of a published total and the
   published counts of its line.
3. Audit: for every suppressed number, the smallest and largest value consistent with all
   published numbers of its table (each line sums to its total, counts are non-negative)
   were computed by linear programming. Where they were equal, more numbers were suppressed
   and the audit repeated. In this release every suppressed number has at least two
   possible values. Tables share no totals, so each is audited on its own.

Published totals are the true totals; no number is perturbed.

## This release

- {s["tables"]} tables, {s["numbers"]} numbers (counts and totals);
- {s["suppressed"]} suppressed: {s["primary"]} below {t}, {s["complementary"]} complementary;
- {s["checked"]} suppressed numbers audited, none recoverable.
"""


def _write_csv(path: Path, columns: Sequence[str], tables: list[Table]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for table in tables:
            writer.writerows(table.records())


def write_release(release: Release, out: Path, force: bool = False) -> list[Path]:
    """Write the release's CSV files and README.md into ``out``, atomically: everything is
    written to a temporary folder beside it, then renamed into place. A non-empty ``out``
    is refused unless ``force`` (then replaced whole)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PublicExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PublicExportError(f"{out} is not empty: choose an empty folder or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name in TABLE_FILES:
            chosen = [t for t in release.tables if t.name == name]
            _write_csv(tmp / f"{name}.csv", TABLE_COLUMNS[name], chosen)
        (tmp / "README.md").write_text(_readme(release), encoding="utf-8")
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old is not None:  # put the replaced folder back
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())
