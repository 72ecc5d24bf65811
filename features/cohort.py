"""Cohorts: which officers get a row at each as-of date.

At an as-of date t an officer is in the cohort when appointed before t
(``appointed_date < t``) and not separated before t (``separation_date`` empty or
``>= t``: a separation dated t or later is not yet known at t). With
``require_assignment: <kind>`` the officer must also hold an assignment of that kind at t
(``start_date < t`` and ``end_date`` empty or ``>= t``; ``end_date`` is the spell's last
day). The Chicago benchmark uses ``require_assignment: rank``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    import pandas as pd
    from ibis.backends import BaseBackend

    from ews.store import Snapshot


class CohortSpec(BaseModel):
    """Who is scored at each as-of date (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_assignment: str | None = None

    @field_validator("require_assignment")
    @classmethod
    def _kind(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-z][a-z0-9_]*$", v):
            raise ValueError(f"require_assignment {v!r} must be an assignment kind such as rank")
        return v


def build_cohort(
    source: Snapshot | str | Path,
    as_of_dates: Iterable[Any],
    cohort: CohortSpec | None = None,
    engine: str | BaseBackend = "duckdb",
) -> pd.DataFrame:
    """DataFrame[officer_id (str), as_of_date (datetime64)] of the cohort at each date,
    sorted by date then officer."""
    from features.compile import KEYS, as_dates, cohort_expr, dates_table
    from features.engines import connect, execute, load_tables, package_folder

    dates = as_dates(as_of_dates)
    con = connect(engine)
    tables = load_tables(con, package_folder(source))
    expr = cohort_expr(tables, dates_table(con, dates), cohort).select(*KEYS)
    return finish_keys(execute(expr))


def finish_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Normalize the key columns' types and sort rows by (as_of_date, officer_id)."""
    import pandas as pd

    df["officer_id"] = df["officer_id"].astype(str)
    df["as_of_date"] = pd.to_datetime(df["as_of_date"]).astype("datetime64[ns]")
    return df.sort_values(["as_of_date", "officer_id"], kind="stable").reset_index(drop=True)
