"""CLI commands of this package (registered by ews.cli): train, evaluate, score, models.

Heavy libraries (scikit-learn, MLflow, matplotlib) are imported inside the commands, so
``ews --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer

from ews.cli_style import AGENCY_HELP, EXIT_FAILED, EXIT_USAGE, fail, parse_date, print_table

models_app = typer.Typer(
    help="The model registry: list registered models and move aliases (champion, challenger).",
    no_args_is_help=True,
)


def _fail(exc: Exception, code: int = EXIT_FAILED) -> None:
    from models.registry import AmbiguousModel

    choice = exc if isinstance(exc, AmbiguousModel) else exc.__cause__
    if isinstance(choice, AmbiguousModel):  # a champion per label: say which option chooses
        names = "; ".join(
            f"--model {n}" + (f" ({label})" if label else "") for n, label in choice.choices
        )
        raise fail(
            f"several models have the alias {choice.alias!r}: choose one with {names}", EXIT_USAGE
        )
    raise fail(str(exc), code)


def _known_errors() -> tuple[type[Exception], ...]:
    from ews.store import StoreError
    from models.experiment import ExperimentError
    from models.grid import GridError
    from models.registry import RegistryError
    from models.scoring import ScoringError

    return (ExperimentError, GridError, RegistryError, ScoringError, StoreError)


def _print_table(rows: list[dict[Any, Any]], columns: list[str], title: str) -> None:
    print_table(
        rows,
        columns,
        title,
        headers={"selected": "sel", "percentile": "pct"},
        left=("method", "label", "name", "explanation", "group", "officer_id", "unit"),
        highlight="selected",
        min_widths={"method": 30, "explanation": 30},
    )


def _seconds(timings: dict[str, float]) -> str:
    """``{"features_s": 3.2}`` as ``features 3.2 s``."""
    return ", ".join(
        f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f} s" for k, v in timings.items()
    )


def choice_lines(experiment: Any, header: bool = True) -> list[str]:
    """Every choice of the experiment with its margin: per label and test date the split's
    choice, then the deployed config's, each with the best's lead over the next candidate and
    the noise (one standard error) it was judged against; and, where the deployed config
    differs from a split's choice, that difference in words."""
    from models.steps import TIE_RULE, describe_decision

    config = experiment.config
    out = [
        f"choices ({config['selection_metric']} mean - {config['selection_penalty']} x std on "
        f"validation splits inside the training years; near-ties: {TIE_RULE}):"
    ][: int(header)]
    deployed = {lbl: c.candidate.get("name") for lbl, c in experiment.champions.items()}
    for s in experiment.selection:
        out.append(
            f"  {s['label']} {s['test_date']}: {describe_decision(s['chosen'], s.get('decision'))}"
        )
    for d in experiment.deployment:
        out.append(
            f"  {d['label']} to deploy (as of {d['as_of']}): "
            f"{describe_decision(d['chosen'], d.get('decision'))}"
        )
    for label, name in deployed.items():
        differ = [
            s["test_date"]
            for s in experiment.selection
            if s["label"] == label and s["chosen"] and s["chosen"] != name
        ]
        if differ:
            out.append(
                f"  {label}: the deployed config {name} is not the one chosen before "
                f"{', '.join(differ)}; the held-out results shown for the champion are "
                f"{name}'s own at every test date, beside each date's choice"
            )
    return _wrap(out)


