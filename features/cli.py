"""CLI commands of this package (registered by ews.cli): ``ews features build|describe``.

Heavy libraries (pandas, Ibis, DuckDB, Spark) are imported inside the commands so that
``ews --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from features.spec import FeatureSpec

features_app = typer.Typer(
    name="features",
    help=(
        "As-of indicators: per officer and as-of date, counts, sustained findings, rates, "
        "recency, trends and peer comparisons, computed only from what was known at that "
        "date (reported_date < as-of date)."
    ),
    no_args_is_help=True,
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(code)


def _spec(path: Path | None) -> FeatureSpec:
    from features.spec import SpecError, default_spec, load_spec

    try:
        return load_spec(path) if path is not None else default_spec()
    except SpecError as e:
        raise _fail(str(e), 2) from None


def _dates(
    as_of: list[str] | None, start: str | None, end: str | None, every: str
) -> list[dt.date]:
    """The as-of dates: the ones given, or start, start + every, ... up to end inclusive."""
    from features.compile import as_dates
    from features.durations import parse_duration

    try:
        if as_of:
            if start or end:
                raise ValueError("give either --as-of dates or --from/--to, not both")
            return as_dates(as_of)
        if not (start and end):
            raise ValueError("give --as-of DATE (repeatable) or --from DATE --to DATE")
        lo, hi = as_dates([start])[0], as_dates([end])[0]
        if hi < lo:
            raise ValueError(f"--to {hi} is before --from {lo}")
        step = parse_duration(every)
        out, k = [], 0
        while (d := step.after(lo, k)) <= hi:
            out.append(d)
            k += 1
        return out
    except ValueError as e:
        raise _fail(str(e), 2) from None


@features_app.command()
def build(
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write the table to."),
    as_of: list[str] | None = typer.Option(
        None, "--as-of", help="An as-of date (YYYY-MM-DD); repeat for several."
    ),
    start: str | None = typer.Option(None, "--from", help="First as-of date of a series."),
    end: str | None = typer.Option(None, "--to", help="Last possible as-of date of a series."),
    every: str = typer.Option("1y", "--every", help="Step of the series: 1y, 6m, 90d, ..."),
    engine: str = typer.Option(
        "duckdb",
        "--engine",
        help="duckdb (in process) or spark (master from EWS_SPARK_MASTER, default local[2]).",
    ),
    agency: str | None = typer.Option(
        None, "--agency", help="Agency of the workspace (needed when it holds several)."
    ),
    snapshot: str | None = typer.Option(
        None, "--snapshot", help="Snapshot id (or prefix); default the agency's newest."
    ),
    package: Path | None = typer.Option(
        None, "--package", help="Read this normalized package folder instead of a snapshot."
    ),
    spec_file: Path | None = typer.Option(
        None, "--spec", help="Feature spec YAML; default features/default_spec.yaml."
    ),
    require_assignment: str | None = typer.Option(
        None,
        "--require-assignment",
        help="Only officers holding an assignment of this kind at t (e.g. rank).",
    ),
) -> None:
    """Build the feature table of a snapshot at one or more as-of dates.

    Rows are the cohort at each date (appointed before it, not separated before it);
    columns are officer_id, as_of_date, then the spec's columns. All dates are computed in
    one query. Example: ews features build --from 2010-01-01 --to 2015-01-01 --every 1y
    --out features.parquet
    """
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ews.contract import ContractError
    from ews.store import Snapshot, StoreError, Workspace
    from features.cohort import CohortSpec

    spec = _spec(spec_file)
    dates = _dates(as_of, start, end, every)
    if engine not in ("duckdb", "spark"):
        raise _fail(f"unknown engine {engine!r}: use duckdb or spark", 2)
    try:
        cohort = CohortSpec(require_assignment=require_assignment)
    except ValueError as e:
        raise _fail(str(e), 2) from None
    source: Path | Snapshot
    snap_id = "-"
    if package is not None:
        source = package
    else:
        try:
            snap = Workspace().snapshot(agency, snapshot)
        except StoreError as e:
            raise _fail(str(e)) from None
        source, snap_id = snap, f"{snap.agency}/{snap.id}"

    from features.build import finish
    from features.compile import features_expr
    from features.engines import connect, execute, load_tables, package_folder

    console = Console(stderr=True)
    t0 = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"connecting to {engine}", total=4)
        try:
            con = connect(engine)
            tables = load_tables(con, package_folder(source))
        except (ContractError, RuntimeError) as e:
            raise _fail(str(e)) from None
        bar.update(task, advance=1, description=f"compiling {len(spec.columns)} columns")
        expr = features_expr(tables, dates, spec, cohort)
        bar.update(task, advance=1, description=f"computing {len(dates)} as-of dates")
        df = finish(execute(expr), spec)
        bar.update(task, advance=1, description=f"writing {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out, index=False)
        bar.update(task, advance=1)
    secs = time.perf_counter() - t0
    typer.echo(
        f"wrote {out}: {len(df):,} rows x {len(spec.columns)} features, "
        f"{len(dates)} as-of dates ({dates[0]} .. {dates[-1]}), engine {engine}, "
        f"{secs:.1f} s, spec {spec.name} {spec.hash}, snapshot {snap_id}"
    )


@features_app.command()
def describe(
    spec_file: Path | None = typer.Option(
        None, "--spec", help="Feature spec YAML; default features/default_spec.yaml."
    ),
    family: str | None = typer.Option(None, "--family", help="Only this family (e.g. peer)."),
) -> None:
    """List every column of a spec with its family and plain-language description."""
    from rich.console import Console
    from rich.table import Table

    spec = _spec(spec_file)
    cols = [c for c in spec.columns if family is None or c.family == family]
    table = Table(title=f"spec {spec.name} ({spec.hash}): {len(cols)} columns")
    for h in ("column", "family", "description"):
        table.add_column(h)
    for c in cols:
        table.add_row(c.name, c.family, c.description_template)
    Console(width=200).print(table)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``ews`` app."""
    app.add_typer(features_app, name="features")
