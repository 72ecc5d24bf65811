"""Check an agency data package against every rule of the contract (CONTRACT.md, v1).

Every rule is checked vectorially with ``pyarrow.compute`` over whole columns (no per-row
Python): CSV files are read with all columns as strings so that a bad value can be reported
with its row number; low-cardinality columns (dates, ids, types, findings) are checked on
their dictionary of distinct values and mapped back to rows. The result holds every
problem found (not only the first) as ``file row N, column: rule`` and, when the package is
valid, its tables already in normalized form (Arrow) with their canonical row order, so that
:mod:`ews.ingest` stores them without reading the files again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ews.contract import (
    CATEGORY_GROUP,
    CATEGORY_GROUPS,
    COLUMNS,
    DISPLAY_COLUMNS,
    DISPLAY_MAX_CHARS,
    FINDINGS,
    REQUIRED_COLUMNS,
    REQUIRED_TABLES,
    SUFFIXES,
    TABLES,
    ContractError,
    find_table_file,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SNAKE_CASE = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
MIN_BIRTH_YEAR = 1900
DEFAULT_CAP = 50

Progress = Callable[[str], None]


@dataclass
class Problem:
    """One broken rule: the file, the column, the rule, and the rows (1 = first data row)
    that break it; ``rows`` is None for a problem of the whole file or column."""

    file: str
    column: str | None
    rule: str
    rows: np.ndarray | None = None
    # for problems found by reading a CSV file line by line: the file line each row starts on
    file_lines: np.ndarray | None = None

    @property
    def count(self) -> int:
        return 1 if self.rows is None else int(len(self.rows))

    def keyed_lines(self, cap: int = DEFAULT_CAP) -> list[tuple[float, str]]:
        """:meth:`lines`, each with the row it is about (0 for the whole file, infinity for
        the closing count), to sort a report by row."""
        where = f", {self.column}" if self.column else ""
        if self.rows is None:
            return [(0, f"{self.file}{where}: {self.rule}")]
        out: list[tuple[float, str]] = []
        for i, r in enumerate(self.rows[:cap]):
            line = f" (line {int(self.file_lines[i])})" if self.file_lines is not None else ""
            out.append((int(r), f"{self.file} row {int(r)}{line}{where}: {self.rule}"))
        if len(self.rows) > cap:
            out.append(
                (
                    float("inf"),
                    f"{self.file}{where}: ... and {len(self.rows) - cap:,} more rows breaking "
                    f"the same rule ({self.rule})",
                )
            )
        return out

    def lines(self, cap: int = DEFAULT_CAP) -> list[str]:
        """One line per offending row, at most ``cap``, then how many more there are."""
        return [line for _, line in self.keyed_lines(cap)]


@dataclass
class Validation:
    """The outcome of :func:`validate_package`.

    ``tables`` holds the normalized Arrow tables (contract columns first, date32 dates,
    int32 birth_year, strings with nulls for empty cells, extra columns as strings) in the
    input's row order, and ``orders`` the indices that put each in canonical order
    (officers by officer_id, events by event_id, assignments by all columns); both are
    only complete when ``ok``.
    """

    package: Path
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    orders: dict[str, pa.Array] = field(default_factory=dict)
    # the key column (officer_id, event_id) already in canonical order: saves a gather
    sorted_keys: dict[str, pa.ChunkedArray] = field(default_factory=dict)
    input_rows: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem_count(self) -> int:
        return sum(p.count for p in self.problems)

    notes: list[str] = field(default_factory=list)

    def report_lines(self, cap: int = DEFAULT_CAP) -> list[str]:
        """One line per problem (at most ``cap`` per file and rule), sorted by file (in the
        order officers, events, assignments) and row; problems of a whole file or column
        come first, the counts of rows left out after each file's rows."""

        def file_rank(name: str) -> tuple[int, str]:
            stem = name.split(".", 1)[0]
            return (TABLES.index(stem) if stem in TABLES else len(TABLES), name)

        entries = [
            (file_rank(p.file), row, i, j, line)
            for i, p in enumerate(self.problems)
            for j, (row, line) in enumerate(p.keyed_lines(cap))
        ]
        return [e[-1] for e in sorted(entries)]


