"""Drift monitoring: do the officers scored today still look like the ones the model learned
from?

The indicators of the model's inputs at the current as-of date are compared with the same
indicators at the as-of dates the model was trained on (its registry tag
``ews.train_dates``), column by column, with Evidently's data-drift preset. Evidently picks
the method by sample size (a statistical test on small samples, a distance such as the
normed Wasserstein on large ones), so the method and threshold are recorded with every
column's result. Both sides are built by the same feature code that scoring uses, under the
knowledge-time rule.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any


def drift(
    as_of: dt.date,
    model: str = "champion",
    agency: str | None = None,
    reference: list[dt.date] | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Compare the model's input indicators at ``as_of`` with those at ``reference`` dates
    (default: the model's training dates). Writes ``drift.json`` and ``drift.html`` to
    ``out`` (default ``EWS_HOME/drift/<agency>/<as_of>/``) and returns the summary."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from ews.settings import get_settings
    from features.build import build_features
    from models.experiment import cohort_spec
    from models.scoring import ScoringError, model_and_data

    loaded, config, src, agency, spec = model_and_data(model, agency)
    if reference is None:
        tag = loaded.tags.get("ews.train_dates", "")
        reference = [dt.date.fromisoformat(d) for d in tag.split(",") if d]
        if not reference:
            raise ScoringError(f"{loaded.name} v{loaded.version} records no training dates")
    if as_of in reference:
        raise ScoringError(f"{as_of} is a reference date: compare a later date")
    dates = sorted({*reference, as_of})
    features = build_features(src, dates, spec=spec, cohort=cohort_spec(config.cohort))
    columns = loaded.feature_names
    day = pd.to_datetime(features["as_of_date"]).dt.date
    ref = features.loc[day.isin(reference), columns].astype("float64")
    cur = features.loc[day == as_of, columns].astype("float64")
    if ref.empty or cur.empty:
        raise ScoringError(f"no officers in the cohort at {as_of} or at the reference dates")
    definition = DataDefinition(numerical_columns=columns)
    with warnings.catch_warnings():
        # scipy divides by zero for a column constant in both samples (no drift: the
        # report says so); its RuntimeWarnings only clutter the command's output
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
    raw = snapshot.dict()
    per_column: dict[str, dict[str, Any]] = {}
    share = None
    for metric in raw["metrics"]:
        cfg = metric.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            per_column[cfg["column"]] = {
                "column": cfg["column"],
                "method": cfg.get("method"),
                "threshold": cfg.get("threshold"),
                "score": float(metric["value"]) if metric.get("value") is not None else None,
            }
        elif cfg.get("type", "").endswith("DriftedColumnsCount"):
            share = metric.get("value", {}).get("share")
    for test in raw.get("tests", []):
        column = test.get("metric_config", {}).get("params", {}).get("column")
        if column in per_column:
            per_column[column]["drifted"] = str(test.get("status", "")).endswith("FAIL")
    drifted = [c for c, r in per_column.items() if r.get("drifted")]
    summary = {
        "agency": agency,
        "model": f"{loaded.name} v{loaded.version}",
        "as_of": as_of.isoformat(),
        "reference_dates": [d.isoformat() for d in reference],
        "officers_current": len(cur),
        "officer_dates_reference": len(ref),
        "columns": len(columns),
        "drifted_columns": drifted,
        "drifted_share": share,
        "per_column": list(per_column.values()),
    }
    folder = out or get_settings().home / "drift" / agency / as_of.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drift.json").write_text(json.dumps(summary, indent=2, default=str))
    snapshot.save_html(str(folder / "drift.html"))
    summary["report"] = str(folder / "drift.html")
    return summary