def _wrap(lines: list[str], indent: str = "") -> list[str]:
    """Lines wrapped to 100 columns, continuation lines indented two more spaces."""
    import textwrap

    wrapped = []
    for line in lines:
        lead = indent + " " * (len(line) - len(line.lstrip()))
        wrapped += textwrap.wrap(
            line.strip(),
            width=100,
            initial_indent=lead,
            subsequent_indent=lead + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return wrapped


def champion_lines(experiment: Any, indent: str = "") -> list[str]:
    """What the experiment registered and why: per label the champion, its registered name
    and version (with the alias champion only when it passed the promotion gate), the
    selection that chose it and its margin; wrapped to fit 100 columns after ``indent``."""

    config = experiment.config
    metric, penalty = config["selection_metric"], config["selection_penalty"]
    out = []
    for info in experiment.deployment:
        label = info["label"]
        champ = experiment.champions.get(label)
        if champ is None:
            continue
        reg = champ.registered
        gate = experiment.gates.get(label, {})
        alias = "alias champion" if gate.get("passed", True) else "NO alias: not promoted"
        where = f" as {reg['name']} v{reg['version']} ({alias})" if reg else ""
        out.append(f"registered {info['chosen']}{where} for {label}")
        n = len(info.get("inner_splits") or [])
        decision = info.get("decision") or {}
        tied = decision.get("tied") or []
        how = f"simplest of {len(tied)} within one standard error" if len(tied) > 1 else "best"
        out.append(
            f"  why: best {metric} mean - {penalty} x std over {n} validation split(s) inside "
            f"the training years, near-ties to the simplest: chosen as the {how} "
            f"(margin {_num(decision.get('margin'))}, noise {_num(decision.get('se'))})"
        )
        dates = info["train_as_of"]
        out.append(
            f"  refitted on the newest data: {len(dates)} as-of date(s) {dates[0]} .. "
            f"{dates[-1]}, {info['n_train']:,} rows; its held-out results are this config's "
            "at each test date"
        )
    return _wrap(out, indent)


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def gate_lines(experiment: Any) -> tuple[list[str], list[str]]:
    """Per label the promotion gate in words: ``(passed, failed)`` paragraphs."""
    from models.gates import gate_paragraph

    passed: list[str] = []
    failed: list[str] = []
    for label, gate in experiment.gates.items():
        champ = experiment.champions.get(label)
        reg = champ.registered if champ is not None else None
        model = f"{reg['name']} v{reg['version']}" if reg else f"the {label} model"
        (passed if gate.get("passed") else failed).append(
            gate_paragraph(gate, model, registered=reg is not None)
        )
    return passed, failed


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
        None,
        help="Folder for results.json and predictions.parquet (default: "
        "EWS_HOME/experiments/<config hash>). While the run works, each finished unit "
        "(a choice, a split, the deployment refit) is kept in OUT/checkpoint/ so that a "
        "stopped run can be continued with --resume.",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a stopped run from OUT/checkpoint/ (same --out, or the same default "
        "folder): the finished choices, splits and refit are read back and their work "
        "skipped, and the results equal an uninterrupted run's. Refused (exit 2) when the "
        "checkpoint belongs to another config, data snapshot, feature spec or code version. "
        "Without --resume, a folder holding a checkpoint is refused rather than reused; "
        "--resume of a run that finished there is refused too (nothing to resume).",
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register each label's champion in MLflow."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the results (the content of results.json, with where it was written) as "
        "JSON on stdout instead of the table; progress still goes to stderr.",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Exit 1 when a model does not pass the promotion gate (default: exit 0 with a "
        "warning).",
    ),
) -> None:
    """Train the model grid and compare it with the rules on honest temporal splits.

    The config is checked against the feature spec and the data before any work. Features are
    built once for every as-of date; each split trains only on dates whose label window ends
    by its test date (label maturity on by default); the model is chosen on validation splits
    inside the training years (or, with splitter.inner_splits 0, every candidate is evaluated
    and none chosen). Prints a line per step and split, then the metrics table; writes
    results.json and predictions.parquet (every test prediction) and registers the champion
    per label, or every fitted model with `registry: all`. Ends by rebuilding the reviewers'
    audit report and model card when a champion was registered (EWS_BUILD_REPORTS=false
    leaves that to the pages).

    Near-ties on the validation splits go to the simplest candidate within one standard
    error of the best (a linear model, then boosted trees, then forests; shallower, fewer
    trees, stronger regularization); every choice is printed with its margin. The registered
    model gets the alias `champion` only if it passes the promotion gate: at every held-out
    test date its AUC's 95% interval lies above 0.5 and, flagging as many officers as the
    best rule, it finds at least as many with the outcome (within its interval). Otherwise it
    is registered without the alias and a paragraph says why and what the rules achieve;
    `ews models promote NAME VERSION --force --reason TEXT` overrides. Exit 0 (1 with
    --strict when a model is not promoted).

    A long run says at least every 30 seconds what it is doing and how long the rest should
    take (the deployment refit included). Each finished unit of work is kept in
    OUT/checkpoint/ as it completes; stopped (Ctrl-C: exit 130) or failed, the run is
    continued by the same command with --resume, which skips what is done. The checkpoint
    is removed once results.json is written.
    """
    from ews.cli_style import check_agency
    from ews.settings import get_settings
    from models.checkpoint import CheckpointError, summary
    from models.checkpoint import remove as remove_checkpoint
    from models.experiment import ExperimentError, load_config, run_experiment
    from models.steps import ConfigProblems

    check_agency(agency)
    try:
        cfg = load_config(config, agency=agency, snapshot=snapshot)
    except ExperimentError as exc:  # no such file, not YAML, an invalid key: refused, exit 2
        _fail(exc, EXIT_USAGE)
        return
    check_agency(cfg.agency)  # the config's own agency
    folder = out or get_settings().home / "experiments" / cfg.hash
    kept = folder / "checkpoint"
    again = _resume_command(config, agency, snapshot, out, register)
    try:
        result = run_experiment(
            cfg, tracking=register, progress=True, checkpoint=kept, resume=resume
        )
    except KeyboardInterrupt:
        n = summary(kept)
        where = (
            f"{n} finished unit(s) of work are kept in {kept}; continue with: {again}"
            if n
            else "no unit of work had finished, nothing is kept"
        )
        typer.secho(f"interrupted: {where}", fg="yellow", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except CheckpointError as exc:  # another run's checkpoint, or one without --resume
        _fail(exc, EXIT_USAGE)
        return
    except _known_errors() as exc:
        # a config the feature spec and the data refuse before any work is bad input too
        n = summary(kept)
        if n:
            typer.echo(f"{n} finished unit(s) of work are kept in {kept}: {again}", err=True)
        _fail(exc, EXIT_USAGE if isinstance(exc.__cause__, ConfigProblems) else EXIT_FAILED)
        return
    path = result.save(folder / "results.json")
    preds = result.save_predictions(folder / "predictions.parquet")
    # the checkpoint goes once the command is done: stopped while it prints (or builds the
    # reports), the run keeps it, and --resume reads everything back and registers nothing
    # again (a run resumed without its checkpoint would start over and register anew)
    try:
        _train_output(result, path, preds, kept, as_json, strict, register)
    except KeyboardInterrupt:
        typer.secho(
            f"interrupted: the results are written ({path}) and the checkpoint is kept in "
            f"{kept}; to finish, with nothing done or registered again: {again}",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BaseException:
        remove_checkpoint(kept)
        raise
    remove_checkpoint(kept)  # the results are written: nothing is left to resume


def _train_output(
    result: Any,
    path: Path,
    preds: Path | None,
    kept: Path,
    as_json: bool,
    strict: bool,
    register: bool,
) -> None:
    """What `ews train` prints once its results are written (and the reports it rebuilds)."""
    from models.report import text_table

    if result.resumed:
        typer.echo(
            f"resumed: {result.resumed['units_read_back']} finished unit(s) read back from "
            f"{kept} (removed now); the timings cover this run's own work",
            err=True,
        )
    if as_json:
        import json

        body = {**result.to_dict(), "results_path": str(path), "predictions_path": str(preds)}
        typer.echo(json.dumps(body, indent=2, default=str))
        for note in result.notes:
            typer.echo(f"warning: {note}", err=True)
        _, failed = gate_lines(result)
        for paragraph in failed:
            typer.echo(f"warning: not promoted: {paragraph}", err=True)
        if failed and strict:
            raise typer.Exit(EXIT_FAILED)
        return
    typer.echo(f"experiment {result.config_hash} ({result.agency}, snapshot {result.snapshot_id})")
    typer.echo(text_table(result.records, width=100))
    typer.echo(f"\nresults: {path}")
    if preds is not None:
        n = 0 if result.predictions is None else len(result.predictions)
        typer.echo(f"predictions: {preds} ({n} rows)")
    for line in choice_lines(result):
        typer.echo(line)
    for label, champ in result.champions.items():
        reg = champ.registered
        role = "champion" if reg and reg.get("alias") else "no alias"
        where = f" -> {reg['name']} v{reg['version']} ({role}, run {reg['run_id']})" if reg else ""
        typer.echo(f"{label}: {champ.candidate['name']}{where}")
    for line in champion_lines(result):
        typer.echo(line)
    others = [c.registered for c in result.fitted if c.registered]
    if others:
        typer.echo(f"registered {len(others)} more models (no alias): {others[0]['name']} ...")
    for note in result.notes:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"timings: {_seconds(result.timings)}")
    passed, failed = gate_lines(result)
    for paragraph in passed:
        typer.echo(f"promotion gate: {paragraph}")
    for paragraph in failed:
        typer.echo("")
        typer.echo(f"NOT PROMOTED: {paragraph}")
    if failed:
        typer.secho(
            f"warning: {len(failed)} model(s) not promoted (see above)"
            + ("" if register else "; --no-register: nothing was registered"),
            fg="yellow",
            err=True,
        )
        if strict:
            raise typer.Exit(EXIT_FAILED)
    if any(c.registered for c in result.champions.values()):
        _keep_report(result.agency)


EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (128 + SIGINT), as shells report it


def _resume_command(
    config: Path | None, agency: str | None, snapshot: str | None, out: Path | None, register: bool
) -> str:
    """The `ews train` command that continues this run from its checkpoint."""
    import shlex

    words = ["ews", "train"]
    for option, value in (("--config", config), ("--agency", agency), ("--snapshot", snapshot)):
        if value is not None:
            words += [option, str(value)]
    if out is not None:
        words += ["--out", str(out)]
    if not register:
        words.append("--no-register")
    return shlex.join([*words, "--resume"])


def _report_key(agency: str) -> dict[str, Any]:
    """What the workspace copy of the report depends on (the pages keep it while current)."""
    from ews.db import open_app_database
    from ews.settings import get_settings
    from models.audit_report import report_key

    settings = get_settings()
    db = open_app_database(settings)
    try:
        return report_key(agency, settings, db)
    finally:
        db.dispose()


def _keep_report(agency: str) -> None:
    """The reviewers' audit report and model card, rebuilt when what they show changed."""
    from models.audit_report import keep_built

    keep_built(agency, lambda line: typer.echo(line, err=True))


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

    if run is not None and results is not None:
        _fail(ValueError("give exactly one of --run RUN_ID or --results FILE"), EXIT_USAGE)
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
        from models.report import write_report  # matplotlib: only once there is a report

        json_path, html_path = write_report(data, out)
    except (FileNotFoundError, ValueError, LookupError) as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {json_path}\nwrote {html_path}")


def score(
    as_of: dt.date = typer.Option(
        ..., "--as-of", parser=parse_date, metavar="DATE", help="As-of date YYYY-MM-DD."
    ),
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
    max_staleness: int = typer.Option(
        92,
        "--max-staleness",
        metavar="DAYS",
        min=0,
        help="Refuse an as-of date more than DAYS after the data's last reported event.",
    ),
) -> None:
    """Score every officer at an as-of date with a registered model and save the flags.

    Flags go to the application database (where the service reads them), each with its
    score, rank, the rules that fire, an explanation and its provenance; a Parquet export is
    written to EWS_HOME/flags/<agency>/<date>.parquet. A model trained on outcomes known after
    the as-of date (its label cutoff) is refused unless --allow-lookahead. A date more than
    --max-staleness days (default 92) after the data's last reported event is refused
    (exit 2): ingest newer data first. Ends by rebuilding the reviewers' audit report and
    model card (EWS_HOME/reports/<agency>/, a progress line on stderr) when the scoring runs
    changed; EWS_BUILD_REPORTS=false leaves that to the pages.
    """
    from ews.cli_style import check_agency
    from models.scoring import StaleDateError
    from models.scoring import score as run_score

    check_agency(agency)
    day = as_of
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
            max_staleness_days=max_staleness,
        )
    except StaleDateError as exc:
        _fail(exc, EXIT_USAGE)
        return
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
    _keep_report(str(flags.attrs.get("agency") or agency))


@models_app.command("list")
def list_models() -> None:
    """List registered model versions with aliases and what they were trained on."""
    from models import registry

    rows = registry.list_models()
    if not rows:
        typer.echo("no registered model yet: run `ews train`")
        return
    for r in rows:
        r["model"] = f"{r['name']} v{r['version']}"
        r["aliases"] = " ".join(f"@{a}" for a in r["aliases"])
        r["trained on"] = (
            f"snapshot {r['snapshot_id']}, spec {r['spec_hash']}, config {r['config_hash']}, "
            f"seed {r['seed']}"
        )
    print_table(
        rows,
        ["model", "aliases", "label", "candidate", "trained on"],
        f"{len(rows)} registered model version(s)",
        left=("model", "aliases", "label", "candidate", "trained on"),
        # a name is copied into `ews models promote NAME VERSION`: never folded mid-word
        min_widths={"model": min(48, max(len(r["model"]) for r in rows))},
    )


@models_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Registered model name, e.g. ews-chicago-sustained."),
    version: str = typer.Argument(..., help="Version to promote."),
    alias: str = typer.Option("champion", help="Alias to move to this version."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Make a version that did not pass its promotion gate the champion anyway "
        "(needs --reason; written to the audit log, the model card and the audit report).",
    ),
    reason: str = typer.Option(
        None, "--reason", help="Why the model is deployed anyway (with --force)."
    ),
) -> None:
    """Point an alias (default `champion`) at a model version; scoring uses the champion.

    A version whose held-out results did not pass the promotion gate of `ews train` becomes
    the champion only with --force --reason TEXT: the override is an audit entry (same
    transaction as the alias move) and a line of the model card and the audit report."""
    from models import registry

    if reason is not None and not force:
        _fail(ValueError("--reason goes with --force"), EXIT_USAGE)
    if force and not (reason or "").strip():
        _fail(
            ValueError("--force needs --reason TEXT: why this model is deployed anyway"),
            EXIT_USAGE,
        )
    try:
        gate = registry.gate_of(name, version) if alias == registry.CHAMPION else None
        if force:
            detail = registry.promote_by_force(name, version, str(reason), alias)
            typer.echo(f"{name}@{alias} -> version {version} (forced)")
            state = detail["gate"] or "not recorded"
            typer.secho(
                f"warning: promoted by force (promotion gate: {state}); audit entry by "
                f"{detail['by']}: {detail['reason']}",
                fg="yellow",
                err=True,
            )
            return
        if gate is not None and not gate.get("passed"):
            why = "; ".join(gate.get("reasons") or [])
            raise registry.RegistryError(
                f"{name} v{version} did not pass the promotion gate ({why}); to make it the "
                f"champion anyway: `ews models promote {name} {version} --force --reason TEXT`"
            )
        registry.promote(name, version, alias)
    except _known_errors() as exc:
        _fail(exc)
        return
    typer.echo(f"{name}@{alias} -> version {version}")


