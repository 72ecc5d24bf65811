"""One CLI style over every ``ews`` command (ews.cli_style): the whole app is walked, so a
command added anywhere (api, features, models, benchmarks) is held to it automatically."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ews import cli_style
from ews.cli import app
from ews.cli_style import EXIT_USAGE, date_message, parse_date

runner = CliRunner()
BAD_DATES = ["01/01/2021", "2021/01/01", "2021-13-01", "20210101", "tomorrow"]


def _commands() -> Iterator[tuple[list[str], Any]]:
    """Every command and group of the app (typer's click objects), with its path of names."""

    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, cmd
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


COMMANDS = list(_commands())
IDS = [" ".join(p) or "ews" for p, _ in COMMANDS]


def _date_options(cmd: Any) -> list[Any]:
    """Options that take a date: by name or by a help text that asks for YYYY-MM-DD."""
    names = {"as_of", "start", "end", "reference", "since", "until", "before", "after"}
    return [
        p
        for p in cmd.params
        if p.param_type_name == "option"
        and (p.name in names or "YYYY-MM-DD" in (getattr(p, "help", None) or ""))
    ]


def test_the_walk_reaches_every_floor() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    for expected in ("validate", "features build", "train", "audit disparities", "serve"):
        assert expected in names


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_is_unwrapped_and_fits_100_columns(path: list[str], cmd: Any) -> None:
    for paragraph in (cmd.help or "").split("\n\n"):
        assert "\n" not in paragraph, f"hard line break in the help of {path}: {paragraph!r}"
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    too_long = [line for line in result.output.splitlines() if len(line) > 100]
    assert not too_long, too_long


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_every_date_option_uses_the_one_parser(path: list[str], cmd: Any) -> None:
    for option in _date_options(cmd):
        func = option.type_descriptor.parameter_info.parser
        assert func is parse_date, f"{path} {option.opts}: parse with ews.cli_style.parse_date"
        flag = max(option.opts, key=len)
        result = runner.invoke(app, [*path, flag, "01/01/2021"], env={"COLUMNS": "200"})
        assert result.exit_code == EXIT_USAGE, result.output
        assert date_message("01/01/2021") in " ".join(result.output.split())


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_agency_is_never_required(path: list[str], cmd: Any) -> None:
    for p in cmd.params:
        if p.name == "agency":
            assert not p.required, f"{path}: --agency must default (to the only agency)"


def test_the_date_commands_are_found() -> None:
    with_dates = {" ".join(p) for p, c in COMMANDS if _date_options(c)}
    assert {"score", "drift", "audit disparities", "features build"} <= with_dates


@pytest.mark.parametrize("bad", BAD_DATES)
def test_parse_date_refuses_with_one_message(bad: str) -> None:
    with pytest.raises(typer.BadParameter) as err:
        parse_date(bad)
    assert str(err.value.message) == date_message(bad)


def test_parse_date_reads_iso_dates() -> None:
    assert parse_date("2021-02-28") == dt.date(2021, 2, 28)
    assert parse_date(dt.datetime(2021, 2, 28, 13, 5)) == dt.date(2021, 2, 28)
    with pytest.raises(typer.BadParameter):
        parse_date("2021-02-29")


def test_unknown_option_is_a_usage_error() -> None:
    result = runner.invoke(app, ["status", "--no-such-option"])
    assert result.exit_code == EXIT_USAGE


def _ingest(pkg: Path, agency: str) -> None:
    from _models_agency import make_agency

    make_agency(pkg, officers=30)
    result = runner.invoke(app, ["ingest", str(pkg), "--agency", agency])
    assert result.exit_code == 0, result.output


def test_resolve_agency_defaults_to_the_only_one(ews_home: Path, tmp_path: Path) -> None:
    with pytest.raises(typer.Exit) as empty:
        cli_style.resolve_agency(None)
    assert empty.value.exit_code == cli_style.EXIT_FAILED
    _ingest(tmp_path / "a", "alpha")
    assert cli_style.resolve_agency(None) == "alpha"
    with pytest.raises(typer.Exit) as unknown:
        cli_style.resolve_agency("beta")
    assert unknown.value.exit_code == EXIT_USAGE
    _ingest(tmp_path / "b", "beta")
    assert cli_style.resolve_agency("beta") == "beta"
    with pytest.raises(typer.Exit) as several:
        cli_style.resolve_agency(None)
    assert several.value.exit_code == EXIT_USAGE


def test_status_names_the_absolute_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ews.settings import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EWS_HOME", "relative-home")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "relative-home") in result.output


def test_tables_fit_100_columns_and_keep_headers_whole(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {
            "group": "a very long group name " * 6,
            "false_positive_rate": 0.12345,
            "true_positive_rate": float("nan"),
            "precision": None,
            "ratios": {"flag_rate": 0.5},
            "fired": ["cmpd", "iapro"],
        }
    ]
    cli_style.print_table(rows, list(rows[0]), "title " * 30, left=("group",))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    words = set(re.findall(r"[a-z]+", out))
    assert {"false", "positive", "rate"} <= words  # the header wraps at spaces, not in words
    assert "0.123" in out and "flag_rate 0.500" in out and "cmpd, iapro" in out
    assert "{" not in out and "[" not in out and "nan" not in out.lower()


def test_no_raw_python_reprs_in_command_output(ews_home: Path, tmp_path: Path) -> None:
    _ingest(tmp_path / "pkg", "solo")
    outputs = []
    for args in (["status"], ["features", "describe"], ["models", "list"]):
        result = runner.invoke(app, args, env={"COLUMNS": "100"})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    text = "\n".join(outputs)
    for pattern in (r"\{'", r"\['", r"\{value", r"\{unit", r"<[a-zA-Z_.]+ object at 0x"):
        assert not re.search(pattern, text), pattern
    assert str(ews_home.resolve()) in text


# What each command taking --agency needs besides it, to reach the agency check. `ingest`
# names the agency it creates, so it has no unknown agency.
AGENCY_ARGS: dict[str, list[str]] = {
    "audit disparities": [],
    "audit-report": ["--out", "{tmp}/report"],
    "drift": ["--as-of", "2015-01-01"],
    "export-public": ["--out", "{tmp}/public"],
    "features build": ["--as-of", "2015-01-01", "--out", "{tmp}/features.parquet"],
    "notify": ["--dry-run"],
    "notify-policy": [],
    "score": ["--as-of", "2015-01-01"],
    "status": [],
    "train": [],
    "users add": ["lee", "--role", "reviewer"],
}


def test_every_agency_option_is_in_the_unknown_agency_walk() -> None:
    takes = {" ".join(p) for p, cmd in COMMANDS if any(x.name == "agency" for x in cmd.params)}
    assert takes - {"ingest"} == set(AGENCY_ARGS)


def test_an_unknown_agency_gets_one_answer_everywhere(ews_home: Path, tmp_path: Path) -> None:
    """Every command: exit 2 and the one message naming the agencies there are; nothing done."""
    expected = cli_style.unknown_agency_message("nope", ["alpha"])
    assert expected == "unknown agency 'nope': the workspace holds alpha"
    _ingest(tmp_path / "pkg", "alpha")
    for command, extra in AGENCY_ARGS.items():
        outs = tmp_path / "out"
        args = [*command.split(), *(a.format(tmp=outs) for a in extra), "--agency", "nope"]
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == EXIT_USAGE, (command, result.output)
        assert f"error: {expected}" in result.output, (command, result.output)
    assert not (tmp_path / "out").exists()  # nothing written
    listed = runner.invoke(app, ["users", "list"])
    assert "lee" not in listed.output  # nor a user created for an agency there is not


def test_an_unknown_agency_in_an_empty_workspace_says_to_ingest(ews_home: Path) -> None:
    result = runner.invoke(app, ["status", "--agency", "nope"])
    assert result.exit_code == EXIT_USAGE
    assert "unknown agency 'nope': the workspace holds no agency yet" in result.output
    assert "ews ingest" in result.output
