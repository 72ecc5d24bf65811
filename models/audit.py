"""The bias audit: how flags (and, once outcomes are known, their accuracy) differ by group.

Race and sex are never model inputs; they are read here, and only here, so that credentialing
reviewers can see whether the flags fall unequally on groups of officers. For a scored date
the audit reports, per group of each attribute: officers scored, flag rate and, when the
outcome window after the date is covered by the data, the outcome rate, precision, true
positive rate and false positive rate of the flags, with fairlearn's ``MetricFrame``. The
ratio of the lowest to the highest group value is given for each measure (1.0 = parity).
Groups with fewer than ``min_group`` officers are reported with their size only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import PROTECTED_ATTRIBUTES

if TYPE_CHECKING:
    from ews.db import AppDatabase


def disparities(
    agency: str,
    as_of: dt.date | None = None,
    by: tuple[str, ...] = PROTECTED_ATTRIBUTES,
    label: str | None = None,
    min_group: int = 20,
    home: Path | None = None,
    db: AppDatabase | None = None,
) -> dict[str, Any]:
    """Disparities of the flags of ``agency`` at ``as_of`` (default: the newest scored date).

    ``label`` is the outcome the model predicts (default: the one recorded with the flags);
    outcomes count only when the data cover the whole window after ``as_of``. ``home``: the
    workspace (default: EWS_HOME); ``db``: the application database the flags are read from
    (default: the workspace's).
    """
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import precision_score

    from ews.flagstore import load_flags
    from ews.store import Workspace
    from features.durations import parse_duration
    from features.labels import LabelSpec, build_labels
    from models.experiment import data_end

    day, flags = load_flags(agency, as_of, home, db=db)
    snap_id = str(flags["snapshot_id"].iloc[0]) if "snapshot_id" in flags else None
    snap = Workspace(home).snapshot(agency, snap_id)
    officers = snap.read().officers
    missing = [a for a in by if a not in officers.columns]
    if missing:
        raise ValueError(f"the officers table has no column {', '.join(missing)}")
    df = flags[["officer_id", "flagged"]].merge(
        officers[["officer_id", *by]].astype({"officer_id": str}), on="officer_id", how="left"
    )
    label = label or (str(flags["label"].iloc[0]) if "label" in flags else None)
    spec = LabelSpec.preset(label) if label else None
    outcome_known = bool(
        spec is not None and parse_duration(spec.window).after(day) <= data_end(snap)
    )
    if outcome_known and spec is not None:
        y = build_labels(snap, [day], spec)[["officer_id", "label"]]
        df = df.merge(y.astype({"officer_id": str}), on="officer_id", how="left")
        df["label"] = df["label"].fillna(0).astype(int)
    y_pred = df["flagged"].astype(int).to_numpy()

    def precision(y_true: Any, y_hat: Any) -> float:
        return float(precision_score(y_true, y_hat, zero_division=np.nan))

    metrics: dict[str, Any] = {"flag_rate": selection_rate}
    if outcome_known:
        metrics.update(
            {
                "outcome_rate": lambda t, p: float(np.mean(t)),
                "precision": precision,
                "true_positive_rate": true_positive_rate,
                "false_positive_rate": false_positive_rate,
            }
        )
    y_true = df["label"].to_numpy() if outcome_known else y_pred
    report: dict[str, Any] = {
        "agency": agency,
        "as_of": day.isoformat(),
        "snapshot_id": snap.id,
        "label": label,
        "outcome_known": outcome_known,
        "officers": len(df),
        "flagged": int(y_pred.sum()),
        "by": {},
    }
    for attr in by:
        groups = df[attr].astype("string").fillna("(not recorded)")
        sizes = groups.value_counts()
        big = groups.isin(sizes[sizes >= min_group].index)
        small = [
            {"group": str(g), "officers": int(n)} for g, n in sorted(sizes.items()) if n < min_group
        ]
        if not big.any():
            report["by"][attr] = {"groups": small, "min_over_max": {}}
            continue
        frame = MetricFrame(
            metrics=metrics,
            y_true=y_true[big.to_numpy()],
            y_pred=y_pred[big.to_numpy()],
            sensitive_features=groups[big].to_numpy(),
        )
        table = frame.by_group
        rows: list[dict[str, Any]] = [
            {"group": str(g), "officers": int(sizes[g]), **{k: _num(v) for k, v in r.items()}}
            for g, r in table.iterrows()
        ]
        rows += small
        ratios = {k: _num(v) for k, v in frame.ratio(method="between_groups").items()}
        report["by"][attr] = {"groups": rows, "min_over_max": ratios}
    return report


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if f != f else round(f, 4)
