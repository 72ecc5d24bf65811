"""The Sec. 3(c) public release (ews.public, ``ews export-public``): no small count is
published, no identifier leaves, and an attacker who solves the published totals cannot
recover a suppressed number.

The attacker here is written from the published CSV files alone, independently of the
library's own audit: every ``s`` is an unknown, every row and column of a table sums to its
``all`` total, counts are non-negative integers; ``scipy.optimize.linprog`` (HiGHS, with
integrality) gives the smallest and largest value of each unknown."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog
from typer.testing import CliRunner

from ews import public
from ews.cli import app
from ews.contract import SEC3B_EVENT_TYPES, read_normalized
from ews.ingest import ingest_package
from ews.store import Workspace
from ews.synth import synthesize

runner = CliRunner()
MIN_COUNT = 11
# (row label column, column label column, the keys naming one table) of each file
LAYOUT = {
    "complaints": ("category", "finding", ("agency", "year")),
    "use_of_force": ("category", "finding", ("agency", "year")),
    "sec3b_records": ("event_type", "year", ("agency",)),
}

# -- the attacker --------------------------------------------------------------------------

Grid = dict[tuple[str, str], int | None]  # (row, col) -> published value, None if "s"


def attack(grid: Grid, integral: bool = True) -> dict[tuple[str, str], tuple[float, float]]:
    """The smallest and largest value of every suppressed entry of a published table (its
    totals under the label ``all``), given every published entry, that each row and column
    sums to its total, and non-negativity (and integrality)."""
    unknown = sorted(k for k, v in grid.items() if v is None)
    if not unknown:
        return {}
    index = {k: n for n, k in enumerate(unknown)}
    rows = sorted({r for r, _ in grid})
    cols = sorted({c for _, c in grid})
    equations: list[tuple[np.ndarray, float]] = []
    lines = [([(r, c) for c in cols if c != "all"], (r, "all")) for r in rows]
    lines += [([(r, c) for r in rows if r != "all"], ("all", c)) for c in cols]
    for parts, total in lines:
        coef, rhs = np.zeros(len(unknown)), 0.0
        for key, sign in [*((p, 1.0) for p in parts), (total, -1.0)]:
            if grid[key] is None:
                coef[index[key]] += sign
            else:
                rhs -= sign * float(grid[key])  # type: ignore[arg-type]
        if coef.any():
            equations.append((coef, rhs))
    a_eq = np.array([e[0] for e in equations])
    b_eq = np.array([e[1] for e in equations])
    result = {}
    for key, k in index.items():
        ends = []
        for sign in (1.0, -1.0):
            c = np.zeros(len(unknown))
            c[k] = sign
            res = linprog(
                c,
                A_eq=a_eq,
                b_eq=b_eq,
                bounds=[(0, None)] * len(unknown),
                integrality=np.ones(len(unknown)) if integral else None,
                method="highs",
            )
            if sign < 0 and res.status in (3, 4):  # the minimum was found: feasible, so
                ends.append(float("inf"))  # this is unbounded (HiGHS says 4 for a MILP)
            else:
                assert res.status == 0, res.message
                ends.append(sign * res.fun)
        result[key] = (ends[0], ends[1])
    return result


def label(pos: tuple[int, int], shape: tuple[int, ...]) -> tuple[str, str]:
    """The attacker's name of a grid position (see :func:`published`)."""
    i, j = pos
    return (
        "all" if i == shape[0] - 1 else f"r{i}",
        "all" if j == shape[1] - 1 else f"c{j}",
    )


def published(grid: np.ndarray, mask: np.ndarray) -> Grid:
    """A grid with its margins (last row and column) as the attacker reads it."""
    return {
        label((i, j), grid.shape): None if mask[i, j] else int(grid[i, j])
        for i in range(grid.shape[0])
        for j in range(grid.shape[1])
    }


