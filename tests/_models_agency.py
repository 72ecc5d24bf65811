"""A small synthetic agency with a real signal, for the models tests.

Each officer has a hidden propensity; complaints and use-of-force reports arrive each year at
rates proportional to it, so past counts predict future sustained complaints. Findings come
30 to 700 days after the report, so label maturity visibly changes training labels.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ews.contract import write_normalized


def make_agency(folder: Path, officers: int = 240, seed: int = 7, signal: bool = True) -> Path:
    """Write a normalized package (2004-2016) with ``officers`` officers into ``folder``;
    ``signal=False``: every officer has the same propensity, so no model beats chance."""
    rng = np.random.default_rng(seed)
    ids = [f"O{i:04d}" for i in range(officers)]
    appointed = [date(1998, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 2500, officers)]
    officer_df = pd.DataFrame(
        {
            "officer_id": ids,
            "appointed_date": [d.isoformat() for d in appointed],
            "separation_date": [None] * officers,
            "birth_year": rng.integers(1960, 1985, officers),
            "sex": rng.choice(["M", "F"], officers),
            "race": rng.choice(["A", "B", "C"], officers),
        }
    )
    units = rng.choice(["u1", "u2", "u3", "u4"], officers)
    assign = pd.DataFrame(
        {
            "officer_id": ids * 2,
            "kind": ["unit"] * officers + ["rank"] * officers,
            "value": list(units) + ["po"] * officers,
            "start_date": [d.isoformat() for d in appointed] * 2,
            "end_date": [None] * (2 * officers),
        }
    )
    lam = rng.gamma(0.8, 1.0, officers) if signal else np.full(officers, 0.8)
    start, end = date(2004, 1, 1), date(2016, 12, 31)
    span = (end - start).days
    rows = []
    for i, oid in enumerate(ids):
        for etype, rate in (("complaint", 1.2), ("use_of_force", 1.5), ("arrest", 4.0)):
            mult = lam[i] if etype != "arrest" else 1.0
            n = rng.poisson(rate * mult * span / 365.25)
            for d in rng.integers(0, span, n):
                ev = start + timedelta(days=int(d))
                ev = max(ev, appointed[i] + timedelta(days=1))
                rep = ev + timedelta(days=int(rng.integers(0, 20)))
                finding, fdate = None, None
                if etype == "complaint":
                    p = min(0.9, 0.1 + 0.15 * lam[i])
                    finding = "sustained" if rng.random() < p else "not_sustained"
                    fdate = (rep + timedelta(days=int(rng.integers(30, 700)))).isoformat()
                rows.append((oid, etype, ev.isoformat(), rep.isoformat(), finding, fdate))
    events = pd.DataFrame(
        rows,
        columns=[
            "officer_id",
            "event_type",
            "event_date",
            "reported_date",
            "finding",
            "finding_date",
        ],
    )
    events.insert(0, "event_id", [f"E{i}" for i in range(len(events))])
    events = events[events["reported_date"] <= end.isoformat()].reset_index(drop=True)
    return write_normalized(folder, officer_df, events, assign)


_MLFLOW: dict[str, str] = {}


def shared_mlflow_uri() -> str:
    """One SQLite MLflow store for the whole test session (creating one takes 5-6 s)."""
    if "uri" not in _MLFLOW:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="ews-test-mlflow-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _MLFLOW["uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    return _MLFLOW["uri"]


SMALL_GRID = [
    {"name": "lr", "estimator": "logistic_regression", "params": {"C": [0.1, 1.0]}},
    {
        "name": "rf",
        "estimator": "random_forest",
        "params": {"n_estimators": 30, "max_depth": [4], "min_samples_leaf": 5},
    },
]


def small_config(**overrides: object) -> dict[str, object]:
    """A fast experiment config for the synthetic agency (2 test dates, 3 candidates)."""
    cfg: dict[str, object] = {
        "name": "test",
        "labels": ["sustained"],
        "splitter": {
            "test_dates": ["2014-01-01", "2015-01-01"],
            "label_window": "1y",
            "train_history": "5y",
            "train_every": "1y",
            "inner_splits": 2,
        },
        "grid": SMALL_GRID,
        "n_boot": 50,
    }
    cfg.update(overrides)
    return cfg
