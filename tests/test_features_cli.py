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
