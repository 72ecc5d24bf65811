"""A stationary synthetic agency for the drift tests, with drift injected on demand.

Officers are hired evenly from 1995 to 2015 and serve 4 to 12 years, so from about 2007 on the
active officers look alike year after year (tenure, career counts). Each has a hidden
propensity; complaints (30% in the excessive-force category ``05A``) and use-of-force reports
arrive at rates proportional to it. Four units, one unit per officer.

With ``drift=True``, from ``CHANGE`` on: the use-of-force rate of unit ``u1`` doubles (each of
its reports is doubled), and the agency recodes its excessive-force category from ``05A ...``
to ``EF-1 ...`` (so it no longer counts as excessive force for ews, whose spec looks for the
prefix ``05``). Before ``CHANGE`` both versions are identical, row for row.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ews.contract import write_normalized

START, END = date(1995, 1, 1), date(2015, 12, 31)
CHANGE = date(2014, 1, 1)
FORCE_CATEGORY = "05A EXCESSIVE FORCE: ARREST"
RECODED = "EF-1 EXCESSIVE FORCE: ARREST"
OTHER_CATEGORY = "10J NEGLECT OF DUTY"


def make_drift_agency(folder: Path, drift: bool, officers: int = 1200, seed: int = 11) -> Path:
    """Write the package (calm, or with the drift above) to ``folder``."""
    rng = np.random.default_rng(seed)
    ids = [f"D{i:05d}" for i in range(officers)]
    span = (END - START).days
    hired = [START + timedelta(days=int(d)) for d in rng.integers(0, span, officers)]
    served = rng.integers(4 * 365, 12 * 365, officers)
    left = [h + timedelta(days=int(s)) for h, s in zip(hired, served, strict=True)]
    officer_df = pd.DataFrame(
        {
            "officer_id": ids,
            "appointed_date": [d.isoformat() for d in hired],
            "separation_date": [d.isoformat() if d <= END else None for d in left],
            "birth_year": [
                d.year - int(a) for d, a in zip(hired, rng.integers(21, 35, officers), strict=True)
            ],
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
            "start_date": [d.isoformat() for d in hired] * 2,
            "end_date": [None] * (2 * officers),
        }
    )
    lam = rng.gamma(0.8, 1.0, officers)
    rows = []
    for i, oid in enumerate(ids):
        first, last = hired[i] + timedelta(days=1), min(left[i], END)
        days = (last - first).days
        if days <= 0:
            continue
        for etype, rate in (("complaint", 1.0), ("use_of_force", 1.5), ("arrest", 4.0)):
            mult = lam[i] if etype != "arrest" else 1.0
            n = rng.poisson(rate * mult * days / 365.25)
            for d in rng.integers(0, days, n):
                ev = first + timedelta(days=int(d))
                rep = ev + timedelta(days=int(rng.integers(0, 10)))
                finding, fdate, category = None, None, None
                if etype == "complaint":
                    category = FORCE_CATEGORY if rng.random() < 0.3 else OTHER_CATEGORY
                    p = min(0.9, 0.1 + 0.15 * lam[i])
                    finding = "sustained" if rng.random() < p else "not_sustained"
                    fdate = (rep + timedelta(days=int(rng.integers(30, 300)))).isoformat()
                rows.append(
                    (
                        oid,
                        units[i],
                        etype,
                        ev.isoformat(),
                        rep.isoformat(),
                        category,
                        finding,
                        fdate,
                    )
                )
    events = pd.DataFrame(
        rows,
        columns=[
            "officer_id",
            "unit",
            "event_type",
            "event_date",
            "reported_date",
            "category",
            "finding",
            "finding_date",
        ],
    )
    events = events[events["reported_date"] <= END.isoformat()].reset_index(drop=True)
    events.insert(0, "event_id", [f"E{i}" for i in range(len(events))])
    if drift:
        after = events["event_date"] >= CHANGE.isoformat()
        doubled = events[
            after & (events["unit"] == "u1") & (events["event_type"] == "use_of_force")
        ]
        doubled = doubled.assign(event_id=[f"X{i}" for i in range(len(doubled))])
        recode = after & (events["category"] == FORCE_CATEGORY)
        events.loc[recode, "category"] = RECODED
        events = pd.concat([events, doubled], ignore_index=True)
    return write_normalized(folder, officer_df, events.drop(columns="unit"), assign)
