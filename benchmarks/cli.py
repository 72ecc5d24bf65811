"""``ews benchmark chicago``, ``ews benchmark triage-peer`` and ``ews benchmark train``
(registered by ews.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _one_line(func: Any) -> Any:
    """Put the docstring on one line so the terminal wraps it once."""
    func.__doc__ = " ".join((func.__doc__ or "").split())
    return func


def register(app: typer.Typer) -> None:
    """Add ``ews benchmark triage-peer``, ``chicago`` and ``train`` to the ``ews`` app."""
    bench = typer.Typer(
        help=(
            "Measured benchmarks: the triage-peer speed experiment, the Chicago (CPDP) "
            "benchmark and training time on a Chicago-sized synthetic agency. They print "
            "measured figures; nothing is tuned on test dates."
        ),
        no_args_is_help=True,
    )

    @bench.command("triage-peer")
    @_one_line
    def triage_peer_cmd(
        data: Path = typer.Option(
            ...,
            "--data",
            help="The triage-peer-10k contract package (folder with officers and events).",
            exists=True,
            file_okay=False,
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            min=1,
            help=(
                "EWS_THREADS for the training run (forests, DuckDB, registry workers); "
                "default: every core of this machine. triage's forests run with the n_jobs "
                "of its own grid (none set: one job); both counts are printed."
            ),
        ),
        home: Path | None = typer.Option(
            None, "--home", help="Workspace folder to use (default: a temporary one)."
        ),
        json_out: Path | None = typer.Option(
            None, "--json", help="Also write the figures as JSON to this file."
        ),
        triage_python: Path | None = typer.Option(
            None,
            "--triage-python",
            help=(
                "A Python with triage 6.0.0 (benchmarks/triage/README.md): also time triage's "
                "own run, with and without its training-set predictions, in this run."
            ),
            exists=True,
            dir_okay=False,
        ),
        triage_db: str = typer.Option(
            "triage_peer",
            "--triage-db",
            help="The PostgreSQL database (127.0.0.1:5432) holding triage's loaded data.",
        ),
        repeat: int = typer.Option(
            3,
            "--repeat",
            min=1,
            help=(
                "How many times `ews train` is timed, in the same workspace, with triage's "
                "runs between them: the figure judged is the median run's, and every run's "
                "time is printed (a run of seconds moves with the machine more than triage's "
                "minutes do)."
            ),
        ),
    ) -> None:
        """Run triage's experiment on triage-peer-10k through the product: ews ingest into a
        fresh workspace, then `ews train --config models/experiments/triage_peer.yaml` timed
        end to end from the command line (every test prediction written, every model
        registered), --repeat times in the same workspace; with --triage-python also time
        triage's two profiles in the same run, between those runs, and judge the targets on
        the median run (at least 10x faster than triage's README profile, 5x than its
        test-predictions-only one: met or not met); print each time with the load average
        before and after it, and precision@10% against triage's 0.705."""
        from rich.console import Console

        from benchmarks.common import BenchmarkError
        from benchmarks.triage_peer import format_triage_peer, run_triage, run_triage_peer

        profiles = [False, True] if triage_python is not None else []
        triage = []
        status = Console(stderr=True).status(f"ingesting, then ews train (run 1 of {repeat})")

        def time_triage(done: int = 0) -> None:  # the next of triage's profiles, if one is left
            if profiles and triage_python is not None:
                replace = profiles.pop(0)
                status.update(f"triage (replace={replace}), minutes")
                triage.append(run_triage(triage_python, replace=replace, database=triage_db))
            if done:
                status.update(f"ews train (run {done + 1} of {repeat})")

        try:
            with status:
                run = run_triage_peer(
                    data, threads=threads, home=home, repeat=repeat, between=time_triage
                )
                while profiles:
                    time_triage()
        except BenchmarkError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        typer.echo(format_triage_peer(run, triage))
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            from benchmarks.triage_peer import speed_targets

            figures = {
                **run.as_dict(),
                "triage_same_run": [t.as_dict() for t in triage],
                "targets": [
                    {
                        "triage_profile": "readme" if t.replace else "test_predictions_only",
                        "ratio": round(t.ratio, 2),
                        "target": t.target,
                        "met": t.met,
                    }
                    for t in speed_targets(run, triage)
                ],
            }
            json_out.write_text(json.dumps(figures, indent=2))

    @bench.command("chicago")
    @_one_line
    def chicago_cmd(
        data: Path = typer.Option(
            ...,
            "--data",
            help="The CPDP 2018 folder (cpd_officers.csv.gz, cpd_allegations.csv.gz, ...).",
            exists=True,
            file_okay=False,
        ),
        out: Path = typer.Option(
            ..., "--out", help="Folder for results.json, summary.json and experiment.json."
        ),
        config: Path | None = typer.Option(
            None,
            "--config",
            help="Experiment YAML (default: the shipped models/experiments/chicago.yaml).",
            exists=True,
            dir_okay=False,
        ),
        package: Path | None = typer.Option(
            None,
            "--package",
            help="Reuse an already converted package folder instead of converting DATA.",
            exists=True,
            file_okay=False,
        ),
    ) -> None:
        """Run the Chicago benchmark: convert CPDP, train on 2005+ as-of dates, test at
        2013-01-01 and 2014-01-01 for three 12-month labels, compare the models with the
        CMPD-style, Miami-Dade-style and best single rules at equal volume, print the table
        and the targets, and write OUT/results.json."""
        from rich.console import Console

        from benchmarks.chicago import format_chicago, run_chicago

        console = Console(stderr=True)
        result = run_chicago(
            data,
            out,
            config=config,
            package=package,
            progress=True,
            on_stage=lambda s: console.print(f"[bold]{s}[/bold]"),
        )
        typer.echo(format_chicago(result))
        typer.echo(f"\nwrote {Path(out) / 'results.json'}")

    @bench.command("train")
    @_one_line
    def train_cmd(
        officers: int = typer.Option(
            13_000, "--officers", min=1, help="Officers of the synthetic agency."
        ),
        test_years: int = typer.Option(
            7, "--test-years", min=1, max=8, help="Yearly test dates, ending 2016-01-01."
        ),
        inner: int = typer.Option(
            2, "--inner", min=0, help="Inner validation splits per split (0: no selection)."
        ),
        threads: int | None = typer.Option(
            None, "--threads", min=1, help="EWS_THREADS for the timed run (default: cores)."
        ),
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Folder where the synthetic agency is kept and reused (default: a temp one).",
            file_okay=False,
        ),
        baseline: bool = typer.Option(
            True,
            "--baseline/--no-baseline",
            help="Also time the same train on one thread without the fit cache.",
        ),
    ) -> None:
        """Time `ews train` on a synthetic agency shaped like Chicago (`ews synth`, records
        from 2004, training dates every January 1 from 2005, Chicago's grid and rules), with
        the load average around it and a same-run baseline (EWS_THREADS=1, EWS_FIT_CACHE=0);
        prints the time per step and whether the two runs' figures are identical."""
        from benchmarks.bench_train import run
        from benchmarks.common import BenchmarkError

        try:
            run(officers, test_years, inner, None, threads, data, baseline=baseline)
        except BenchmarkError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc

    app.add_typer(bench, name="benchmark")
