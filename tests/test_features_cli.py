"""`ews features build` and `ews features describe`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from features_reference import random_package, write_package  # noqa: I001
from typer.testing import CliRunner

from ews.cli import app
from features.spec import default_spec

pytestmark = pytest.mark.filterwarnings("ignore:fetch_arrow_table:DeprecationWarning")
runner = CliRunner()


def test_describe_lists_every_column() -> None:
    result = runner.invoke(app, ["features", "describe"])
    assert result.exit_code == 0, result.output
    for col in default_spec().columns[:5]:
        assert col.name in result.output
    assert "times the average of unit" in result.output


def test_build_writes_the_table_from_a_series_of_dates(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "pkg", random_package(10))
    out = tmp_path / "f.parquet"
    args = ["features", "build", "--package", str(folder), "--out", str(out)]
    result = runner.invoke(app, args + ["--from", "2019-01-01", "--to", "2021-01-01"])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert sorted(df.as_of_date.dt.year.unique()) == [2019, 2020, 2021]
    assert list(df.columns[2:]) == default_spec().column_names
    assert f"{len(df):,} rows x {len(default_spec().columns)} features" in result.output
    assert default_spec().hash in result.output


def test_build_per_date_shows_progress_and_keeps_an_existing_table(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "pkg", random_package(10))
    out = tmp_path / "f.parquet"
    args = ["features", "build", "--package", str(folder), "--out", str(out)]
    args += ["--from", "2019-01-01", "--to", "2021-01-01", "--dates-per-batch", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for i, day in enumerate(["2019-01-01", "2020-01-01", "2021-01-01"], 1):
        assert f"{i}/3 dates: {day}," in result.output  # one line per date in a log
    assert "3 as-of dates (2019-01-01 .. 2021-01-01) in 3 queries" in result.output
    table = out.read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert f"--out {out} exists: pass --overwrite to replace it" in again.output
    assert out.read_bytes() == table
    again = runner.invoke(app, args + ["--overwrite", "--dates-per-batch", "3"])
    assert again.exit_code == 0, again.output
    assert "in 1 query," in again.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(_bytes(tmp_path, table)))
    folder_out = runner.invoke(app, [*args[:5], str(tmp_path), *args[6:]])
    assert folder_out.exit_code == 2 and "is a folder: give the Parquet file" in folder_out.output


def _bytes(folder: Path, data: bytes) -> Path:
    path = folder / "first.parquet"
    path.write_bytes(data)
    return path


def test_build_refuses_bad_options(tmp_path: Path, ews_home: Path) -> None:
    out = str(tmp_path / "f.parquet")
    r = runner.invoke(app, ["features", "build", "--out", out])
    assert r.exit_code == 2 and "--as-of" in r.output
    r = runner.invoke(
        app, ["features", "build", "--out", out, "--from", "2020-01-01", "--to", "2019-01-01"]
    )
    assert r.exit_code == 2 and "before --from" in r.output
    r = runner.invoke(app, ["features", "build", "--out", out, "--as-of", "2020-01-01"])
    assert r.exit_code == 1 and "holds no data yet" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: {c: {event_type: complaint}}\nattributes: [race]\n")
    r = runner.invoke(app, ["features", "describe", "--spec", str(bad)])
    assert r.exit_code == 2 and "race and sex are never features" in r.output