# --------------------------------------------------------------------------------------
# Reading


def _csv_header(path: Path) -> list[str]:
    """The header row of a CSV file (plain or gzip), read with the csv module."""
    import csv
    import gzip
    import io

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        row = next(csv.reader(text), None)
    if not row:
        raise ContractError("the file is empty: a header row is required")
    if not _valid_utf8(row):
        raise ContractError("cannot be read: not UTF-8 text (in the header row, line 1)")
    if row[0].startswith("\ufeff"):
        row[0] = row[0][1:]
    return row


@dataclass
class DamagedCsv:
    """A CSV file read line by line after the fast read failed: ``table`` holds its sound
    rows (every column a string), ``rows`` their data-row numbers (1 = first data row), and
    ``issues`` the other rows as (row, file line, rule)."""

    table: pa.Table
    rows: np.ndarray
    issues: list[tuple[int, int, str]]
    # officer_id of the rows set aside, where readable: an event of such an officer is not
    # reported again as naming an unknown officer
    set_aside_ids: list[str] = field(default_factory=list)


class CsvDamage(ContractError):
    """Raised by :func:`read_raw` for a CSV file with rows that cannot be read (a wrong
    number of fields, bytes that are not UTF-8); ``damage`` says which, and holds the rest."""

    def __init__(self, damage: DamagedCsv) -> None:
        super().__init__(f"{len(damage.issues)} row(s) cannot be read")
        self.damage = damage


def _valid_utf8(fields: list[str]) -> bool:
    try:
        "".join(fields).encode("utf-8")  # undecodable bytes became lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def scan_csv(path: Path, header: list[str]) -> DamagedCsv:
    """Read a CSV file record by record with the csv module (slow; only when the fast read
    failed), keeping the sound rows and naming each row that has a wrong number of fields
    or bytes that are not UTF-8, with the file line it starts on. Blank lines are skipped
    (as the fast reader skips them) and count as no row."""
    import csv
    import gzip
    import io

    import numpy as np
    import pyarrow as pa

    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    good: list[int] = []
    issues: list[tuple[int, int, str]] = []
    set_aside: list[str] = []
    key = header.index("officer_id") if "officer_id" in header else None
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        next(reader, None)
        row, start = 0, reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record:
                continue
            row += 1
            if not _valid_utf8(record):
                rule = "not UTF-8 text (a byte sequence on this line)"
            elif len(record) != width:
                rule = f"has {len(record)} fields where the header has {width}"
            else:
                good.append(row)
                for values, v in zip(columns, record, strict=True):
                    values.append(v if v != "" else None)
                continue
            issues.append((row, line, rule))
            if key is not None and len(record) > key and _valid_utf8([record[key]]):
                set_aside.append(record[key])
    table = pa.table({c: pa.array(v, pa.string()) for c, v in zip(header, columns, strict=True)})
    return DamagedCsv(table, np.asarray(good, dtype=np.int64), issues, set_aside)


