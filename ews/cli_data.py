"""Data commands: validate, ingest, status.

Exit codes: 0 ok, 2 the package breaks the contract (one line per problem on stdout) or
cannot be read (no such folder, an unreadable file), 1 any other error (a clear message on
stderr, no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ews.cli_style import EXIT_FAILED, EXIT_USAGE, fail

if TYPE_CHECKING:
    from rich.console import Console

    from ews.validate import Validation

EXIT_INVALID = EXIT_USAGE


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    return fail(message, code)


class _Stages:
    """A rich spinner on stderr naming the current stage, with elapsed time."""

    def __init__(self) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=_err(),
            transient=True,
            disable=not _err().is_terminal,  # in a log, a transient display leaves a blank line
        )
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self) -> _Stages:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, message: str) -> None:
        self.progress.update(self.task, description=message)


def contract_doc() -> str:
    """Where the data contract is documented: docs/contract.md of the source tree when this
    install has it, else its place in the repository."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "contract.md"
    return str(doc) if doc.is_file() else "docs/contract.md in the ews repository"


def _print_notes(validation: Validation) -> None:
    for note in validation.notes:
        _err().print(f"note: {note}", highlight=False, markup=False)


def _print_problems(validation: Validation, cap: int) -> None:
    for line in validation.report_lines(cap):
        typer.echo(line)
    _print_notes(validation)
    _err().print(
        f"[red]{validation.package}: invalid package[/red], "
        f"{validation.problem_count:,} problem(s) in {len(validation.problems)} rule(s). "
        f"The data contract, rule by rule with examples: {contract_doc()}",
        highlight=False,
    )


def validate(
    path: Path = typer.Argument(..., help="Package folder (officers, events, assignments files)."),
    cap: int = typer.Option(
        50, "--max-lines", min=1, help="At most this many lines per file and rule."
    ),
) -> None:
    """Check a package against every rule of the contract, without storing anything.

    Prints one line per problem: file, row (1 = first data row), column and rule, e.g.
    `events.csv row 17, finding_date: required when finding is 'sustained'`. Exit 0 when
    the package is valid, 2 when it is not.
    """
    from ews.contract import ContractError
    from ews.validate import validate_package

    try:
        with _Stages() as stages:
            result = validate_package(path, progress=stages)
    except ContractError as e:  # no such folder, a file that cannot be read: bad input
        raise _fail(str(e), EXIT_INVALID) from None
    if not result.ok:
        _print_problems(result, cap)
        raise typer.Exit(EXIT_INVALID)
    _print_notes(result)
    rows = ", ".join(f"{n:,} {k}" for k, n in result.input_rows.items())
    typer.echo(f"{path}: valid ({rows})")


def ingest(
    path: Path = typer.Argument(
        ..., help="Package folder; with --format cpdp, the folder of CPDP files."
    ),
    agency: str | None = typer.Option(
        None,
        "--agency",
        help="Agency name (lower_snake_case); default: the folder's name (cpdp: chicago).",
    ),
    fmt: str = typer.Option(
        "contract",
        "--format",
        help="'contract' (an agency data package) or 'cpdp' (Chicago CPDP files, converted first).",
    ),
    cap: int = typer.Option(
        50, "--max-lines", min=1, help="At most this many problem lines per file and rule."
    ),
) -> None:
    """Validate a package, then store it as a new immutable snapshot of the agency.

    The snapshot id is a hash of the content: ingesting identical content again (even as
    CSV instead of Parquet, or with rows shuffled) stores nothing and says so. A package
    that breaks the contract is refused whole (exit 2) and nothing is stored. The snapshot
    appears by one atomic rename, so an interrupted ingest leaves the store as it was.
    """
    import time

    from ews.contract import ContractError
    from ews.ingest import IngestRefused, ingest_cpdp, ingest_package, journal_ingest

    if fmt not in ("contract", "cpdp"):
        raise _fail(f"unknown --format {fmt!r}: use 'contract' or 'cpdp'", EXIT_USAGE)
    t0 = time.perf_counter()
    try:
        with _Stages() as stages:
            if fmt == "cpdp":
                result, report = ingest_cpdp(
                    path, "chicago" if agency is None else agency, progress=stages
                )
            else:
                result, report = ingest_package(path, agency, progress=stages), None
    except IngestRefused as e:
        _print_problems(e.validation, cap)
        _err().print("nothing was stored", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except ContractError as e:  # no such folder, a file that cannot be read: bad input
        raise _fail(str(e), EXIT_INVALID) from None
    except (ValueError, OSError) as e:
        raise _fail(str(e)) from None
    if report is not None:
        summary = getattr(report, "summary", None)
        typer.echo(summary() if callable(summary) else str(report))
    _print_notes(result.validation)
    snap = result.snapshot
    m = snap.manifest
    journal_ingest(result, str(path))
    rows = ", ".join(f"{n:,} {k}" for k, n in m["rows"].items())
    if result.created:
        typer.echo(f"stored snapshot {snap.id} of agency {snap.agency} ({rows})")
    else:
        from ews.store import Workspace

        current = Workspace().snapshot(snap.agency).id
        note = "" if current == snap.id else f"; the current snapshot is {current}"
        typer.echo(
            f"nothing new: identical content is already snapshot {snap.id} of agency "
            f"{snap.agency} (created {m['created_at']}{note})"
        )
    _err().print(f"done in {time.perf_counter() - t0:.1f} s", highlight=False)


def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    agency: str | None = typer.Option(None, "--agency", help="Only this agency."),
) -> None:
    """Show the workspace: agencies, their snapshots (id, created, source), row counts per
    table and event type, date coverage and officer counts."""
    import json

    from ews.cli_style import check_agency, print_table
    from ews.store import Workspace

    ws = Workspace()
    home = ws.home.resolve()
    agencies = [check_agency(agency, ws)] if agency else ws.agencies()
    data: dict[str, Any] = {"home": str(home), "agencies": {}}
    for name in agencies:
        data["agencies"][name] = [s.manifest for s in ws.snapshots(name)]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"workspace: {home} (EWS_HOME)")
    if not data["agencies"]:
        typer.echo("It holds no data yet: run `ews ingest PATH`.")
        return
    for name, manifests in data["agencies"].items():

        def span(m: dict[str, Any], col: str) -> str:
            c = m.get("coverage", {}).get(col) or {}
            return f"{c.get('min')} .. {c.get('max')}"

        rows = [
            {
                "id": m["id"],
                "created": m["created_at"][:16].replace("T", " "),
                "officers": f"{m['rows']['officers']:,}",
                "events": f"{m['rows']['events']:,}",
                "assignments": f"{m['rows']['assignments']:,}",
                "events_dated": span(m, "event_date"),
            }
            for m in manifests
        ]
        print_table(
            rows,
            list(rows[0]),
            f"agency {name}: {len(manifests)} snapshot(s), newest last (created in UTC)",
            left=("id", "created", "events_dated"),
        )
        for m in manifests:
            src = m.get("source", {})
            typer.echo(
                f"  {m['id']}: from {src.get('format', '?')} {src.get('path', '?')}; "
                f"reported {span(m, 'reported_date')}"
            )
        counts = manifests[-1].get("events_by_type", {})
        print_table(
            [{"event_type": k, "events": f"{v:,}"} for k, v in counts.items()],
            ["event_type", "events"],
            f"agency {name}: events per type (current snapshot)",
            left=("event_type",),
        )


def register(app: typer.Typer) -> None:
    """Add the data commands to the ``ews`` app."""
    for command in (validate, ingest, status):
        app.command()(command)