def test_the_attacker_recovers_a_cell_when_primary_suppression_stands_alone() -> None:
    counts = np.array([[3, 20, 30], [15, 12, 40], [25, 18, 50]])
    grid = public.augment(counts)
    primary = public.primary_suppression(grid, MIN_COUNT)
    assert primary.sum() == 1  # the 3 alone: its row total 53 and column total 43 published
    lone = attack(published(grid, primary))
    assert lone == {("r0", "c0"): (3.0, 3.0)}  # 53 - 20 - 30: the 3 is recovered exactly

    protected = public.protect(counts, MIN_COUNT)
    assert protected.complementary >= 3  # the complementary step had work to do
    found = attack(published(protected.grid, protected.mask))
    assert len(found) == protected.suppressed
    for iv in protected.intervals:
        low, high = found[label(iv.pos, protected.grid.shape)]
        assert low <= iv.value <= high
        assert high - low >= 1, (iv.pos, low, high)


def test_a_small_total_is_suppressed_and_zeros_cannot_pin_it() -> None:
    # a row whose only count is 3: its total 3 is small too; the zeros beside it must not
    # let the attacker pin it through non-negativity
    counts = np.array([[3, 0, 0], [0, 0, 40], [0, 18, 50]])
    protected = public.protect(counts, MIN_COUNT)
    assert protected.mask[0, 0] and protected.mask[0, 3] and protected.mask[3, 0]
    assert not protected.mask[-1, -1], "the grand total stays published when it can"
    for (_, _), (low, high) in attack(published(protected.grid, protected.mask)).items():
        assert high - low >= 1


def test_two_suppressions_per_line_can_still_leak_and_the_audit_closes_it() -> None:
    # every line holds two suppressed numbers, yet the 5 is recovered: column 2 says
    # a + 5 + b = 13, rows 1 and 3 say a and b are their (suppressed) totals, and the
    # column of totals says those add to 21 - 13 = 8, so the 5 is 13 - 8
    counts = np.array([[0, 2, 0], [3, 5, 5], [0, 6, 0]])
    grid = public.augment(counts)
    lines_only = public.complete_lines(grid, public.primary_suppression(grid, MIN_COUNT))
    assert all(lines_only[i, :].sum() != 1 for i in range(4))
    assert all(lines_only[:, j].sum() != 1 for j in range(4))
    leaked = attack(published(grid, lines_only))
    assert leaked[("r1", "c1")] == (5.0, 5.0)
    assert public.pinned_cells(grid, lines_only) == [(1, 1)]

    protected = public.protect(counts, MIN_COUNT)
    assert protected.rounds > 1  # the audit found the leak and widened the pattern
    found = attack(published(protected.grid, protected.mask))
    assert ("r1", "c1") in found
    for low, high in found.values():
        assert high - low >= 1


