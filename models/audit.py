"""The bias audit: how flags (and, once outcomes are known, their accuracy) differ by group.

Race and sex are never model inputs; they are read here, and only here, so that credentialing
reviewers can see whether the flags fall unequally on groups of officers. For a scored date
the audit reports, per group of each attribute: officers scored, flag rate and, when the
outcome window after the date is covered by the data, the outcome rate, precision, true
positive rate and false positive rate of the flags, with fairlearn's ``MetricFrame``. The
ratio of the lowest to the highest group value is given for each measure (1.0 = parity).
Groups with fewer than ``min_group`` officers are reported with their size only.

In-sample dates: a date before the label cutoff of the model that scored it (the last date
whose outcomes its training labels saw, :func:`models.scoring.label_cutoff`) is in-sample:
the model learned the very outcomes the audit would measure it on (precision 0.93-1.00 per
group on such a date of the demo agency, 0.44-0.54 on held-out dates). Such a date is refused
(:class:`InSampleError`) unless ``allow_in_sample``, and every report says whether it is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import PROTECTED_ATTRIBUTES

if TYPE_CHECKING:
    from ews.db import AppDatabase


class InSampleError(ValueError):
    """The flags of the date come from a model trained on that date's outcomes."""


def sample_status(
    model_name: str | None, model_version: str | None, day: dt.date, uri: str | None = None
) -> dict[str, Any]:
    """Whether flags of ``day`` scored by this model are in-sample: ``{"in_sample": True |
    False | None (the model is not in the registry), "label_cutoff": ISO date or None,
    "why": a sentence}``. Uses the scoring refusal's notion (:func:`check_lookahead`)."""
    from models.registry import version_tags
    from models.scoring import check_lookahead, label_cutoff

    if not model_name or not model_version:
        return {"in_sample": None, "label_cutoff": None, "why": "the flags name no model"}
    tags = version_tags(model_name, model_version, uri)
    if tags is None:
        return {
            "in_sample": None,
            "label_cutoff": None,
            "why": f"{model_name} v{model_version} is not in the model registry: whether "
            f"{day} is in-sample cannot be checked",
        }
    cutoff = label_cutoff(tags)
    inside = check_lookahead(model_name, str(model_version), tags, day) is not None
    model = f"{model_name} v{model_version}"
    if not inside:
        why = f"held out: {day} is on or after the label cutoff {cutoff} of {model}"
    elif cutoff is None:
        why = f"{model} records no label cutoff: its training may have seen any outcome"
    else:
        why = (
            f"{model} was trained on outcomes known up to {cutoff} (its label cutoff), after {day}"
        )
    return {
        "in_sample": inside,
        "label_cutoff": cutoff.isoformat() if cutoff else None,
        "why": why,
    }


def disparities(
    agency: str,
    as_of: dt.date | None = None,
    by: tuple[str, ...] = PROTECTED_ATTRIBUTES,
    label: str | None = None,
    min_group: int = 20,
    home: Path | None = None,
    db: AppDatabase | None = None,
    allow_in_sample: bool = False,
    uri: str | None = None,
) -> dict[str, Any]:
    """Disparities of the flags of ``agency`` at ``as_of`` (default: the newest scored date).

    A date before the scoring model's label cutoff is in-sample: refused with
    :class:`InSampleError` unless ``allow_in_sample`` (then the report says
    ``"in_sample": true``). ``uri``: the MLflow store (default: the workspace's).

    ``label`` is the outcome the model predicts (default: the one recorded with the flags);
    outcomes count only when the data cover the whole window after ``as_of``. ``home``: the
    workspace (default: EWS_HOME); ``db``: the application database the flags are read from
    (default: the workspace's).
    """
    from ews.flagstore import load_flags
    from ews.store import Workspace
    from features.durations import parse_duration
    from features.labels import LabelSpec, build_labels
    from models.experiment import data_end

    day, flags = load_flags(agency, as_of, home, db=db)
    first: Any = flags.iloc[0] if len(flags) else {}
    status = sample_status(
        str(first.get("model_name") or "") or None,
        str(first.get("model_version") or "") or None,
        day,
        uri,
    )
    if status["in_sample"] and not allow_in_sample:
        raise InSampleError(
            f"the flags of {agency} at {day} are in-sample: {status['why']}, so their "
            "accuracy by group would be measured on outcomes the model learned. Audit a date "
            f"on or after {status['label_cutoff'] or 'the label cutoff'} (held-out figures "
            "of the champion and the rules are in `ews audit-report`), or pass "
            "--allow-in-sample (API: allow_in_sample=true) to see them marked as in-sample"
        )
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
    y_true = df["label"].to_numpy() if outcome_known else None
    report: dict[str, Any] = {
        "agency": agency,
        "as_of": day.isoformat(),
        "snapshot_id": snap.id,
        "label": label,
        "outcome_known": outcome_known,
        "in_sample": status["in_sample"],
        "label_cutoff": status["label_cutoff"],
        "sample_note": status["why"],
        "officers": len(df),
        "flagged": int(y_pred.sum()),
        "by": {attr: by_group(df[attr], y_pred, y_true, min_group) for attr in by},
    }
    return report