def read_raw(path: Path) -> pa.Table:
    """Read one table file as the package has it: CSV with every column a string (empty
    cell = null), Parquet as stored. Raises :class:`ContractError` with a clear message
    when the file cannot be read (bad gzip, not Parquet, a header that is not UTF-8), and
    :class:`CsvDamage` when some rows of a CSV file cannot be read (a wrong number of
    fields, bytes that are not UTF-8): a line-by-line pass, run only when the fast read
    fails, names them and keeps the others for validation."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.name.endswith(".parquet"):
            return pq.read_table(path)
        header = _csv_header(path)
        if len(set(header)) != len(header):
            dupes = sorted({c for c in header if header.count(c) > 1})
            raise ContractError(f"the header names a column twice: {', '.join(dupes)}")
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=True,
            null_values=[""],
        )
        try:
            # fast: blocks are cut at line ends (a quoted line break inside a block is fine)
            return pacsv.read_csv(path, convert_options=convert)
        except pa.ArrowInvalid:
            # a quoted line break where a block was cut breaks the parse: read again,
            # slower, letting free text (category, outcome) hold line breaks anywhere
            newlines = pacsv.ParseOptions(newlines_in_values=True)
            try:
                return pacsv.read_csv(path, parse_options=newlines, convert_options=convert)
            except pa.ArrowInvalid as e:
                damage = scan_csv(path, header)
                if not damage.issues:  # the line-by-line pass found nothing: say why
                    raise ContractError(f"cannot be read: {str(e).strip()[:200]}") from None
                raise CsvDamage(damage) from None
    except ContractError:
        raise
    except UnicodeDecodeError as e:
        raise ContractError(f"cannot be read: not UTF-8 text ({e.reason})") from None
    except (pa.ArrowInvalid, pa.ArrowException, OSError, EOFError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "invalid UTF8" in msg or "utf8" in msg.lower():
            msg = f"not UTF-8 text ({msg})"
        elif path.name.endswith(".gz") and ("gzip" in msg.lower() or "zlib" in msg.lower()):
            msg = f"not a valid gzip file ({msg})"
        raise ContractError(f"cannot be read: {msg}") from None


# --------------------------------------------------------------------------------------
# Column helpers (all vectorial)


def _rows(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """1-based row numbers where a boolean mask is true (nulls count as false)."""
    import numpy as np
    import pyarrow.compute as pc

    mask = pc.fill_null(mask, False)
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False)) + 1


def _any(mask: pa.ChunkedArray | pa.Array) -> bool:
    import pyarrow.compute as pc

    return bool(pc.any(pc.fill_null(mask, False)).as_py())


def _to_string(col: pa.ChunkedArray, blanks: bool = True) -> pa.ChunkedArray:
    """A column as strings with nulls for empty cells (Parquet columns of any type).
    ``blanks=False`` skips the scan for empty strings (CSV read by :func:`read_raw` has
    none: empty cells are already null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_date(t):
        col = col.cast(pa.date32())
    if not pa.types.is_string(t):
        col = col.cast(pa.string())
    if blanks and col.null_count < len(col) and _any(pc.equal(col, "")):
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    return col


def _by_dictionary(col: pa.ChunkedArray, fn: Callable[[pa.Array], pa.Array]) -> pa.ChunkedArray:
    """Apply ``fn`` to the distinct values of ``col`` and map the result back to its rows:
    a date column of 10M rows has a few thousand distinct values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(col)
    if enc.num_chunks == 0:
        return pa.chunked_array([], type=fn(pa.array([], col.type)).type)
    # the chunks of a dictionary-encoded chunked array share one (growing) dictionary:
    # the last chunk's is a superset valid for every chunk's indices
    dictionary = enc.chunk(enc.num_chunks - 1).dictionary
    mapped = fn(dictionary)
    return pa.chunked_array([pc.take(mapped, c.indices) for c in enc.chunks], type=mapped.type)


def _rows_with_bad_values(
    col: pa.ChunkedArray, bad: Callable[[pa.Array], pa.Array]
) -> pa.ChunkedArray | None:
    """Mask of the rows whose value ``bad`` flags, judging each distinct value once; None
    when no value is bad (the common case costs one hash pass over the column)."""
    import pyarrow.compute as pc

    distinct = pc.unique(col).drop_null()
    wrong = distinct.filter(pc.fill_null(bad(distinct), True))
    if len(wrong) == 0:
        return None
    return pc.is_in(col, value_set=wrong)


def _parse_dates(values: pa.Array) -> pa.Array:
    """Strict ISO YYYY-MM-DD strings to date32; anything else (2020-1-5, 2020-02-30) null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    shaped = pc.match_substring_regex(values, ISO_DATE)
    ts = pc.strptime(
        pc.if_else(shaped, values, pa.scalar(None, pa.string())),
        format="%Y-%m-%d",
        unit="s",
        error_is_null=True,
    )
    # strptime rolls 2020-02-30 over to 2020-03-01: a round trip catches it
    same = pc.equal(pc.strftime(ts, format="%Y-%m-%d"), values)
    return pc.if_else(same, ts.cast(pa.date32()), pa.scalar(None, pa.date32()))


def _as_dates(
    col: pa.ChunkedArray, blanks: bool = True
) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """A date column as date32 and a mask of the values that are not ISO dates."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_date(t):
        return col.cast(pa.date32()), None
    if pa.types.is_timestamp(t):  # never cut silently: see _timestamps_as_dates
        return _timestamps_as_dates(col)
    col = _to_string(col, blanks)
    try:  # fast path: Arrow's own ISO parser is strict (YYYY-MM-DD, real days only)
        return col.cast(pa.date32()), None
    except pa.ArrowInvalid:
        pass
    bad = _rows_with_bad_values(col, lambda v: pc.is_null(_parse_dates(v)))
    if bad is None:  # pragma: no cover - the cast and the parser disagree
        return col.cast(pa.date32()), None
    dates = pc.if_else(bad, pa.scalar(None, pa.string()), col).cast(pa.date32())
    return dates, bad


TIMESTAMP_RULE = (
    "a timestamp with a time of day: dates are calendar days; store the date "
    "(YYYY-MM-DD, or a timestamp at midnight)"
)


def _timestamps_as_dates(
    col: pa.ChunkedArray,
) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """A Parquet timestamp column as dates, by the contract's rule (docs/contract.md): a
    value at midnight (in its own time zone, if it has one) is that day; a value with a
    time of day is refused (mask of those rows), never cut to its date silently."""
    import pyarrow.compute as pc

    local = pc.local_timestamp(col) if col.type.tz else col
    at_midnight = pc.equal(pc.floor_temporal(local, unit="day"), local)
    bad = pc.invert(pc.fill_null(at_midnight, True))
    dates = pc.cast(local, "date32")
    return dates, (bad if _any(bad) else None)


def _as_birth_years(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray | None]:
    """birth_year as int32 and a mask of values that are not integers in 1900..this year."""
    import pyarrow as pa
    import pyarrow.compute as pc

    this_year = dt.date.today().year
    t = col.type
    if pa.types.is_integer(t):
        years = col.cast(pa.int64())
    elif pa.types.is_floating(t):
        whole = pc.equal(pc.floor(col), col)
        years = pc.if_else(whole, col, pa.scalar(None, t)).cast(pa.int64())
    else:
        text = _to_string(col)

        def parse(values: pa.Array) -> pa.Array:
            ok = pc.match_substring_regex(values, r"^-?[0-9]{1,9}$")
            return pc.if_else(ok, values, pa.scalar(None, pa.string())).cast(pa.int64())

        years = _by_dictionary(text, parse)
        col = text
    in_range = pc.and_(pc.greater_equal(years, MIN_BIRTH_YEAR), pc.less_equal(years, this_year))
    bad = pc.and_(pc.is_valid(col), pc.invert(pc.fill_null(in_range, False)))
    years = pc.if_else(pc.fill_null(in_range, False), years, pa.scalar(None, pa.int64()))
    return years.cast(pa.int32()), (bad if _any(bad) else None)


def _snake_case_bad(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    import pyarrow.compute as pc

    return _rows_with_bad_values(col, lambda v: pc.invert(pc.match_substring_regex(v, SNAKE_CASE)))


def _duplicates(s: pa.ChunkedArray, order: pa.Array) -> np.ndarray:
    """1-based rows whose (non-null) value appears on another row, given the column in
    sorted order and the sort order."""
    import numpy as np
    import pyarrow.compute as pc

    if len(order) < 2:
        return np.array([], dtype=np.int64)
    same = pc.fill_null(pc.equal(s[1:], s[:-1]), False).to_numpy(zero_copy_only=False)
    if not same.any():
        return np.array([], dtype=np.int64)
    pos = np.flatnonzero(same)
    idx = order.to_numpy()
    return np.unique(np.concatenate([idx[pos], idx[pos + 1]])) + 1


# --------------------------------------------------------------------------------------
# The rules


class _Checker:
    """Collects problems for one package; one method per table."""

    def __init__(self, result: Validation) -> None:
        self.result = result
        # events.finding_date cells that hold something (parsed or not): a bad date is
        # reported once, as a bad date, not again as a missing one
        self.finding_date_given: pa.ChunkedArray | None = None
        # file -> the data-row number of each row of its table, when rows were set aside
        self.row_numbers: dict[str, np.ndarray] = {}

    def whole(self, file: str, column: str | None, rule: str) -> None:
        """A problem of a whole file or column (no row number)."""
        self.result.problems.append(Problem(file, column, rule))

    def add(self, file: str, column: str | None, rule: str, mask: pa.ChunkedArray | None) -> None:
        """A problem on the rows where ``mask`` is true (nothing if None or all false)."""
        if mask is None:
            return
        self.add_rows(file, column, rule, _rows(mask))

    def add_rows(self, file: str, column: str | None, rule: str, rows: np.ndarray) -> None:
        if len(rows):
            if file in self.row_numbers:
                import numpy as np

                rows = np.sort(self.row_numbers[file][np.asarray(rows) - 1])
            self.result.problems.append(Problem(file, column, rule, rows))

    def damaged(self, file: str, damage: DamagedCsv) -> pa.Table:
        """Report the unreadable rows of a CSV file; its sound rows are checked next."""
        import numpy as np

        by_rule: dict[str, list[tuple[int, int]]] = {}
        for row, line, rule in damage.issues:
            by_rule.setdefault(rule, []).append((row, line))
        for rule, where in by_rule.items():
            rows = np.array([r for r, _ in where], dtype=np.int64)
            lines = np.array([ln for _, ln in where], dtype=np.int64)
            self.result.problems.append(Problem(file, None, rule, rows, lines))
        self.row_numbers[file] = damage.rows
        return damage.table

    def table(self, name: str, raw: pa.Table, file: str) -> pa.Table | None:
        """Check a table's own rules; return it normalized (still in input order)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        blanks = not file.endswith((".csv", ".csv.gz"))
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in raw.column_names]
        for c in missing:
            self.whole(file, c, "required column is missing")
        columns: dict[str, pa.ChunkedArray] = {}
        n = raw.num_rows
        for col, kind in COLUMNS[name].items():
            if col not in raw.column_names:
                columns[col] = pa.chunked_array([pa.nulls(n, _arrow_type(kind))])
                continue
            src = raw.column(col)
            if kind == "date" and pa.types.is_timestamp(src.type):
                values, bad = _timestamps_as_dates(src)
                if bad is not None:
                    self.add(file, col, TIMESTAMP_RULE, bad)
                else:
                    self.result.notes.append(
                        f"{file}, {col}: a {src.type} column, every value at midnight: "
                        "read as dates"
                    )
            elif kind == "date":
                values, bad = _as_dates(src, blanks)
                if bad is not None:
                    self.add(file, col, "not a date in ISO format YYYY-MM-DD", bad)
            elif kind == "int":
                values, bad = _as_birth_years(src)
                if bad is not None:
                    self.add(
                        file,
                        col,
                        f"must be an integer year in {MIN_BIRTH_YEAR}..{dt.date.today().year}",
                        bad,
                    )
            else:
                try:
                    values = _to_string(src, blanks)
                except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                    self.whole(file, col, f"must be text, not {src.type}")
                    missing.append(col)
                    continue
            given = pc.is_valid(values if kind == "str" else _to_string(src, blanks))
            if col in REQUIRED_COLUMNS[name]:
                empty = pc.invert(given)
                if _any(empty):
                    self.add(file, col, "required value is empty", empty)
            elif name == "events" and col == "finding_date":
                self.finding_date_given = given
            columns[col] = values
        for col in raw.column_names:
            if col not in COLUMNS[name]:
                try:
                    columns[col] = _to_string(raw.column(col), blanks)
                except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                    self.whole(file, col, f"cannot be kept as text (type {raw.column(col).type})")
                    missing.append(col)
        for col in DISPLAY_COLUMNS if name == "officers" else ():
            if col in columns and col not in missing:
                long = pc.fill_null(
                    pc.greater(pc.utf8_length(columns[col]), DISPLAY_MAX_CHARS), False
                )
                if _any(long):
                    self.add(file, col, f"at most {DISPLAY_MAX_CHARS} characters", long)
        if missing:
            return None
        return pa.table(columns)

    def officers(self, t: pa.Table, file: str) -> pa.Array:
        import pyarrow.compute as pc

        order = pc.sort_indices(t, [("officer_id", "ascending")])
        self.result.sorted_keys["officers"] = keys = pc.take(t["officer_id"], order)
        self.add_rows(
            file, "officer_id", "must be unique (the value is on several rows)",
            _duplicates(keys, order),
        )  # fmt: skip
        self.add(
            file,
            "separation_date",
            "must not be before appointed_date",
            pc.less(t["separation_date"], t["appointed_date"]),
        )
        return order

    def events(self, t: pa.Table, file: str, officer_ids: pa.ChunkedArray | None) -> pa.Array:
        import pyarrow.compute as pc

        self._event_rules(t, file, officer_ids)
        order = pc.sort_indices(t, [("event_id", "ascending")])
        self.result.sorted_keys["events"] = keys = pc.take(t["event_id"], order)
        self.add_rows(
            file, "event_id", "must be unique (the value is on several rows)",
            _duplicates(keys, order),
        )  # fmt: skip
        return order

    def _event_rules(self, t: pa.Table, file: str, officer_ids: pa.ChunkedArray | None) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if officer_ids is not None:
            self._foreign_key(t, file, officer_ids)
        bad_type = _snake_case_bad(t["event_type"])
        self.add(
            file, "event_type", "must be lower_snake_case (for example use_of_force)", bad_type
        )
        self.add(
            file,
            "reported_date",
            "must not be before event_date",
            pc.less(t["reported_date"], t["event_date"]),
        )
        if CATEGORY_GROUP in t.column_names:  # optional: the agency's categories mapped
            group = t[CATEGORY_GROUP].cast(pa.string())
            groups = pa.array(["", *CATEGORY_GROUPS])
            self.add(
                file,
                CATEGORY_GROUP,
                f"must be one of {', '.join(CATEGORY_GROUPS)} or empty (docs/contract.md)",
                pc.and_(pc.is_valid(group), pc.invert(pc.is_in(group, groups))),
            )
        finding = t["finding"]
        allowed = pa.array(FINDINGS)
        bad_finding = pc.and_(pc.is_valid(finding), pc.invert(pc.is_in(finding, allowed)))
        self.add(file, "finding", f"must be one of {', '.join(FINDINGS)} or empty", bad_finding)
        need_date = pc.and_(
            pc.and_(pc.is_in(finding, allowed), pc.not_equal(finding, "pending")),
            pc.is_null(t["finding_date"]),
        )
        if _any(need_date):
            if self.finding_date_given is not None:
                need_date = pc.and_(need_date, pc.invert(self.finding_date_given))
            for value in FINDINGS[:-1]:
                self.add(
                    file,
                    "finding_date",
                    f"required when finding is {value!r}",
                    pc.and_(need_date, pc.equal(finding, value)),
                )
        known = pc.coalesce(t["reported_date"], t["event_date"])
        self.add(
            file,
            "finding_date",
            "must not be before reported_date (event_date when reported_date is empty)",
            pc.less(t["finding_date"], known),
        )

    def assignments(self, t: pa.Table, file: str, officer_ids: pa.ChunkedArray | None) -> pa.Array:
        import pyarrow.compute as pc

        if officer_ids is not None:
            self._foreign_key(t, file, officer_ids)
        self.add(
            file,
            "kind",
            "must be lower_snake_case (unit, rank, shift, district, ...)",
            _snake_case_bad(t["kind"]),
        )
        self.add(
            file,
            "end_date",
            "must not be before start_date",
            pc.less(t["end_date"], t["start_date"]),
        )
        keys = [(c, "ascending", "at_start") for c in t.column_names]
        return pc.sort_indices(t, keys)

    def _foreign_key(self, t: pa.Table, file: str, officer_ids: pa.ChunkedArray) -> None:
        import pyarrow.compute as pc

        known = pc.unique(officer_ids.drop_null())
        unknown = _rows_with_bad_values(t["officer_id"], lambda v: pc.invert(pc.is_in(v, known)))
        self.add(file, "officer_id", "no officer with this officer_id in officers", unknown)


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {"str": pa.string(), "date": pa.date32(), "int": pa.int32()}[kind]


