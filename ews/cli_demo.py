"""``ews demo``: the whole job on the embedded defaults, for a first look.

A synthetic agency is generated. Its records as known at the start of its last year are
ingested, the default experiment is trained and compared with the rules on honest temporal
splits, and the champion scores every officer at that date. Then, as an agency's next data
refresh would, the whole package is ingested and the same champion scores each quarter of the
last year (its training labels end before every one of them: no look-ahead); drift is checked
at the last of them. Demo users are created and the service is served on localhost. Every
step calls the same library functions as the individual commands.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

AGENCY = "demo"


def demo(
    officers: int = typer.Option(1500, help="Officers of the synthetic agency."),
    years: int = typer.Option(
        7, min=3, help="Years of records (the last one arrives as a later data refresh)."
    ),
    seed: int = typer.Option(7, help="Random seed of the synthetic agency."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the result at the end."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on."),
    port: int = typer.Option(8000, help="Port to serve on."),
) -> None:
    """Run the main job on a synthetic demo agency and serve it on localhost.

    Steps: ews synth -> ews ingest (the records known at the start of the last year) -> ews
    train -> ews score -> ews ingest (the whole package) -> ews score each quarter of the last
    year -> ews drift -> users -> ews serve. Run again, it reuses the identical snapshots
    (content-addressed) and retrains. The workspace is
    EWS_HOME (default ./ews-home).
    """
    import sys
    import time

    from api.security import UserError, create_user, reset_token
    from ews.contract import cut_package
    from ews.db import open_app_database
    from ews.ingest import ingest_package, journal_ingest
    from ews.settings import get_settings
    from ews.synth import synthesize
    from models.experiment import data_end, load_config, run_experiment
    from models.scoring import score

    home = get_settings().home
    t0 = time.perf_counter()
    typer.echo(f"1/6 generating a synthetic agency: {officers} officers, {years} years")
    package = home / "demo-package"
    synthesize(package, officers=officers, years=years, seed=seed, start_year=2015, quiet=True)
    last_year = dt.date(2015 + years - 1, 1, 1)

    typer.echo(f"2/6 validating and ingesting the records known before {last_year}")
    known = cut_package(package, home / "demo-package-known", last_year)
    result = _ingest(known, ingest_package, journal_ingest)

    typer.echo("3/6 training the default experiment (models vs rules, temporal splits)")
    cfg = load_config(None, agency=AGENCY, labels=["sustained_or_force"])
    # a progress display only on a terminal: in a log it leaves blank lines
    experiment = run_experiment(cfg, tracking=True, progress=sys.stderr.isatty())
    path = experiment.save(home / "experiments" / experiment.config_hash / "results.json")
    experiment.save_predictions(path.with_name("predictions.parquet"))  # the audit report's
    typer.echo(f"    results: {path}")
    picked = {r["test_date"]: r["method"] for r in experiment.records if r.get("selected")}
    for r in (r for r in experiment.records if r.get("deployed")):
        then = picked.get(r["test_date"])
        also = f" (chosen before it: {then})" if then and then != r["method"] else ""
        typer.echo(
            f"    test year {r['test_date']}: {r['method']}{also}, AUC "
            f"{r.get('auc') or 0:.3f}, precision {r.get('precision') or 0:.3f} (evaluation only)"
        )
    from models.cli import champion_lines, choice_lines, gate_lines

    for line in choice_lines(experiment, header=False) + champion_lines(experiment, "    "):
        typer.echo(line if line.startswith("    ") else "  " + line)
    passed, failed = gate_lines(experiment)
    for paragraph in passed:
        typer.echo(f"    promotion gate: {paragraph}")
    if failed:  # nothing to score with: say why, as `ews train` does
        for paragraph in failed:
            typer.echo(f"    NOT PROMOTED: {paragraph}")
        raise typer.Exit(1)

    as_of = last_year
    typer.echo(f"4/6 scoring every officer as of {as_of}")
    flags = score(as_of, agency=AGENCY)
    typer.echo(f"    {int(flags['flagged'].sum())} of {len(flags)} officers flagged")

    typer.echo(
        "5/6 a data refresh: ingesting the whole package, scoring each quarter, checking drift"
    )
    result = _ingest(package, ingest_package, journal_ingest)
    end = data_end(result.snapshot) + dt.timedelta(days=1)
    quarters = [dt.date(as_of.year, m, 1) for m in (4, 7, 10)] + [dt.date(as_of.year + 1, 1, 1)]
    for day in (d for d in quarters if d <= end):
        flags = score(day, agency=AGENCY)
        typer.echo(f"    as of {day}: {int(flags['flagged'].sum())} of {len(flags)} flagged")
    from models.drift import drift

    check = drift(day, agency=AGENCY)
    verdict = "ALERT" if check["alert"] else "no alert"
    typer.echo(
        f"    drift at {day} against the training dates: {len(check['drifted_columns'])} of "
        f"{check['columns']} inputs drifted ({verdict}); reviewers see it on the Drift page"
    )
    from models.audit_report import keep_built

    keep_built(AGENCY, lambda line: typer.echo(f"    {line}"))
    flagged = flags[flags["flagged"].astype(bool)]
    for _, row in flagged.head(3).iterrows():
        typer.echo(
            f"    officer {row['officer_id']} (unit {row.get('unit')}): {row['explanation']}"
        )

    typer.echo("6/6 demo users (tokens are shown once)")
    unit = str(flagged.iloc[0]["unit"]) if len(flagged) else "1"
    db = open_app_database()
    try:
        tokens = {}
        for name, role, units in (
            ("demo-supervisor", "supervisor", [unit]),
            ("demo-reviewer", "reviewer", []),
        ):
            try:
                tokens[name] = create_user(db, name, role, AGENCY if units else None, units)
            except UserError:
                tokens[name] = reset_token(db, name)
    finally:
        db.dispose()
    typer.echo(f"    supervisor of unit {unit}: {tokens['demo-supervisor']}")
    typer.echo(f"    credentialing reviewer:   {tokens['demo-reviewer']}")
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s")
    if serve:
        from api.cli import serve_or_exit

        serve_or_exit(host=host, port=port)


def _ingest(package: Any, ingest_package: Any, journal_ingest: Any) -> Any:
    result = ingest_package(package, AGENCY)
    state = "new snapshot" if result.created else "identical snapshot already stored"
    typer.echo(f"    snapshot {result.snapshot.id} ({state})")
    journal_ingest(result, str(package))
    return result


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