def by_group(
    groups: Any, y_pred: Any, y_true: Any | None = None, min_group: int = 20
) -> dict[str, Any]:
    """Per group of one attribute (``groups``: a value per row; missing = "(not recorded)"):
    officers, flag rate and, with ``y_true`` (the outcomes), outcome rate, precision, true and
    false positive rates (fairlearn ``MetricFrame``), and the ratio of the lowest to the
    highest group per measure. Groups under ``min_group`` rows: their size only."""
    import numpy as np
    import pandas as pd
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import precision_score

    def precision(t: Any, p: Any) -> float:
        return float(precision_score(t, p, zero_division=np.nan))

    y_pred = np.asarray(y_pred).astype(int)
    metrics: dict[str, Any] = {"flag_rate": selection_rate}
    if y_true is not None:
        metrics.update(
            {
                "outcome_rate": lambda t, p: float(np.mean(t)),
                "precision": precision,
                "true_positive_rate": true_positive_rate,
                "false_positive_rate": false_positive_rate,
            }
        )
    truth = np.asarray(y_true).astype(int) if y_true is not None else y_pred
    labels = pd.Series(groups).reset_index(drop=True).astype("string").fillna("(not recorded)")
    sizes = labels.value_counts()
    big = labels.isin(sizes[sizes >= min_group].index).to_numpy()
    small = [
        {"group": str(g), "officers": int(n)} for g, n in sorted(sizes.items()) if n < min_group
    ]
    if not big.any():
        return {"groups": small, "min_over_max": {}}
    frame = MetricFrame(
        metrics=metrics,
        y_true=truth[big],
        y_pred=y_pred[big],
        sensitive_features=labels[big].to_numpy(),
    )
    flagged = pd.Series(y_pred[big]).groupby(labels[big].to_numpy()).sum()
    rows: list[dict[str, Any]] = [
        {
            "group": str(g),
            "officers": int(sizes[g]),
            "flagged": int(flagged[g]),
            **{k: _num(v) for k, v in r.items()},
        }
        for g, r in frame.by_group.iterrows()
    ]
    ratios = {k: _num(v) for k, v in frame.ratio(method="between_groups").items()}
    return {"groups": rows + small, "min_over_max": ratios}


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if f != f else round(f, 4)


def four_fifths_table(
    groups: list[dict[str, Any]], min_group: int = 20, threshold: float = 0.8
) -> dict[str, Any]:
    """The flag rates of :func:`by_group`'s groups for people: per group the rate with its
    95% Wilson interval (statsmodels), the rate over the highest group's, and the four-fifths
    verdict: ``pass`` (at least ``threshold`` of the highest) or ``fail``, with ``sure``
    False when the group's interval reaches both sides of the line at ``threshold`` x the
    highest rate (too few officers or flags to tell); groups under ``min_group`` officers
    (size only) have the verdict ``too few officers``. The highest group is the reference.

    Returns ``rows`` (group, officers, flagged, rate, low, high, ratio, verdict, sure,
    highest), ``highest`` (the highest rate), ``line`` (``threshold`` x the highest) and
    ``threshold``."""
    from statsmodels.stats.proportion import proportion_confint

    rated = [g for g in groups if g.get("flag_rate") is not None and g.get("flagged") is not None]
    highest = max((float(g["flag_rate"]) for g in rated), default=None)
    line = threshold * highest if highest else None
    rows = []
    for g in groups:
        row: dict[str, Any] = {"group": g["group"], "officers": int(g["officers"])}
        if g not in rated:
            rows.append({**row, "verdict": "too few officers"})
            continue
        n, k = int(g["officers"]), int(g["flagged"])
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        rate = float(g["flag_rate"])
        ratio = rate / highest if highest else None
        top = highest is not None and rate == highest
        verdict = "pass" if ratio is None or ratio >= threshold else "fail"
        sure = top or line is None or not (low < line < high)
        rows.append(
            {
                **row,
                "flagged": k,
                "rate": rate,
                "low": float(low),
                "high": float(high),
                "ratio": ratio,
                "verdict": verdict,
                "sure": sure,
                "highest": top,
            }
        )
    return {"rows": rows, "highest": highest, "line": line, "threshold": threshold}