def validate_package(path: Path, progress: Progress | None = None) -> Validation:
    """Check a package folder against every rule of the contract.

    Never raises for a bad package: every problem (missing or unreadable files, missing
    columns, bad values) is collected in the returned :class:`Validation`. Only a path that
    is not a folder raises :class:`ContractError`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    path = Path(path)
    if not path.is_dir():
        raise ContractError(f"{path}: not a folder (a package is a folder of table files)")
    result = Validation(package=path)
    say = progress or (lambda _msg: None)
    check = _Checker(result)

    for name in TABLES:
        try:
            found = find_table_file(path, name)
        except ContractError as e:
            check.whole(name, None, str(e).split(": ", 1)[-1])
            continue
        if found is None:
            if name in REQUIRED_TABLES:
                names = " or ".join(f"{name}{s}" for s in SUFFIXES)
                check.whole(name, None, f"required file is missing ({names})")
            continue
        result.files[name] = found

    normalized: dict[str, pa.Table] = {}
    set_aside_ids: list[str] = []
    for name, file_path in result.files.items():
        say(f"reading {file_path.name}")
        try:
            raw = read_raw(file_path)
        except CsvDamage as e:
            raw = check.damaged(file_path.name, e.damage)
            if name == "officers":
                set_aside_ids = e.damage.set_aside_ids
        except ContractError as e:
            check.whole(file_path.name, None, str(e))
            continue
        result.input_rows[name] = raw.num_rows
        say(f"checking {file_path.name}")
        table = check.table(name, raw, file_path.name)
        if table is not None:
            normalized[name] = table

    officer_ids = normalized["officers"]["officer_id"] if "officers" in normalized else None
    if officer_ids is not None and set_aside_ids:
        officer_ids = pa.chunked_array([*officer_ids.chunks, pa.array(set_aside_ids, pa.string())])
    orders: dict[str, pa.Array] = {}
    if "officers" in normalized:
        orders["officers"] = check.officers(normalized["officers"], result.files["officers"].name)
    if "events" in normalized:
        say("checking events rules")
        orders["events"] = check.events(
            normalized["events"], result.files["events"].name, officer_ids
        )
    if "assignments" in normalized:
        orders["assignments"] = check.assignments(
            normalized["assignments"], result.files["assignments"].name, officer_ids
        )

    if result.ok:
        if "events" in normalized:
            ev = normalized["events"]
            i = ev.schema.get_field_index("reported_date")
            ev = ev.set_column(
                i, "reported_date", pc.coalesce(ev["reported_date"], ev["event_date"])
            )
            normalized["events"] = ev
        if "assignments" not in normalized:
            normalized["assignments"] = pa.table(
                {c: pa.array([], _arrow_type(k)) for c, k in COLUMNS["assignments"].items()}
            )
            orders["assignments"] = pa.array([], pa.uint64())
        result.tables = normalized
        result.orders = orders
    return result