EXIT_ALERT = 3  # `ews drift`: drift passes the threshold


def drift(
    as_of: dt.date = typer.Option(
        ..., "--as-of", parser=parse_date, metavar="DATE", help="The date to check, YYYY-MM-DD."
    ),
    model: str = typer.Option("champion", help="Model: champion, NAME, NAME@ALIAS, NAME/VERSION."),
    agency: str = typer.Option(None, help="Workspace agency (default: the model's)."),
    reference: list[dt.date] = typer.Option(
        None,
        "--reference",
        parser=parse_date,
        metavar="DATE",
        help="Reference as-of date YYYY-MM-DD (repeat; default: the newest training dates).",
    ),
    out: Path = typer.Option(None, help="Folder for drift.json and drift.html."),
    snapshot: str = typer.Option(None, help="Snapshot id (default: the agency's current one)."),
    max_share: float = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Alert when more than this share of input columns drift (default: the drift "
        "setting, 0.2).",
    ),
    score_psi: float = typer.Option(
        None,
        min=0.0,
        help="Alert when the scores' population stability index reaches this (default: the "
        "drift setting, 0.2).",
    ),
) -> None:
    """Check whether the model's inputs and scores at a date have drifted from those at its
    training dates, and whether it is still as precise.

    Each input column is tested with the method Evidently chooses for the sample sizes (its
    p-value or distance and threshold are reported apart); the scores are compared by
    population stability index, Kolmogorov-Smirnov test and flag rate; once the outcomes after
    the date are known, precision at k% is set against the model's validation precision.
    Writes an ews report (drift.html) and drift.json under EWS_HOME/drift/<agency>/<date>/ and
    stores the run in the application database (the reviewers' Drift page, /api/drift).
    Exit 0: no alert; 3: drift passes the threshold (--max-share, --score-psi; settings
    EWS_DRIFT__MAX_SHARE, EWS_DRIFT__SCORE_PSI), so a scheduler can alert; 2: a date outside
    the data; 1: the check could not be done."""
    from ews.cli_style import check_agency
    from models.drift import DriftDateError
    from models.drift import drift as check
    from models.scoring import ScoringError

    check_agency(agency)
    known: tuple[type[Exception], ...] = (ScoringError, ValueError, *_known_errors())
    try:
        report = check(
            as_of,
            model,
            agency,
            list(reference) if reference else None,
            out,
            snapshot=snapshot,
            max_share=max_share,
            score_psi=score_psi,
            progress=True,
        )
    except DriftDateError as exc:
        _fail(exc, EXIT_USAGE)
        return
    except known as exc:
        _fail(exc)
        return
    share = report["drifted_share"]
    scores, precision = report["score_drift"], report["precision"]
    typer.echo(
        f"{report['model']} at {report['as_of']} vs {', '.join(report['reference_dates'])}: "
        f"{len(report['drifted_columns'])} of {report['columns']} input columns drifted "
        f"({share:.0%})"
    )
    for col in report["drifted_columns"]:
        typer.echo(f"  drifted: {col}")
    typer.echo(
        f"scores: PSI {scores['psi']:.3f} ({'drifted' if scores['drifted'] else 'not drifted'}"
        f" at {scores['threshold']:g}), KS p-value {scores['ks_pvalue']:.3g}, flag rate "
        f"{scores['flag_rate_reference']:.1%} -> {scores['flag_rate_current']:.1%}"
    )
    k = precision["k_pct"]
    valid = precision.get("validation_precision_at_k")
    valid_text = f"validation {valid:.3f}" if valid is not None else "validation not recorded"
    if precision.get("precision_at_k") is not None:
        typer.echo(f"precision@{k:g}%: {precision['precision_at_k']:.3f} ({valid_text})")
    else:
        typer.echo(f"precision@{k:g}%: {precision.get('note', 'not known')} ({valid_text})")
    typer.echo(f"report: {report['report']}")
    import gc

    # nothing more is allocated: spare the interpreter's exit a collection over every object
    # of the libraries loaded (about 1.5 s of the command's time, measured on the demo agency)
    gc.freeze()
    if report["alert"]:
        typer.secho(f"ALERT: {'; '.join(report['alert_reasons'])}", fg="red", err=True)
        raise typer.Exit(EXIT_ALERT)


