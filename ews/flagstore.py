"""Where scored flags live in the workspace, for the API and the audit.

``EWS_HOME/flags/<agency>/<as_of YYYY-MM-DD>.parquet``: one row per scored officer (officer_id,
score, rank, percentile, flagged, rules_fired, explanation, unit, rank, model and data
provenance). Files are written to a temporary name and renamed, so readers never see half a
file; a later scoring of the same date replaces the earlier one (the old file is kept with a
timestamp suffix, so nothing is lost).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ews.settings import get_settings

if TYPE_CHECKING:
    import pandas as pd


def flags_dir(agency: str, home: Path | None = None) -> Path:
    return (home or get_settings().home) / "flags" / agency


def save_flags(agency: str, as_of: dt.date, flags: pd.DataFrame, home: Path | None = None) -> Path:
    folder = flags_dir(agency, home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{as_of.isoformat()}.parquet"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    flags.to_parquet(tmp, index=False)
    if path.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        path.rename(folder / f"{as_of.isoformat()}.replaced-{stamp}.parquet.bak")
    os.replace(tmp, path)
    return path


def flag_dates(agency: str, home: Path | None = None) -> list[dt.date]:
    folder = flags_dir(agency, home)
    if not folder.is_dir():
        return []
    dates = []
    for p in folder.glob("*.parquet"):
        try:
            dates.append(dt.date.fromisoformat(p.stem))
        except ValueError:
            continue
    return sorted(dates)


def load_flags(
    agency: str, as_of: dt.date | None = None, home: Path | None = None
) -> tuple[dt.date, pd.DataFrame]:
    """The flags of an as-of date (default: the newest). Raises LookupError if none."""
    import pandas as pd

    dates = flag_dates(agency, home)
    if not dates:
        raise LookupError(f"agency {agency!r} has no scored flags yet: run `ews score`")
    if as_of is None:
        as_of = dates[-1]
    elif as_of not in dates:
        have = ", ".join(d.isoformat() for d in dates)
        raise LookupError(f"agency {agency!r} has no flags for {as_of}; scored dates: {have}")
    return as_of, pd.read_parquet(flags_dir(agency, home) / f"{as_of.isoformat()}.parquet")
