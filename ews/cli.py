"""The ``ews`` command line. Each package registers its own commands; heavy libraries are
imported inside the commands that need them so that ``ews --help`` answers at once."""

from __future__ import annotations

import typer

from ews.cli_style import tidy_help

app = typer.Typer(
    name="ews",
    help=(
        "Early-intervention system for police agencies: ingest an agency's records, build "
        "as-of indicators, flag officers who may need support with rules and models, explain "
        "every flag, and audit it all."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from api import cli as api_cli
    from benchmarks import cli as benchmarks_cli
    from ews import cli_data, cli_demo, cli_notify, cli_public, cli_sources
    from features import cli as features_cli
    from models import cli as models_cli

    cli_data.register(app)
    cli_sources.register(app)
    cli_demo.register(app)
    cli_public.register(app)
    cli_notify.register(app)
    features_cli.register(app)
    models_cli.register(app)
    api_cli.register(app)
    benchmarks_cli.register(app)


@app.callback()
def _root() -> None:
    """Early-intervention system for police agencies.

    Everything lives in one workspace folder, EWS_HOME (default ./ews-home of the current
    folder; `ews status` prints its absolute path). Exit codes: 0 success, 1 the work could
    not be done, 2 bad input or usage."""


@app.command()
def version() -> None:
    """Print the version of ews."""
    from ews import __version__

    typer.echo(__version__)


_register()
tidy_help(app)


def main() -> None:
    """Run the command line. At exit, Python's last full garbage collection (while it tears
    the modules down) walks every object a command left: after ``ews train`` (scikit-learn,
    MLflow, SQLAlchemy, skops loaded; about 365k objects) that took 2.5 s on a loaded machine
    and up to 8 s after a whole run, for nothing, since the process ends. Freezing the heap
    last (registered first, atexit runs handlers in reverse) skips that walk; files, database
    connections and temporary folders are still closed by the teardown and their finalizers,
    as before."""
    import atexit
    import gc
    import os

    atexit.register(gc.freeze)

    # MLflow logs INFO lines (database creation, migrations) in the middle of the progress
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    app()


if __name__ == "__main__":
    main()
