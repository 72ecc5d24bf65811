"""Build the as-of feature table of a package: the one entry point others call.

>>> from features.build import build_features, write_features
>>> df = build_features(snapshot, [date(2014, 1, 1), date(2015, 1, 1)])  # doctest: +SKIP
>>> report = write_features(snapshot, dates, Path("f.parquet"))  # doctest: +SKIP

Rows are the cohort at each as-of date (see :mod:`features.cohort`); columns are
``officer_id`` (str), ``as_of_date`` (datetime64), then the spec's columns in spec order,
sorted by date then officer.

Memory-bounded build: the dates are computed in batches of ``dates_per_batch`` dates, one
query per batch on the chosen engine (DuckDB by default, Spark with ``engine="spark"``). A
date's rows depend only on that date (peer groups are per date), so a batch gives exactly
the rows the one-query build gives for its dates. The engine's peak memory grows with the
rows of a batch, not of the whole table; DuckDB keeps within ``EWS_MEMORY_LIMIT`` and spills
to ``EWS_TEMP_DIR`` beyond it. :func:`write_features` streams each batch's rows, sorted by
the engine, straight into one Parquet file (one or more row groups per batch), so the table
never sits in memory whole; :func:`build_features` returns it as a pandas frame. By default
(``dates_per_batch=None``) a batch holds about :data:`ROWS_PER_BATCH` officer-dates: a small
agency's dates all go in one query, a million officers' one date per query.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from ibis.backends import BaseBackend

    from ews.store import Snapshot
    from features.cohort import CohortSpec
    from features.diagnostics import Degenerate
    from features.spec import FeatureSpec

_NUMPY_DTYPES: dict[str, Any] = {"int": "int64", "float": "float64"}
# officer-dates (officers in the package x dates) a batch aims at when dates_per_batch is
# None: about 3-4 GiB of DuckDB working memory (measured: 0.9 GiB peak at 75k rows)
ROWS_PER_BATCH = 1_000_000
CHUNK_ROWS = 131_072  # rows per Arrow chunk streamed from the engine (a Parquet row group)


def build_features(
    source: Snapshot | str | Path,
    as_of_dates: Iterable[Any],
    spec: FeatureSpec | None = None,
    engine: str | BaseBackend = "duckdb",
    progress: bool = False,
    cohort: CohortSpec | None = None,
    dates_per_batch: int | None = None,
) -> pd.DataFrame:
    """The feature table of ``source`` (a Snapshot or a normalized package folder) at each
    of ``as_of_dates``; ``engine`` is ``"duckdb"``, ``"spark"`` or an Ibis backend;
    ``dates_per_batch`` as in the module docstring (None: by the agency's size)."""
    import pyarrow as pa
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from features.spec import default_spec

    spec = spec or default_spec()
    parts: list[pa.Table] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        disable=not (progress and sys.stderr.isatty()),  # no blank line in a log
        transient=True,
    ) as bar:
        task = bar.add_task("connecting", total=None)
        batches = FeatureBatches(source, as_of_dates, spec, engine, cohort, dates_per_batch)
        for i, (dates, chunks) in enumerate(batches):
            bar.update(task, description=f"computing {_span(dates)} ({i + 1}/{len(batches)})")
            parts.extend(chunks)
    table = pa.concat_tables(parts) if parts else arrow_schema(spec).empty_table()
    return table.to_pandas(date_as_object=False)


@dataclass
class BatchDone:
    """One batch of dates written: its dates, rows and the time since the build started."""

    index: int  # 1-based
    of: int
    dates: list[dt.date]
    rows: int
    seconds: float


