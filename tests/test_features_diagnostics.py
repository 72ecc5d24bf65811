"""Diagnostics before work: an empty cohort says why, features without information are named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _models_agency import make_agency, small_config
from typer.testing import CliRunner

from ews.cli import app
from features.cohort import CohortSpec
from features.diagnostics import degenerate_columns, empty_cohort_reasons

runner = CliRunner()


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 officers appointed 1998-2004, unit and rank assignments from appointment on."""
    return make_agency(tmp_path_factory.mktemp("agency") / "pkg")


def test_reasons_name_the_missing_kind_and_the_empty_dates(agency: Path) -> None:
    appointed = pd.to_datetime(pd.read_parquet(agency / "officers.parquet")["appointed_date"])
    first = appointed.min().date()
    shift = CohortSpec(require_assignment="shift")
    early, later = dt.date(1990, 1, 1), dt.date(2010, 1, 1)
    reasons = empty_cohort_reasons(agency, [later, early], shift)
    assert reasons[0] == (
        f"{early}: no officer was active (appointed before it and not separated before it); "
        f"officers were appointed {first} .. {appointed.max().date()}"
    )
    active = int((appointed < pd.Timestamp(later)).sum())
    assert reasons[1] == (
        f"{later}: the package holds no 'shift' assignments (kinds it holds: rank, unit), so "
        f"--require-assignment shift leaves none of the {active:,} active officers"
    )
    # a date with a cohort gets no reason
    assert empty_cohort_reasons(agency, [later], CohortSpec(require_assignment="rank")) == []


def test_reason_when_the_kind_exists_but_nobody_holds_it_yet(agency: Path, tmp_path: Path) -> None:
    pkg = make_agency(tmp_path / "late", officers=20)
    a = pd.read_parquet(pkg / "assignments.parquet")
    rank = a["kind"] == "rank"
    a.loc[rank, "start_date"] = pd.Timestamp("2012-01-01").date()
    a.to_parquet(pkg / "assignments.parquet", index=False)
    (reason,) = empty_cohort_reasons(
        pkg, [dt.date(2010, 1, 1)], CohortSpec(require_assignment="rank")
    )
    assert reason.startswith("2010-01-01: none of the 20 active officers held a 'rank' assignment")
    assert "starts 2012-01-01" in reason


def test_degenerate_columns() -> None:
    df = pd.DataFrame(
        {
            "empty": [np.nan, np.nan, np.nan],
            "zero": [0, 0, 0],
            "half": [0.5, 0.5, 0.5],
            "varies": [0, 1, 0],
            "partly": [1.0, np.nan, 1.0],  # missing once: not constant
        }
    )
    d = degenerate_columns(df, list(df.columns))
    assert d.empty == ["empty"] and d.constant == {"zero": 0, "half": 0.5}
    assert d.lines(5) == [
        "3 of 5 features carry no information on this data (1 empty, 2 constant):",
        "  empty (no value at all): empty",
        "  constant 0: zero",
        "  constant 0.5: half",
    ]
    assert degenerate_columns(df, ["varies", "partly"]).lines(2) == []


def test_features_build_explains_an_empty_cohort(agency: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    args = ["features", "build", "--package", str(agency), "--out", str(out)]
    r = runner.invoke(app, [*args, "--as-of", "2010-01-01", "--require-assignment", "shift"])
    assert r.exit_code == 1
    assert "no 'shift' assignments (kinds it holds: rank, unit)" in r.output
    assert not out.exists()
    ok = runner.invoke(app, [*args, "--as-of", "1990-01-01", "--as-of", "2010-01-01"])
    assert ok.exit_code == 0, ok.output
    assert "warning: empty cohort at 1990-01-01: no officer was active" in ok.output
    # the spec's vehicle pursuit counts are all zero on this agency (it has none)
    assert "features carry no information on this data" in ok.output
    assert "vehicle_pursuit_1y_count" in ok.output


def test_train_explains_an_empty_cohort(agency: Path) -> None:
    from models.experiment import ExperimentConfig, ExperimentError, run_experiment

    config = ExperimentConfig.model_validate(small_config(cohort={"require_assignment": "shift"}))
    with pytest.raises(ExperimentError) as err:
        run_experiment(config, source=agency, tracking=False, progress=False)
    # the config check refuses it before any work, naming the kind the data lack
    assert "refused before any work" in str(err.value)
    assert "'shift', but the data hold no such assignments (kinds: rank, unit)" in str(err.value)
