"""One style for every ``ews`` command: dates, exit codes, the agency default, help texts and
tables. Each command module calls these instead of rolling its own, and
``tests/test_cli_style.py`` walks the whole ``ews`` app to hold every command to them.

- Dates: options that take a date use ``parser=parse_date``; a bad date is a usage error
  (exit 2) with one message, :func:`date_message`.
- Exit codes: :data:`EXIT_OK` (0) success, :data:`EXIT_FAILED` (1) the work could not be
  done (no data yet, no such model or run, an empty cohort, a failed step),
  :data:`EXIT_USAGE` (2) bad input or usage (a malformed value, conflicting or missing
  options, an agency the workspace does not hold, a package that breaks the contract).
  :func:`fail` prints ``error: ...`` on stderr and returns the ``typer.Exit`` to raise.
- Agency: ``--agency`` is optional everywhere; :func:`resolve_agency` defaults it to the only
  agency of the workspace, :func:`check_agency` checks one given; an agency the workspace
  does not hold is exit 2 with one message, :func:`unknown_agency_message`, on every command.
- Help: :func:`tidy_help` gives every command its docstring with each paragraph on one line,
  so the terminal wraps it once (no broken hard wraps).
- Tables: :func:`print_table` fits :data:`TABLE_WIDTH` columns, headers unbroken, values
  formatted (never a raw Python repr).

Only ``typer`` is imported at module level: this module is on the path of ``ews --help``.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ews.store import Workspace

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
TABLE_WIDTH = 100
DATE_FORMAT = "YYYY-MM-DD"


# -- dates -------------------------------------------------------------------------------


def date_message(value: object) -> str:
    """The one message for a value that is not a date."""
    return f"{str(value)!r} is not a date: write it as {DATE_FORMAT}, e.g. 2021-01-01"


def parse_date(value: str | dt.date) -> dt.date:
    """A calendar date written ``YYYY-MM-DD`` (the contract's format), for ``parser=`` of a
    typer option. Anything else raises ``typer.BadParameter`` with :func:`date_message`."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    # fromisoformat also takes 20210101 and 2021-W01-1; the contract says YYYY-MM-DD only.
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise typer.BadParameter(date_message(value))
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(date_message(value)) from None


# -- exits -------------------------------------------------------------------------------


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit(code)`` to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def usage_error(message: str) -> typer.Exit:
    """:func:`fail` with :data:`EXIT_USAGE`: the input or its use is wrong."""
    return fail(message, EXIT_USAGE)


# -- agency ------------------------------------------------------------------------------

AGENCY_HELP = "Agency of the workspace (default: the only one)."


def resolve_agency(agency: str | None, workspace: Workspace | None = None) -> str:
    """``agency`` if the workspace holds it, else the workspace's only agency.

    Raises ``typer.Exit``: 2 when ``agency`` is one the workspace does not hold
    (:func:`check_agency`) or is omitted while several agencies are stored; 1 when it is
    omitted and the workspace holds no data yet."""
    from ews.store import Workspace

    ws = workspace or Workspace()
    if agency is not None:
        return check_agency(agency, ws)
    known = ws.agencies()
    if not known:
        raise fail(f"the workspace {ws.home.resolve()} holds no data yet: run `ews ingest PATH`")
    if len(known) > 1:
        raise usage_error(
            f"the workspace holds several agencies ({', '.join(known)}): name one with --agency"
        )
    return known[0]


def unknown_agency_message(agency: str, known: Sequence[str]) -> str:
    """The one message, on every command, for an ``--agency`` the workspace does not hold."""
    held = ", ".join(known) if known else "no agency yet (run `ews ingest PATH` first)"
    return f"unknown agency {agency!r}: the workspace holds {held}"


@overload
def check_agency(agency: str, workspace: Workspace | None = None) -> str: ...
@overload
def check_agency(agency: None, workspace: Workspace | None = None) -> None: ...
def check_agency(agency: str | None, workspace: Workspace | None = None) -> str | None:
    """``agency`` unchanged once the workspace is known to hold it, else exit 2 with
    :func:`unknown_agency_message`. ``None`` stays ``None``: for commands whose default is
    not the workspace's only agency (a model's, a config's, every agency)."""
    if agency is None:
        return None
    from ews.store import Workspace

    known = (workspace or Workspace()).agencies()
    if agency not in known:
        raise usage_error(unknown_agency_message(agency, known))
    return agency


# -- help --------------------------------------------------------------------------------


def unwrap(doc: str | None) -> str:
    """A docstring as help text: paragraphs kept, line breaks inside them removed (the
    terminal wraps them)."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def tidy_help(app: typer.Typer) -> None:
    """Give every command and group of ``app`` (recursively) its help text unwrapped: the
    explicit ``help=`` if one was given, else the docstring."""
    for info in app.registered_commands:
        info.help = unwrap(info.help or (info.callback.__doc__ if info.callback else None))
    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        if group.help:
            group.help = unwrap(group.help)
        if isinstance(sub.info.help, str):
            sub.info.help = unwrap(sub.info.help)
        tidy_help(sub)
    callback = app.registered_callback
    if callback is not None and callback.callback is not None:
        callback.help = unwrap(callback.help or callback.callback.__doc__)


# -- tables ------------------------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    """A rich console at most :data:`TABLE_WIDTH` columns wide (narrower on a narrow
    terminal)."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    width = min(probe.width, TABLE_WIDTH) if probe.is_terminal else TABLE_WIDTH
    return Console(stderr=stderr, width=width, highlight=False)


def cell(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, NaN and None as '–', lists joined, booleans as '*' or
    '', mappings as ``key value`` pairs: never a raw Python repr."""
    import math

    if value is None:
        return "–"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {cell(v, digits)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(cell(v, digits) for v in value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return cell(value.item(), digits)
    return str(value)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    title: str,
    headers: Mapping[str, str] | None = None,
    left: Sequence[str] = (),
    highlight: str | None = None,
    min_widths: Mapping[str, int] | None = None,
) -> None:
    """Print ``title`` on its own line, then ``rows`` as a table of ``columns`` within
    :data:`TABLE_WIDTH` columns.

    Headers never break inside a word (long ones wrap at ``_``); text columns named in
    ``left`` are left-aligned and fold, numbers right-aligned; rows whose ``highlight`` key is
    true are bold; ``min_widths`` keeps a column (say, long model names) from being squeezed
    to a few characters."""
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in columns:
        header = (headers or {}).get(col, col).replace("_", " ")
        table.add_column(
            header,
            justify="left" if col in left else "right",
            overflow="fold" if col in left else "ellipsis",
            no_wrap=col not in left,
            min_width=(min_widths or {}).get(col),
        )
    for row in rows:
        style = "bold" if highlight and row.get(highlight) else None
        table.add_row(*(escape(cell(row.get(c))) for c in columns), style=style)
    out = console()
    out.print(escape(title))
    out.print(table)
