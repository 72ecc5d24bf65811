"""``ews export-public``: the Sec. 3(c) public release (the work is in :mod:`ews.public`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ews.cli_style import fail, resolve_agency, usage_error


def export_public(
    out: Path = typer.Option(..., "--out", help="Folder to write to (created; must be empty)."),
    agency: list[str] | None = typer.Option(
        None, "--agency", help="An agency of the workspace; repeat for several (default: all)."
    ),
    min_count: int = typer.Option(
        11, "--min-count", min=1, help="Publish only 0 or counts of at least this."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
) -> None:
    """Write the Sec. 3(c) public release: aggregated, anonymized counts per agency and year.

    Complaint allegations and use-of-force reports by category and finding, and the Sec.
    3(b) records (terminations, decertifications, criminal convictions, civil judgments,
    resignations under investigation), from each agency's newest snapshot. No officer, case
    or unit identifier and no date finer than the year is written.

    No published count lies between 1 and --min-count minus 1 (`s` marks a suppressed
    number); complementary suppression, checked by linear programming, ensures no
    suppressed number can be recovered from the published totals. Writes one CSV per table
    and a README.md, atomically. Exit 0 written, 1 no data, 2 bad input (an unknown agency,
    a non-empty --out without --force).
    """
    from ews.public import PublicExportError, build_release, write_release
    from ews.store import Workspace

    ws = Workspace()
    if agency:
        names = list(dict.fromkeys(resolve_agency(a, ws) for a in agency))
    else:
        names = ws.agencies()
        if not names:
            resolve_agency(None, ws)  # raises: the workspace holds no data yet
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise usage_error(f"{out} is not an empty folder: choose another --out or pass --force")
    try:
        release = build_release(ws, names, min_count)
    except PublicExportError as e:
        raise fail(str(e)) from None
    try:
        files = write_release(release, out, force=force)
    except PublicExportError as e:
        raise usage_error(str(e)) from None
    except OSError as e:
        raise fail(f"could not write {out}: {e}") from None
    s = release.summary()
    typer.echo(
        f"wrote {out} ({', '.join(p.name for p in files)}) for "
        f"{', '.join(f'{a} (snapshot {i})' for a, i in release.snapshots.items())}"
    )
    typer.echo(
        f"{s['tables']} tables, {s['numbers']:,} numbers, {s['suppressed']:,} suppressed "
        f"({s['primary']:,} below {min_count}, {s['complementary']:,} "
        f"complementary); every suppressed number audited by linear programming: "
        f"none recoverable"
    )


def register(app: typer.Typer) -> None:
    """Add ``export-public`` to the ``ews`` app."""
    app.command("export-public")(export_public)