def random_tables(n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        r, c = rng.integers(1, 8, 2)
        t = rng.poisson(rng.choice([0.5, 2, 6, 15, 40]), (r, c))
        t[rng.random((r, c)) < 0.3] = 0
        yield t


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_tables_are_protected_and_the_audit_matches_the_attacker(seed: int) -> None:
    suppressed = 0
    for counts in random_tables(25, seed):
        p = public.protect(counts, MIN_COUNT)
        small = (p.grid >= 1) & (p.grid < MIN_COUNT)
        assert not (small & ~p.mask).any()
        found = attack(published(p.grid, p.mask))
        suppressed += len(found)
        assert all(high - low >= 1 for low, high in found.values())
        # the library's LP audit gives the integer attacker's very bounds
        exact = public.audit(p.grid, p.mask)
        assert len(exact) == len(p.intervals) == len(found)
        for iv, witnessed in zip(exact, p.intervals, strict=True):
            low, high = found[label(iv.pos, p.grid.shape)]
            assert iv.low == pytest.approx(low, abs=1e-6)
            assert iv.high == pytest.approx(high, abs=1e-6)
            # the certificate's two values lie within the attacker's range, and differ
            assert low - 1e-6 <= witnessed.low < witnessed.high <= high + 1e-6
    assert suppressed > 20


@pytest.mark.parametrize("seed", [4, 5])
def test_the_fast_test_and_the_certificate_find_exactly_what_the_lp_finds(seed: int) -> None:
    # any suppression pattern, good or bad: the cycle test, the few-LP certificate and the
    # per-number LP (two LPs each) name the same pinned numbers
    rng = np.random.default_rng(seed)
    pinned = 0
    for counts in random_tables(40, seed):
        grid = public.augment(counts)
        mask = rng.random(grid.shape) < rng.uniform(0.1, 0.7)
        exact = {iv.pos for iv in public.audit(grid, mask) if iv.pinned}
        assert set(public.pinned_cells(grid, mask)) == exact
        assert {iv.pos for iv in public.certify(grid, mask) if iv.pinned} == exact
        pinned += len(exact)
    assert pinned > 20  # bad patterns were among them


# -- a generated agency, released ----------------------------------------------------------


def read_release(folder: Path) -> dict[str, list[dict[str, str]]]:
    out = {}
    for name in public.TABLE_FILES:
        with (folder / f"{name}.csv").open(newline="") as f:
            out[name] = list(csv.DictReader(f))
    return out


def tables_of(name: str, records: list[dict[str, str]]) -> dict[tuple[str, ...], Grid]:
    row, col, keys = LAYOUT[name]
    grids: dict[tuple[str, ...], Grid] = defaultdict(dict)
    for rec in records:
        value = None if rec["count"] == "s" else int(rec["count"])
        grids[tuple(rec[k] for k in keys)][(rec[row], rec[col])] = value
    return grids


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workspace]:
    """A 400-officer synthetic agency over five years, ingested and released."""
    root = tmp_path_factory.mktemp("public")
    synthesize(root / "pkg", officers=400, years=5, seed=11, quiet=True)
    ws = Workspace(root / "home")
    ingest_package(root / "pkg", "synthetic", workspace=ws)
    release = public.build_release(ws, min_count=MIN_COUNT)
    public.write_release(release, root / "release")
    return root / "release", ws


def true_counts(ws: Workspace) -> dict[str, dict[tuple[str, ...], int]]:
    """Every number the release should hold, counted here with pandas from the snapshot."""
    ev = ws.snapshot("synthetic").read().events
    ev = ev.assign(
        year=ev["event_date"].dt.year.astype(str),
        category=ev["category"].fillna("none recorded"),
        finding=ev["finding"].fillna("none recorded"),
    )
    out: dict[str, dict[tuple[str, ...], int]] = {}
    for name, kind in (("complaints", "complaint"), ("use_of_force", "use_of_force")):
        sub = ev[ev["event_type"] == kind]
        counts: dict[tuple[str, ...], int] = {}
        for keys in (["year", "category", "finding"], ["year", "category"], ["year", "finding"]):
            for k, n in sub.groupby(keys).size().items():
                k = k if isinstance(k, tuple) else (k,)
                full = dict(zip(keys, k, strict=True))
                counts[(full["year"], full.get("category", "all"), full.get("finding", "all"))] = (
                    int(n)
                )
        for y, n in sub.groupby("year").size().items():
            counts[(str(y), "all", "all")] = int(n)
        out[name] = counts
    sub = ev[ev["event_type"].isin(SEC3B_EVENT_TYPES)]
    sec3b: dict[tuple[str, ...], int] = {}
    for (t, y), n in sub.groupby(["event_type", "year"]).size().items():
        sec3b[(t, y)] = int(n)
        sec3b[(t, "all")] = sec3b.get((t, "all"), 0) + int(n)
        sec3b[("all", y)] = sec3b.get(("all", y), 0) + int(n)
        sec3b[("all", "all")] = sec3b.get(("all", "all"), 0) + int(n)
    out["sec3b_records"] = sec3b
    return out


