"""Commands that produce agency data packages: ``ews convert cpdp`` (adapters) and
``ews synth`` (the synthetic agency generator)."""

from __future__ import annotations

from pathlib import Path

import typer

from ews.cli_style import usage_error

convert_app = typer.Typer(
    help="Convert another format into an agency data package (contract v1).",
    no_args_is_help=True,
)


@convert_app.command("cpdp")
def convert_cpdp_command(
    src: Path = typer.Argument(
        ...,
        help="Folder with the CPDP 2018 files (cpd_officers, cpd_allegations, cpd_trr, "
        "cpd_unit_history, cpd_rank_year; .csv.gz).",
    ),
    out: Path = typer.Argument(..., help="Folder to write the package to (created if needed)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the output folder."),
) -> None:
    """Convert the Chicago CPDP 2018 release into an agency data package.

    Allegations become complaint events, force reports use_of_force events,
    unit history and yearly ranks assignments (ews.adapters.cpdp documents
    every mapping decision).

    Every dropped row is reported with its reason, every repaired value is
    counted. Current rank and unit (as of 2018) are left out: they would
    leak the future.
    """
    from ews.adapters.cpdp import convert_cpdp
    from ews.contract import ContractError

    try:
        report = convert_cpdp(src, out, progress=not quiet)
    except ContractError as exc:
        raise usage_error(str(exc)) from exc
    typer.echo(str(out) if quiet else report.summary())


def synth_command(
    out: Path = typer.Argument(..., help="Folder to write the package to (created if needed)."),
    officers: int = typer.Option(1000, "--officers", "-n", min=1, help="Number of officers."),
    years: int = typer.Option(5, "--years", "-y", min=1, max=60, help="Years of records."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed (same seed, same files)."),
    start_year: int = typer.Option(2010, "--start-year", help="First year of the records."),
    fmt: str = typer.Option("parquet", "--format", "-f", help="parquet or csv."),
) -> None:
    """Generate a synthetic agency with a known hidden truth.

    Units differ in exposure (patrol, specialized, desk). Officers have a
    hidden log-normal propensity that drifts each year (ews.synth documents
    the whole model).

    Activity (arrests, calls for service, traffic stops) comes at a rate ~
    exposure; complaints and use of force at a rate ~ exposure x propensity:
    about 13-14 events per active officer-year.

    Complaint findings arrive months to years later (sustained likelier with
    propensity; some still pending at the end). Transfers, promotions,
    separations (likelier with propensity) and a few Sec. 3(b) records.

    Sex, race and birth year are independent of propensity. The propensity
    goes to OUT.truth.parquet next to the package, never inside it.
    """
    from ews.synth import synthesize

    if fmt not in ("parquet", "csv"):
        raise usage_error(f"--format must be parquet or csv, not {fmt!r}")
    report = synthesize(
        out, officers=officers, years=years, seed=seed, start_year=start_year, fmt=fmt
    )
    typer.echo(report.summary())


def register(app: typer.Typer) -> None:
    """Add the source commands (``convert``, ``synth``) to the ``ews`` app."""
    app.add_typer(convert_app, name="convert")
    app.command("synth")(synth_command)