@dataclass
class WriteReport:
    """What :func:`write_features` wrote."""

    out: Path
    dates: list[dt.date]
    columns: int
    rows_by_date: dict[dt.date, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    degenerate: Degenerate | None = None

    @property
    def rows(self) -> int:
        return sum(self.rows_by_date.values())


def write_features(
    source: Snapshot | str | Path,
    as_of_dates: Iterable[Any],
    out: Path,
    spec: FeatureSpec | None = None,
    engine: str | BaseBackend = "duckdb",
    cohort: CohortSpec | None = None,
    dates_per_batch: int | None = None,
    on_batch: Callable[[BatchDone], None] | None = None,
) -> WriteReport:
    """Build the feature table batch by batch and write it to the Parquet file ``out``
    (replaced if it exists, only once the whole table is written: a failed build leaves the
    old file, or none). ``on_batch`` is called after each batch. Returns the rows per date
    and the columns that carry no information, computed while writing."""
    import pyarrow.parquet as pq

    from features.diagnostics import ColumnStats
    from features.spec import default_spec

    spec = spec or default_spec()
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder: give a file path such as {out}/f.parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    schema = arrow_schema(spec)
    stats = ColumnStats([c.name for c in spec.columns])
    batches = FeatureBatches(source, as_of_dates, spec, engine, cohort, dates_per_batch)
    report = WriteReport(out=out, dates=batches.dates, columns=len(spec.columns))
    report.rows_by_date = dict.fromkeys(batches.dates, 0)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for i, (dates, chunks) in enumerate(batches):
                rows = 0
                for chunk in chunks:
                    writer.write_table(chunk, row_group_size=CHUNK_ROWS)
                    stats.add(chunk)
                    rows += chunk.num_rows
                    for day, n in _rows_by_date(chunk).items():
                        report.rows_by_date[day] += n
                report.batches += 1
                if on_batch is not None:
                    secs = time.perf_counter() - started
                    on_batch(BatchDone(i + 1, len(batches), dates, rows, secs))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    report.seconds = time.perf_counter() - started
    report.degenerate = stats.degenerate()
    return report


class FeatureBatches:
    """The feature table in batches of dates: iterating gives, per batch, its dates and an
    iterator of its finished Arrow chunks (read them all before the next batch). One engine
    connection serves every batch. On DuckDB the build is compiled once per process and
    spec (features.plan) and each batch only runs its SQL; on Spark each batch builds the
    Ibis expression and its cached tables are dropped after it."""

    def __init__(
        self,
        source: Snapshot | str | Path,
        as_of_dates: Iterable[Any],
        spec: FeatureSpec,
        engine: str | BaseBackend = "duckdb",
        cohort: CohortSpec | None = None,
        dates_per_batch: int | None = None,
    ) -> None:
        from features.compile import as_dates
        from features.engines import package_folder

        self.folder = package_folder(source)
        self.dates = as_dates(as_of_dates)
        self.spec, self.engine, self.cohort = spec, engine, cohort
        if dates_per_batch is not None and dates_per_batch < 1:
            raise ValueError(f"dates_per_batch must be 1 or more, not {dates_per_batch}")
        per = dates_per_batch or auto_dates_per_batch(self.folder, len(self.dates))
        self.batches = [self.dates[i : i + per] for i in range(0, len(self.dates), per)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[list[dt.date], Iterator[pa.Table]]]:
        import gc

        from features.compile import features_expr
        from features.engines import connect, load_tables

        con = connect(self.engine)
        tables = load_tables(con, self.folder)
        schema = arrow_schema(self.spec)
        if self.engine == "duckdb":  # a connection of our own: the compiled plan (features.plan)
            from features.plan import bind, plan_for, run_plan

            tables = bind(con, tables)
            plan = plan_for(con, tables, self.spec, self.cohort)
            for dates in self.batches:
                yield dates, _finished(run_plan(con, plan, self.spec, dates, CHUNK_ROWS), schema)
            return
        for i, dates in enumerate(self.batches):
            expr = features_expr(tables, dates, self.spec, self.cohort)
            expr = expr.order_by(["as_of_date", "officer_id"])
            reader = expr.to_pyarrow_batches(chunk_size=CHUNK_ROWS)
            yield dates, _finished(reader, schema)
            del expr, reader
            if i + 1 < len(self.batches):  # after the last, the connection goes with them
                gc.collect()  # drops the batch's cached tables (ibis finalizers) before the next


def _finished(reader: pa.RecordBatchReader, schema: pa.Schema) -> Iterator[pa.Table]:
    import warnings

    while True:
        with warnings.catch_warnings():  # ibis 12 calls DuckDB's renamed fetch_record_batch
            warnings.filterwarnings("ignore", "fetch_record_batch", DeprecationWarning)
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
        yield finish_arrow(batch, schema)


def auto_dates_per_batch(folder: Path, n_dates: int, rows: int = ROWS_PER_BATCH) -> int:
    """Dates per batch so that a batch holds about ``rows`` officer-dates (at least one
    date), in batches of equal size: all dates at once for a small agency."""
    import pyarrow.parquet as pq

    officers = pq.ParquetFile(folder / "officers.parquet").metadata.num_rows
    n_batches = max(1, math.ceil(officers * n_dates / rows))
    return max(1, math.ceil(n_dates / n_batches))


def arrow_schema(spec: FeatureSpec) -> pa.Schema:
    """The Arrow schema of the feature table (what pandas reads back as the frame
    :func:`build_features` returns: datetime64[ns] dates, int64, float64, str)."""
    import pyarrow as pa

    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    fields = [pa.field("officer_id", pa.string()), pa.field("as_of_date", pa.timestamp("ns"))]
    return pa.schema(fields + [pa.field(c.name, types[c.dtype]) for c in spec.columns])


def finish_arrow(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """The engine's rows in the feature table's types; infinite and NaN floats (a rate
    over nothing) become missing, as in :func:`finish`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for f in schema:
        a = batch.column(f.name).cast(f.type)
        if pa.types.is_floating(f.type):
            a = pc.if_else(pc.is_finite(a), a, pa.scalar(None, f.type))
        cols.append(a)
    return pa.Table.from_arrays(cols, schema=schema)


def finish(raw: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Fix the column types engines return differently, and sort rows (the pandas
    counterpart of :func:`finish_arrow`, for a frame an engine returned whole)."""
    import numpy as np

    from features.cohort import finish_keys

    df = finish_keys(raw)
    for col in spec.columns:
        s = df[col.name]
        if col.dtype == "str":
            df[col.name] = s.astype(object).where(s.notna(), None)
        else:
            df[col.name] = s.astype(_NUMPY_DTYPES[col.dtype])
            if col.dtype == "float":
                df[col.name] = df[col.name].replace([np.inf, -np.inf], np.nan)
    return df


def _rows_by_date(chunk: pa.Table) -> dict[dt.date, int]:
    import pyarrow.compute as pc

    counts = pc.value_counts(chunk.column("as_of_date"))
    return {v["values"].as_py().date(): v["counts"].as_py() for v in counts}


def _span(dates: Sequence[dt.date]) -> str:
    return str(dates[0]) if len(dates) == 1 else f"{dates[0]} .. {dates[-1]}"