def _key(name: str, rec: dict[str, str]) -> tuple[str, ...]:
    if name == "sec3b_records":
        return (rec["event_type"], rec["year"])
    return (rec["year"], rec["category"], rec["finding"])


def test_the_release_holds_the_true_counts_or_s(released: tuple[Path, Workspace]) -> None:
    folder, ws = released
    truth = true_counts(ws)
    files = read_release(folder)
    small = suppressed = 0
    for name, records in files.items():
        assert records, name
        for rec in records:
            true = truth[name].get(_key(name, rec), 0)
            small += 1 <= true < MIN_COUNT
            if rec["count"] == "s":
                suppressed += 1
            else:
                assert int(rec["count"]) == true, (name, rec)
    # the data has small cells, so the rule had work to do
    assert small > 50 and suppressed >= small


def test_no_published_count_lies_between_1_and_10(released: tuple[Path, Workspace]) -> None:
    folder, _ = released
    values = [rec["count"] for recs in read_release(folder).values() for rec in recs]
    assert "s" in values
    for value in values:
        assert value == "s" or re.fullmatch(r"0|[1-9][0-9]*", value), value
        assert value == "s" or not 1 <= int(value) < MIN_COUNT, value


def test_no_identifier_and_no_date_finer_than_the_year(released: tuple[Path, Workspace]) -> None:
    folder, ws = released
    pkg = ws.snapshot("synthetic").read()
    ids = {
        str(v).lower()
        for col in (
            pkg.officers["officer_id"],
            pkg.events["officer_id"],
            pkg.events["event_id"],
            pkg.events["case_id"],
            pkg.assignments["value"],
        )
        for v in col.dropna().unique()
    }
    assert len(ids) > 1000 and any(i.startswith("cr") for i in ids)  # cases are in the input
    for name, records in read_release(folder).items():
        assert tuple(records[0]) == public.TABLE_COLUMNS[name]
        for rec in records:
            for value in rec.values():
                assert value.lower() not in ids, (name, rec)
                assert not re.search(r"\d{4}-\d\d", value), (name, rec)
    readme = (folder / "README.md").read_text()
    words = set(re.findall(r"[A-Za-z0-9_]+", readme.lower()))
    assert not words & ids
    dates = set(re.findall(r"\d{4}-\d\d(?:-\d\d)?", readme))
    assert len(dates) == 1  # the release's own date, nothing of the data


def test_a_category_equal_to_an_identifier_is_published_as_other(tmp_path: Path) -> None:
    from _models_agency import make_agency

    pkg = read_normalized(make_agency(tmp_path / "pkg", officers=30))
    events = pkg.events.copy()
    complaints = events.index[events["event_type"] == "complaint"]
    events.loc[complaints[:5], "category"] = "O0003"  # an officer id
    events.loc[complaints[5:9], "category"] = "u2"  # a unit
    events.loc[complaints[9:], "category"] = "09A VERBAL ABUSE"
    tables = public.agency_tables("a", type(pkg)(pkg.officers, events, pkg.assignments))
    rows = {r for t in tables if t.name == "complaints" for r in t.rows}
    assert rows == {"09A VERBAL ABUSE", "other"}
    other = sum(t.counts[t.rows.index("other")].sum() for t in tables if "other" in t.rows)
    assert other == 9


def test_an_attacker_solving_the_totals_pins_no_suppressed_number(
    released: tuple[Path, Workspace],
) -> None:
    folder, ws = released
    truth = true_counts(ws)
    attacked = 0
    for name, records in read_release(folder).items():
        row, col, _ = LAYOUT[name]
        for keys, grid in tables_of(name, records).items():
            for (r, c), (low, high) in attack(grid).items():
                attacked += 1
                rec = {"year": keys[-1], row: r, col: c}
                true = truth[name].get(_key(name, rec), 0)
                assert low <= true <= high, (name, keys, r, c)
                assert high - low >= 1, (name, keys, r, c, low, high)
                if 1 <= true < MIN_COUNT:  # not provably outside the protected range
                    assert low < MIN_COUNT and high >= 1
    assert attacked > 50