audit_app = typer.Typer(
    help="The credentialing reviewers' audit of the flags (disparities by group).",
    no_args_is_help=True,
)


@audit_app.command("disparities")
def disparities(
    agency: str = typer.Option(None, help=AGENCY_HELP),
    as_of: dt.date = typer.Option(
        None,
        "--as-of",
        parser=parse_date,
        metavar="DATE",
        help="Scored date YYYY-MM-DD (default: newest).",
    ),
    by: list[str] = typer.Option(["race", "sex"], "--by", help="Officer attribute (repeat)."),
    min_group: int = typer.Option(20, help="Smaller groups are reported by size only."),
    allow_in_sample: bool = typer.Option(
        False,
        "--allow-in-sample",
        help="Audit a date before the model's label cutoff anyway (marked IN-SAMPLE).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Flag rates by group and, when the outcome window after the date is covered by the
    data, the outcome rate, precision, true and false positive rates of the flags by group,
    with the ratio of the lowest to the highest group (1.0 = parity). Race and sex are read
    here for the audit only; they are never model inputs.

    A date before the scoring model's label cutoff is in-sample (the model learned those
    outcomes): refused with exit 2 unless --allow-in-sample. Held-out figures for the
    champion and the rules side by side are in `ews audit-report`."""
    import json

    from ews.cli_style import resolve_agency
    from models.audit import InSampleError
    from models.audit import disparities as audit

    agency = resolve_agency(agency)
    try:
        report = audit(
            agency, as_of, tuple(by), min_group=min_group, allow_in_sample=allow_in_sample
        )
    except InSampleError as exc:
        _fail(exc, EXIT_USAGE)
        return
    except (LookupError, ValueError) as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    known = "outcomes known" if report["outcome_known"] else "outcomes not yet known"
    sample = {True: "IN-SAMPLE", False: "held out", None: "in-sample status unknown"}[
        report["in_sample"]
    ]
    typer.echo(
        f"{report['agency']} as of {report['as_of']} ({report['label']}, {known}, {sample}): "
        f"{report['flagged']} of {report['officers']} officers flagged"
    )
    if report["in_sample"] is not False:
        typer.secho(f"note: {report['sample_note']}", fg="yellow", err=True)
    for attr, part in report["by"].items():
        groups = part["groups"]
        cols = ["group", "officers"] + [k for k in groups[0] if k not in ("group", "officers")]
        ratios = part["min_over_max"]
        rows = [*groups, {"group": "lowest/highest", **ratios}] if ratios else groups
        note = "" if ratios else " (every group below --min-group: sizes only)"
        _print_table(rows, cols, f"by {attr}: the last row is the lowest/highest ratio{note}")


def audit_report(
    agency: str = typer.Option(None, help=AGENCY_HELP),
    out: Path = typer.Option(..., "--out", help="Folder for the report's HTML, PDF and JSON."),
    min_group: int = typer.Option(20, help="Smaller groups are reported by size only."),
    min_pairs: int = typer.Option(
        10, help="Fewest matched pairs for an intervention-outcome rate."
    ),
) -> None:
    """Write the credentialing reviewers' audit report of an agency: one self-contained HTML
    file (no script, nothing fetched), a PDF of it and its figures as JSON.

    Sections: a checklist of what an early warning system is asked to do (Sec. 2(c) of the
    Executive Order on Safe Policing for Safe Communities), each item answered from the data
    with a link to its evidence; data coverage per snapshot; the rules in force in plain
    words; the champion's card (features, training window, label, validation per split,
    calibration, the equal-volume comparison with the rules); the bias audit of the champion
    and each rule on held-out dates only; drift history; the review workflow; the access log
    and its chain verification; intervention outcomes against matched officers. A copy is
    kept in EWS_HOME/reports/<agency>/ for the reviewers' pages.
    """
    from ews.cli_style import resolve_agency
    from models.audit_report import ReportError, build_report, write_report
    from models.drift import drift_history

    agency = resolve_agency(agency)
    known: tuple[type[Exception], ...] = (ReportError, *_known_errors())
    try:
        key = _report_key(agency) if (min_group, min_pairs) == (20, 10) else None
        report = build_report(
            agency,
            min_group=min_group,
            min_pairs=min_pairs,
            drift_rows=drift_history(agency),
        )
        paths = write_report(report, out, key=key)
    except known as exc:
        _fail(exc)
        return
    met = sum(i["status"] == "met" for i in report.data["checklist"])
    typer.echo(f"audit report of {agency}: {met} of {len(report.data['checklist'])} checks met")
    for item in report.data["checklist"]:
        typer.echo(f"  {item['status']:>14}  {item['ask']}: {item['figure']}")
    for kind in ("html", "pdf", "json"):
        typer.echo(f"wrote {paths[kind]}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``ews`` app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("score")(score)
    app.command("drift")(drift)
    app.command("audit-report")(audit_report)
    app.add_typer(models_app, name="models")
    app.add_typer(audit_app, name="audit")
