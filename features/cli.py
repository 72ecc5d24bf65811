"""CLI commands of this package (registered by ews.cli): ``ews features build|describe``.

Heavy libraries (pandas, Ibis, DuckDB, Spark) are imported inside the commands so that
``ews --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ews.cli_style import AGENCY_HELP, EXIT_FAILED, EXIT_USAGE, fail, parse_date

if TYPE_CHECKING:
    from features.build import BatchDone
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


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    return fail(message, code)


def _spec(path: Path | None) -> FeatureSpec:
    from features.spec import SpecError, default_spec, load_spec

    try:
        return load_spec(path) if path is not None else default_spec()
    except SpecError as e:
        raise _fail(str(e), 2) from None


def _dates(
    as_of: list[dt.date] | None, start: dt.date | None, end: dt.date | None, every: str
) -> list[dt.date]:
    """The as-of dates: the ones given, or start, start + every, ... up to end inclusive."""
    from features.durations import parse_duration

    try:
        if as_of:
            if start or end:
                raise ValueError("give either --as-of dates or --from/--to, not both")
            return sorted(set(as_of))
        if not (start and end):
            raise ValueError("give --as-of DATE (repeatable) or --from DATE --to DATE")
        lo, hi = start, end
        if hi < lo:
            raise ValueError(f"--to {hi} is before --from {lo}")
        step = parse_duration(every)
        out, k = [], 0
        while (d := step.after(lo, k)) <= hi:
            out.append(d)
            k += 1
        return out
    except ValueError as e:
        raise _fail(str(e), EXIT_USAGE) from None


@features_app.command()
def build(
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write the table to."),
    as_of: list[dt.date] | None = typer.Option(
        None,
        "--as-of",
        parser=parse_date,
        metavar="DATE",
        help="An as-of date (YYYY-MM-DD); repeat for several.",
    ),
    start: dt.date | None = typer.Option(
        None, "--from", parser=parse_date, metavar="DATE", help="First as-of date of a series."
    ),
    end: dt.date | None = typer.Option(
        None, "--to", parser=parse_date, metavar="DATE", help="Last possible as-of date."
    ),
    every: str = typer.Option("1y", "--every", help="Step of the series: 1y, 6m, 90d, ..."),
    engine: str = typer.Option(
        "duckdb",
        "--engine",
        help="duckdb (in process) or spark (master from EWS_SPARK_MASTER, default local[2]).",
    ),
    agency: str | None = typer.Option(None, "--agency", help=AGENCY_HELP),
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
    dates_per_batch: int | None = typer.Option(
        None,
        "--dates-per-batch",
        min=1,
        help=(
            "As-of dates computed per query (default: about a million officer-dates per "
            "query, so all dates at once for a small agency and one at a time for a very "
            "large one). Fewer dates per query need less memory; the table is the same."
        ),
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace --out if it exists (only once the new table is done)."
    ),
) -> None:
    """Build the feature table of a snapshot at one or more as-of dates.

    Rows are the cohort at each date (appointed before it, not separated before it);
    columns are officer_id, as_of_date, then the spec's columns. The dates are computed in
    batches (--dates-per-batch) and each batch is written straight to the Parquet file, so
    memory stays bounded however many officers and dates; DuckDB holds at most
    EWS_MEMORY_LIMIT (default 80% of RAM) and spills to EWS_TEMP_DIR beyond it. Example: ews
    features build --from 2010-01-01 --to 2015-01-01 --every 1y --out features.parquet
    """
    from ews.contract import ContractError
    from ews.store import Snapshot, StoreError, Workspace
    from features.cohort import CohortSpec

    spec = _spec(spec_file)
    dates = _dates(as_of, start, end, every)
    if engine not in ("duckdb", "spark"):
        raise _fail(f"unknown engine {engine!r}: use duckdb or spark", EXIT_USAGE)
    if out.is_dir():
        raise _fail(
            f"--out {out} is a folder: give the Parquet file to write, "
            f"e.g. {out / 'features.parquet'}",
            EXIT_USAGE,
        )
    if out.exists() and not overwrite:
        raise _fail(
            f"--out {out} exists: pass --overwrite to replace it, or give another --out",
            EXIT_USAGE,
        )
    try:
        cohort = CohortSpec(require_assignment=require_assignment)
    except ValueError as e:
        raise _fail(str(e), EXIT_USAGE) from None
    source: Path | Snapshot
    snap_id = "-"
    if package is not None:
        source = package
    else:
        from ews.cli_style import resolve_agency

        try:
            snap = Workspace().snapshot(resolve_agency(agency), snapshot)
        except StoreError as e:
            raise _fail(str(e), EXIT_USAGE) from None
        source, snap_id = snap, f"{snap.agency}/{snap.id}"

    from features.build import write_features
    from features.diagnostics import concept_lines, empty_cohort_reasons

    try:  # a concept of the spec that matches no event of the data, named before the work
        for line in concept_lines(source, spec):
            typer.secho(f"warning: {line}", err=True, fg=typer.colors.YELLOW)
    except ContractError as e:
        raise _fail(str(e)) from None
    try:
        with _DateProgress(len(dates), engine) as progress:
            report = write_features(
                source,
                dates,
                out,
                spec,
                engine=engine,
                cohort=cohort,
                dates_per_batch=dates_per_batch,
                on_batch=progress.done,
            )
    except (ContractError, RuntimeError) as e:
        raise _fail(str(e)) from None
    have = {d for d, n in report.rows_by_date.items() if n}
    reasons = empty_cohort_reasons(source, [d for d in dates if d not in have], cohort)
    if report.rows == 0:
        out.unlink(missing_ok=True)
        raise _fail("the cohort is empty at every as-of date:\n  " + "\n  ".join(reasons))
    for reason in reasons:
        typer.secho(f"warning: empty cohort at {reason}", err=True, fg=typer.colors.YELLOW)
    typer.echo(
        f"wrote {out}: {report.rows:,} rows x {len(spec.columns)} features, "
        f"{len(dates)} as-of dates ({dates[0]} .. {dates[-1]}) in {report.batches} "
        f"quer{'y' if report.batches == 1 else 'ies'}, engine {engine}, "
        f"{report.seconds:.1f} s, spec {spec.name} {spec.hash}, snapshot {snap_id}"
    )
    if report.degenerate is not None:
        for line in report.degenerate.lines(len(spec.columns)):
            typer.echo(line)


class _DateProgress:
    """Progress of a build per as-of date: a bar in a terminal (dates done, elapsed and
    remaining time), one line per batch on standard error in a log."""

    def __init__(self, n_dates: int, engine: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.n_dates = n_dates
        self.dates_done = 0
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} dates"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # a log gets lines instead
        )
        self.task = self.bar.add_task(f"computing features on {engine}", total=n_dates)

    def __enter__(self) -> _DateProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def done(self, batch: BatchDone) -> None:
        self.dates_done += len(batch.dates)
        day = batch.dates[0] if len(batch.dates) == 1 else f"{batch.dates[0]} .. {batch.dates[-1]}"
        line = (
            f"[{batch.seconds:7.1f} s] {self.dates_done}/{self.n_dates} dates: {day}, "
            f"{batch.rows:,} rows"
        )
        if self.console.is_terminal:
            self.bar.update(self.task, completed=self.dates_done, description=line[12:])
        else:
            import sys

            print(line, file=sys.stderr, flush=True)


@features_app.command()
def describe(
    spec_file: Path | None = typer.Option(
        None, "--spec", help="Feature spec YAML; default features/default_spec.yaml."
    ),
    family: str | None = typer.Option(None, "--family", help="Only this family (e.g. peer)."),
) -> None:
    """List every column of a spec: its family, its plain-language description (N stands for
    the officer's value, UNIT and RANK for the officer's groups) and an example value."""
    from ews.cli_style import print_table

    spec = _spec(spec_file)
    cols = [c for c in spec.columns if family is None or c.family == family]
    rows = []
    for c in cols:
        description, example = describe_template(
            c.description_template, c.dtype, 34.5 if c.family == "attribute" else None
        )
        rows.append(
            {"column": c.name, "family": c.family, "description": description, "e.g.": example}
        )
    print_table(
        rows,
        ["column", "family", "description", "e.g."],
        f"spec {spec.name} ({spec.hash}): {len(cols)} columns",
        left=("column", "family", "description"),
    )


_EXAMPLES = {"int": 3, "float": 2.5, "bool": 1, "str": "12"}


def describe_template(
    template: str, dtype: str = "float", value: object | None = None
) -> tuple[str, str]:
    """A column's description template as (description, example value): the ``{value...}``
    field becomes ``N``, ``{unit}`` and ``{rank}`` become ``UNIT`` and ``RANK``; the example is
    the field formatted as the explanation would show it (``value``, or one typical of
    ``dtype``)."""
    import string

    description, example = [], ""
    for literal, field, spec, _conv in string.Formatter().parse(template):
        description.append(literal)
        if field is None:
            continue
        if field == "value":
            if value is None or dtype == "str":
                value = 0.4 if spec and spec.endswith("%") else _EXAMPLES.get(dtype, 2.5)
            try:
                example = format(value, spec or "")
            except (TypeError, ValueError):
                example = str(value)
            description.append("N%" if spec and spec.endswith("%") else "N")
        else:
            description.append(field.upper())
    return "".join(description), example


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``ews`` app."""
    app.add_typer(features_app, name="features")
