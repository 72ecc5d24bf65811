"""Build the as-of feature table of a package: the one entry point others call.

>>> from features.build import build_features
>>> df = build_features(snapshot, [date(2014, 1, 1), date(2015, 1, 1)])  # doctest: +SKIP

Rows are the cohort at each as-of date (see :mod:`features.cohort`); columns are
``officer_id`` (str), ``as_of_date`` (datetime64), then the spec's columns in spec order.
All dates are computed in one query on the chosen engine (DuckDB by default, Spark with
``engine="spark"``), so the cost grows with the data, not with the number of dates.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from ibis.backends import BaseBackend

    from ews.store import Snapshot
    from features.cohort import CohortSpec
    from features.spec import FeatureSpec

_NUMPY_DTYPES: dict[str, Any] = {"int": "int64", "float": "float64"}


def build_features(
    source: Snapshot | str | Path,
    as_of_dates: Iterable[Any],
    spec: FeatureSpec | None = None,
    engine: str | BaseBackend = "duckdb",
    progress: bool = False,
    cohort: CohortSpec | None = None,
) -> pd.DataFrame:
    """The feature table of ``source`` (a Snapshot or a normalized package folder) at each
    of ``as_of_dates``; ``engine`` is ``"duckdb"``, ``"spark"`` or an Ibis backend."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from features.compile import as_dates, features_expr
    from features.engines import connect, execute, load_tables, package_folder
    from features.spec import default_spec

    spec = spec or default_spec()
    dates = as_dates(as_of_dates)
    folder = package_folder(source)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        disable=not (progress and sys.stderr.isatty()),  # no blank line in a log
        transient=True,
    ) as bar:
        task = bar.add_task("connecting", total=4)
        con = connect(engine)
        tables = load_tables(con, folder)
        bar.update(task, advance=1, description=f"compiling {len(spec.columns)} columns")
        expr = features_expr(tables, dates, spec, cohort)
        bar.update(task, advance=1, description=f"computing {len(dates)} as-of dates")
        raw = execute(expr)
        bar.update(task, advance=1, description="finishing")
        df = finish(raw, spec)
        bar.update(task, advance=1)
    return df


def finish(raw: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Fix the column types engines return differently, and sort rows."""
    import numpy as np

    from features.cohort import finish_keys

    df = finish_keys(raw)
    for col in spec.columns:
        s = df[col.name]
        if col.dtype == "str":
            df[col.name] = s.astype(object).where(s.notna(), None)
        else:
            df[col.name] = s.astype(_NUMPY_DTYPES[col.dtype])
            if col.dtype == "float":
                df[col.name] = df[col.name].replace([np.inf, -np.inf], np.nan)
    return df
