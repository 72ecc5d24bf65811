"""CLI commands of this package (registered by ews.cli): train, evaluate, score, models.

Heavy libraries (scikit-learn, MLflow, matplotlib) are imported inside the commands, so
``ews --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import typer

models_app = typer.Typer(
    help="The model registry: list registered models and move aliases (champion, challenger).",
    no_args_is_help=True,
)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _known_errors() -> tuple[type[Exception], ...]:
    from ews.store import StoreError
    from models.experiment import ExperimentError
    from models.grid import GridError
    from models.registry import RegistryError
    from models.scoring import ScoringError

    return (ExperimentError, GridError, RegistryError, ScoringError, StoreError)


def _print_table(rows: list[dict[Any, Any]], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        header = {"selected": "sel", "percentile": "pct"}.get(col, col)
        left = col in ("method", "label", "name", "explanation")
        justify: Literal["left", "right"] = "left" if left else "right"
        table.add_column(header, justify=justify, overflow="fold")
    for row in rows:
        cells = []
        for col in columns:
            v = row.get(col)
            if isinstance(v, float):
                cells.append("–" if v != v else f"{v:.3f}")
            elif isinstance(v, list):
                cells.append(",".join(str(x) for x in v))
            elif isinstance(v, bool):
                cells.append("*" if v else "")
            else:
                cells.append("–" if v is None else escape(str(v)))
        style = "bold yellow" if row.get("selected") else None
        table.add_row(*cells, style=style)
    Console().print(table)


def train(
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Experiment YAML (default: the packaged default; see models/default_experiment.yaml).",
        exists=True,
        dir_okay=False,
    ),
    agency: str = typer.Option(
        None, help="Workspace agency (default: the config's, or the only one)."
    ),
    snapshot: str = typer.Option(None, help="Snapshot id (default: the agency's current one)."),
    out: Path = typer.Option(
        None, help="Folder for results.json (default: EWS_HOME/experiments/<config hash>)."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register each label's champion in MLflow."
    ),
) -> None:
    """Train the model grid and compare it with the rules on honest temporal splits.

    The config is checked against the feature spec and the data before any work. Features are
    built once for every as-of date; each split trains only on dates whose label window ends
    by its test date (label maturity on by default); the model is chosen on validation splits
    inside the training years (or, with splitter.inner_splits 0, every candidate is evaluated
    and none chosen). Prints a line per step and split, then the metrics table; writes
    results.json and predictions.parquet (every test prediction) and registers the champion
    per label (alias `champion`), or every fitted model with `registry: all`.
    """
    from ews.settings import get_settings
    from models.experiment import load_config, run_experiment
    from models.report import text_table

    try:
        cfg = load_config(config, agency=agency, snapshot=snapshot)
        result = run_experiment(cfg, tracking=register, progress=True)
    except _known_errors() as exc:
        _fail(exc)
        return
    folder = out or get_settings().home / "experiments" / result.config_hash
    path = result.save(folder / "results.json")
    preds = result.save_predictions(folder / "predictions.parquet")
    typer.echo(f"experiment {result.config_hash} ({result.agency}, snapshot {result.snapshot_id})")
    typer.echo(text_table(result.records, width=100))
    typer.echo(f"\nresults: {path}")
    if preds is not None:
        n = 0 if result.predictions is None else len(result.predictions)
        typer.echo(f"predictions: {preds} ({n} rows)")
    for label, champ in result.champions.items():
        reg = champ.registered
        where = (
            f" -> {reg['name']} v{reg['version']} (champion, run {reg['run_id']})" if reg else ""
        )
        typer.echo(f"{label}: {champ.candidate['name']}{where}")
    others = [c.registered for c in result.fitted if c.registered]
    if others:
        typer.echo(f"registered {len(others)} more models (no alias): {others[0]['name']} ...")
    steps = ", ".join(
        f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f}" for k, v in result.timings.items()
    )
    typer.echo(f"seconds: {steps}")


def evaluate(
    run: str = typer.Option(None, "--run", help="MLflow run id of a registered champion."),
    results: Path = typer.Option(
        None,
        "--results",
        help="A results.json written by `ews train`.",
        exists=True,
        dir_okay=False,
    ),
    out: Path = typer.Option(..., "--out", help="Folder for evaluation.json and evaluation.html."),
) -> None:
    """Write the evaluation report (JSON + self-contained HTML with plots) of an experiment.

    Without --run or --results, the newest results.json of the workspace is used.
    """
    from models import registry
    from models.report import write_report

    if run is not None and results is not None:
        _fail(ValueError("give exactly one of --run RUN_ID or --results FILE"))
    if run is None and results is None:
        from ews.settings import get_settings

        found = sorted(
            (get_settings().home / "experiments").glob("*/results.json"),
            key=lambda p: p.stat().st_mtime,
        )
        if not found:
            _fail(
                ValueError(
                    "no experiment results in the workspace: run `ews train`, or give "
                    "exactly one of --run RUN_ID or --results FILE"
                )
            )
        results = found[-1]
        typer.echo(f"using the newest results: {results}")
    try:
        data: Any = registry.run_results(run) if run is not None else results
        json_path, html_path = write_report(data, out)
    except (FileNotFoundError, ValueError, LookupError) as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {json_path}\nwrote {html_path}")


def score(
    as_of: str = typer.Option(..., "--as-of", help="As-of date YYYY-MM-DD."),
    model: str = typer.Option(
        "champion", help="champion, NAME (its champion), NAME@ALIAS or NAME/VERSION."
    ),
    agency: str = typer.Option(None, help="Workspace agency (default: the model's)."),
    snapshot: str = typer.Option(None, help="Snapshot id (default: the current one)."),
    out: Path = typer.Option(None, help="Also write the flags to this .parquet or .csv file."),
    top_pct: float = typer.Option(None, help="Flag this top share (default: the experiment's)."),
    like_rule: str = typer.Option(
        None, help="Flag as many officers as this rule does (e.g. cmpd)."
    ),
    explain: bool = typer.Option(True, "--explain/--no-explain", help="Explain every score."),
    allow_lookahead: bool = typer.Option(
        False,
        "--allow-lookahead",
        help="Score even with a model trained on outcomes known after the as-of date.",
    ),
) -> None:
    """Score every officer at an as-of date with a registered model and save the flags.

    Flags land in EWS_HOME/flags/<agency>/<date>.parquet (where the API reads them), each with
    its score, rank, the rules that fire, an explanation and its provenance. A model trained
    on outcomes known after the as-of date (its label cutoff) is refused unless
    --allow-lookahead.
    """
    from models.scoring import score as run_score

    try:
        day = dt.date.fromisoformat(as_of)
    except ValueError:
        _fail(ValueError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)"))
        return
    try:
        flags = run_score(
            day,
            model=model,
            agency=agency,
            snapshot=snapshot,
            out=out,
            flag_top_pct=top_pct,
            flag_like_rule=like_rule,
            explain=explain,
            progress=True,
            allow_lookahead=allow_lookahead,
        )
    except _known_errors() as exc:
        _fail(exc)
        return
    if flags.attrs.get("lookahead"):
        typer.secho(f"warning: look-ahead: {flags.attrs['lookahead']}", fg="yellow", err=True)
    top = flags[flags["flagged"]].head(15)
    cols = ["rank", "officer_id", "score", "percentile", "unit"]
    if "explanation" in top:
        cols.append("explanation")
    _print_table(top.to_dict(orient="records"), cols, f"flags at {day} (first 15)")
    first = flags.iloc[0]
    typer.echo(
        f"{int(flags['flagged'].sum())} of {len(flags)} officers flagged "
        f"({first['flag_rule']}); model {first['model_name']} v{first['model_version']}, "
        f"snapshot {first['snapshot_id']}"
    )
    if out is not None:
        typer.echo(f"wrote {out}")


@models_app.command("list")
def list_models() -> None:
    """List registered model versions with aliases and what they were trained on."""
    from models import registry

    rows = registry.list_models()
    if not rows:
        typer.echo("no registered model yet: run `ews train`")
        return
    for r in rows:
        aliases = f" @{',@'.join(r['aliases'])}" if r["aliases"] else ""
        typer.echo(
            f"{r['name']} v{r['version']}{aliases}  label={r['label']} "
            f"model={r['candidate']} snapshot={r['snapshot_id']} spec={r['spec_hash']} "
            f"config={r['config_hash']} seed={r['seed']}"
        )


@models_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Registered model name, e.g. ews-chicago-sustained."),
    version: str = typer.Argument(..., help="Version to promote."),
    alias: str = typer.Option("champion", help="Alias to move to this version."),
) -> None:
    """Point an alias (default `champion`) at a model version; scoring uses the champion."""
    from models import registry

    try:
        registry.promote(name, version, alias)
    except _known_errors() as exc:
        _fail(exc)
        return
    typer.echo(f"{name}@{alias} -> version {version}")


def _help(func: Any) -> str:
    """A docstring with each paragraph on one line, so the terminal wraps it once."""
    paragraphs = (func.__doc__ or "").strip().split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def drift(
    as_of: str = typer.Option(..., "--as-of", help="The date to check, YYYY-MM-DD."),
    model: str = typer.Option("champion", help="Model: champion, NAME, NAME@ALIAS, NAME/VERSION."),
    agency: str = typer.Option(None, help="Workspace agency (default: the model's)."),
    reference: list[str] = typer.Option(
        None, "--reference", help="Reference as-of date (repeat; default: the training dates)."
    ),
    out: Path = typer.Option(None, help="Folder for drift.json and drift.html."),
) -> None:
    """Check whether the model's input indicators at a date have drifted from those it was
    trained on (Evidently data drift, column by column; the method and threshold are
    recorded per column). Exit 0 either way; the share of drifted columns is printed."""
    from models.drift import drift as check
    from models.scoring import ScoringError

    known: tuple[type[Exception], ...] = (ScoringError, ValueError, *_known_errors())
    try:
        ref = [dt.date.fromisoformat(d) for d in reference] if reference else None
        report = check(dt.date.fromisoformat(as_of), model, agency, ref, out)
    except known as exc:
        _fail(exc)
        return
    share = report["drifted_share"]
    typer.echo(
        f"{report['model']} at {report['as_of']} vs {', '.join(report['reference_dates'])}: "
        f"{len(report['drifted_columns'])} of {report['columns']} input columns drifted"
        + (f" ({share:.0%})" if share is not None else "")
    )
    for col in report["drifted_columns"]:
        typer.echo(f"  drifted: {col}")
    typer.echo(f"report: {report['report']}")


audit_app = typer.Typer(
    help="The credentialing reviewers' audit of the flags (disparities by group).",
    no_args_is_help=True,
)


@audit_app.command("disparities")
def disparities(
    agency: str = typer.Option(..., help="Workspace agency."),
    as_of: str = typer.Option(None, "--as-of", help="Scored date YYYY-MM-DD (default: newest)."),
    by: list[str] = typer.Option(["race", "sex"], "--by", help="Officer attribute (repeat)."),
    min_group: int = typer.Option(20, help="Smaller groups are reported by size only."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Flag rates by group and, when the outcome window after the date is covered by the
    data, the outcome rate, precision, true and false positive rates of the flags by group,
    with the ratio of the lowest to the highest group (1.0 = parity). Race and sex are read
    here for the audit only; they are never model inputs."""
    import json

    from models.audit import disparities as audit

    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
        report = audit(agency, day, tuple(by), min_group=min_group)
    except (LookupError, ValueError) as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    known = "outcomes known" if report["outcome_known"] else "outcomes not yet known"
    typer.echo(
        f"{report['agency']} as of {report['as_of']} ({report['label']}, {known}): "
        f"{report['flagged']} of {report['officers']} officers flagged"
    )
    for attr, part in report["by"].items():
        groups = part["groups"]
        cols = ["group", "officers"] + [k for k in groups[0] if k not in ("group", "officers")]
        _print_table(groups, cols, f"by {attr} (lowest/highest: {part['min_over_max']})")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``ews`` app."""
    app.command("train", help=_help(train))(train)
    app.command("evaluate", help=_help(evaluate))(evaluate)
    app.command("score", help=_help(score))(score)
    app.command("drift", help=_help(drift))(drift)
    app.add_typer(models_app, name="models")
    app.add_typer(audit_app, name="audit")