# -- the command -----------------------------------------------------------------------------


def _ingest_small(home: Path, tmp_path: Path, agency: str = "small") -> None:
    from _models_agency import make_agency

    make_agency(tmp_path / agency, officers=40)
    result = runner.invoke(app, ["ingest", str(tmp_path / agency), "--agency", agency])
    assert result.exit_code == 0, result.output


def test_the_command_writes_the_release(ews_home: Path, tmp_path: Path) -> None:
    _ingest_small(ews_home, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export-public", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "complaints.csv",
        "sec3b_records.csv",
        "use_of_force.csv",
    ]
    snap = Workspace(ews_home).snapshot("small").id
    readme = (out / "README.md").read_text()
    assert snap in readme and "at least 11" in readme and "allegation" in readme
    assert "suppressed" in result.output and "tables" in result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp left
    records = read_release(out)["complaints"]
    assert {r["agency"] for r in records} == {"small"}
    assert {r["finding"] for r in records} >= {"sustained", "not_sustained", "all"}

    # the threshold is an option: a higher one suppresses more, and no count below it
    higher = tmp_path / "higher"
    result = runner.invoke(app, ["export-public", "--out", str(higher), "--min-count", "40"])
    assert result.exit_code == 0, result.output
    values = [r["count"] for rs in read_release(higher).values() for r in rs]
    assert all(v == "s" or int(v) == 0 or int(v) >= 40 for v in values)
    at_11 = [r["count"] for rs in read_release(out).values() for r in rs]
    assert len(values) == len(at_11) and values.count("s") > at_11.count("s")
    assert "at least 40" in (higher / "README.md").read_text()


def test_the_command_refuses_bad_input(ews_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    empty = runner.invoke(app, ["export-public", "--out", str(out)])
    assert empty.exit_code == 1 and "no data" in empty.output
    _ingest_small(ews_home, tmp_path)
    unknown = runner.invoke(app, ["export-public", "--out", str(out), "--agency", "nope"])
    assert unknown.exit_code == 2
    assert "unknown agency 'nope': the workspace holds small" in unknown.output
    assert not out.exists()

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    busy = runner.invoke(app, ["export-public", "--out", str(out)])
    assert busy.exit_code == 2 and "not an empty folder" in busy.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    forced = runner.invoke(app, ["export-public", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert not (out / "keep.txt").exists() and (out / "README.md").is_file()

    zero = runner.invoke(app, ["export-public", "--out", str(tmp_path / "z"), "--min-count", "0"])
    assert zero.exit_code == 2


def test_an_interrupted_write_leaves_nothing(
    ews_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest_small(ews_home, tmp_path)
    release = public.build_release(Workspace(ews_home))

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(public, "_readme", boom)
    with pytest.raises(OSError):
        public.write_release(release, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_the_help_names_the_guarantees() -> None:
    result = runner.invoke(app, ["export-public", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for word in ("--out", "--agency", "--min-count", "--force", "complementary"):
        assert word in text


def test_several_agencies_each_from_their_newest_snapshot(ews_home: Path, tmp_path: Path) -> None:
    _ingest_small(ews_home, tmp_path, "north")
    _ingest_small(ews_home, tmp_path, "south")
    out = tmp_path / "both"
    result = runner.invoke(
        app, ["export-public", "--out", str(out), "--agency", "south", "--agency", "north"]
    )
    assert result.exit_code == 0, result.output
    agencies = {r["agency"] for r in read_release(out)["sec3b_records"]}
    assert agencies == {"north", "south"}
    frame = pd.read_csv(out / "complaints.csv", dtype=str)
    assert set(frame.columns) == {"agency", "year", "category", "finding", "count"}
