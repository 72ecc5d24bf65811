"""Drift monitoring: do the officers scored today still look like the ones the model learned
from, are its scores distributed as they were, and is it still as precise?

At an as-of date, for the model's input columns, the indicators of the officers in the
cohort are compared with the same indicators at the dates the model was trained on (its
registry tag ``ews.train_dates``; at most ``drift.max_reference_dates`` of the newest), column
by column, with Evidently's statistical tests: Evidently picks the method by sample size (a
test giving a p-value on small samples: Kolmogorov-Smirnov, chi-square, z; a distance on
reference samples over 1,000 rows: the normed Wasserstein distance, Jensen-Shannon), so each
column's method, its kind of statistic (p-value or distance) and its threshold are recorded
with it. Evidently's tests are called directly, without its report: building the report's
plots was most of the time of the check, and ews writes its own report.

The model's scores at the date are compared with its scores at the reference dates: the
population stability index (PSI, on the deciles of the reference scores), the
Kolmogorov-Smirnov test and the Wasserstein distance, and the flag-rate shift (the share of
officers at the date scoring above the reference's top ``flag_top_pct`` threshold). Once the
outcome window after the date is covered by the data (label maturity), the precision at the
top k% at the date is set against the champion's precision at k% on its validation splits.

Both sides are built by the same feature code that scoring uses, under the knowledge-time
rule. Every run is written as ``drift.json`` and an ews report ``drift.html`` under
``EWS_HOME/drift/<agency>/<as_of>/``, and stored in the application database (``drift_runs``,
with its audit entry in the same transaction); :func:`drift_history` reads them back. A run
alerts when more than ``drift.max_share`` of the columns drift or the scores drift (PSI at or
over ``drift.score_psi``): ``ews drift`` then exits 3.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.scoring import ScoringError, data_span

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ews.db import AppDatabase

# Evidently's tests whose statistic is a p-value (drift when it is below the threshold); the
# others (wasserstein, jensenshannon, psi, kl_div, hellinger, ...) give a distance (drift when
# it reaches the threshold).
P_VALUE_METHODS = frozenset(
    {
        "ks",
        "chisquare",
        "z",
        "t_test",
        "anderson",
        "fisher_exact",
        "g_test",
        "mannw",
        "cramer_von_mises",
        "es",
        "empirical_mmd",
    }
)
MAX_REFERENCE_ROWS = 50_000  # a seeded sample of the reference rows beyond this
PSI_BINS = 10


class DriftDateError(ScoringError):
    """A date outside the data (``ews drift`` exits 2)."""


def _rounded(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _import_evidently() -> None:
    import evidently.legacy.calculations.stattests.registry  # noqa: F401


def column_drift(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    """Evidently's drift test of one numerical column, with the method Evidently chooses
    for the sample sizes: method, stat_kind ('p-value' or 'distance'), p_value or distance,
    threshold, drifted. Missing and infinite values are left out; a column with no value on
    one side is not tested (method None)."""
    import numpy as np
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ref = reference.replace([np.inf, -np.inf], np.nan).dropna().astype("float64")
    cur = current.replace([np.inf, -np.inf], np.nan).dropna().astype("float64")
    row: dict[str, Any] = {
        "column": str(reference.name),
        "method": None,
        "stat_kind": None,
        "p_value": None,
        "distance": None,
        "threshold": None,
        "drifted": False,
        "reference_mean": _rounded(float(ref.mean()) if len(ref) else None, 4),
        "current_mean": _rounded(float(cur.mean()) if len(cur) else None, 4),
        "note": None,
    }
    if ref.empty or cur.empty:
        row["note"] = "no value at the " + ("reference dates" if ref.empty else "current date")
        return row
    test = get_stattest(ref, cur, ColumnType.Numerical, None)
    kind = "p-value" if test.name in P_VALUE_METHODS else "distance"
    row.update(method=test.name, stat_kind=kind, threshold=test.default_threshold)
    if ref.nunique() == 1 and cur.nunique() == 1 and ref.iloc[0] == cur.iloc[0]:
        # the same constant on both sides: no drift (the tests would divide by zero)
        if kind == "p-value":
            row["p_value"] = 1.0
        else:
            row["distance"] = 0.0
        row["note"] = "the same constant on both sides"
        return row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's warnings on degenerate samples
        result = test(ref, cur, ColumnType.Numerical, None)
    value = _rounded(float(result.drift_score))
    row["p_value" if kind == "p-value" else "distance"] = value
    row["drifted"] = bool(result.drifted)
    return row


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` on the reference's
    quantile bins (empty bins count as 0.0001 of their side)."""
    import numpy as np

    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.all(current == reference[0]) else math.inf
    inner = edges[1:-1]
    ref_share = np.bincount(
        np.searchsorted(inner, reference, side="right"), minlength=len(edges) - 1
    )
    cur_share = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(edges) - 1)
    r = np.clip(ref_share / len(reference), 1e-4, None)
    c = np.clip(cur_share / len(current), 1e-4, None)
    return float(np.sum((c - r) * np.log(c / r)))


def score_drift(
    reference: np.ndarray, current: np.ndarray, flag_top_pct: float, psi_threshold: float
) -> dict[str, Any]:
    """How the model's scores at the date differ from its scores at the reference dates."""
    import numpy as np
    from scipy import stats

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    value = psi(ref, cur)
    ks = stats.ks_2samp(ref, cur)
    cut = float(np.quantile(ref, 1 - flag_top_pct / 100.0))
    return {
        "method": "psi",
        "psi": _rounded(value),
        "threshold": psi_threshold,
        "drifted": bool(value >= psi_threshold),
        "ks_statistic": _rounded(float(ks.statistic)),
        "ks_pvalue": _rounded(float(ks.pvalue)),
        "wasserstein": _rounded(float(stats.wasserstein_distance(ref, cur))),
        "reference_mean": _rounded(float(ref.mean())),
        "current_mean": _rounded(float(cur.mean())),
        "flag_top_pct": flag_top_pct,
        "flag_threshold": _rounded(cut),
        "flag_rate_reference": _rounded(float(np.mean(ref >= cut))),
        "flag_rate_current": _rounded(float(np.mean(cur >= cut))),
        "histogram": _histogram(ref, cur),
    }


def _histogram(ref: np.ndarray, cur: np.ndarray, bins: int = 20) -> list[dict[str, float]]:
    """Shares of the reference and current scores in equal-width bins (for the report)."""
    import numpy as np

    lo, hi = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, bins + 1)
    r, _ = np.histogram(ref, edges)
    c, _ = np.histogram(cur, edges)
    return [
        {
            "from": round(float(edges[i]), 4),
            "to": round(float(edges[i + 1]), 4),
            "reference": float(r[i] / len(ref)),
            "current": float(c[i] / len(cur)),
        }
        for i in range(bins)
    ]


def check_dates(as_of: dt.date, reference: list[dt.date], first: dt.date, last: dt.date) -> None:
    """Refuse a current or reference date outside the data (:class:`DriftDateError`): on or
    before the first reported event, or after the day after the last one."""
    end = last + dt.timedelta(days=1)
    for day, what in [(as_of, "the date")] + [(d, "the reference date") for d in reference]:
        if day <= first or day > end:
            raise DriftDateError(
                f"{what} {day} is outside the data (events reported {first} .. {last}): "
                f"give a date from {first + dt.timedelta(days=1)} to {end}"
            )


def _metric_k(metric: str) -> float | None:
    m = re.fullmatch(r"precision@(\d+(?:\.\d+)?)%", metric)
    return float(m.group(1)) if m else None


def validation_precision(results: dict[str, Any], tags: dict[str, str]) -> float | None:
    """The mean selection metric (precision@k%) of the model's candidate on the validation
    splits that chose it (experiment results), or None when they record none."""
    label, candidate = tags.get("ews.label"), tags.get("ews.candidate")
    entries = [d for d in results.get("deployment", []) if d.get("label") == label] or [
        s
        for s in results.get("selection", [])
        if s.get("label") == label and s.get("test_date") == tags.get("ews.as_of")
    ]
    for entry in entries:
        values = [v for v in (entry.get("scores") or {}).get(candidate, []) if v is not None]
        if values:
            return float(sum(values) / len(values))
    return None


def _precision_now(
    src: Any,
    as_of: dt.date,
    config: Any,
    tags: dict[str, str],
    officers: pd.Series,
    scores: np.ndarray,
    k: float,
    last: dt.date,
) -> dict[str, Any]:
    """Precision at the top k% at ``as_of`` once its outcome window is covered by the data."""
    import pandas as pd

    from features.labels import build_labels
    from models.experiment import cohort_spec, label_spec
    from models.metrics import evaluate_scores
    from models.splitter import parse_duration

    name = tags.get("ews.label", "")
    items = [x for x in config.labels if (x if isinstance(x, str) else x.get("name")) == name]
    out: dict[str, Any] = {"label": name, "k_pct": k, "precision_at_k": None, "matured": False}
    if not items:
        out["note"] = f"the model's label {name!r} is not in its experiment config"
        return out
    spec = label_spec(items[0])
    window_end = as_of + parse_duration(spec.window, "label window")
    out["outcome_window_end"] = window_end.isoformat()
    if window_end > last + dt.timedelta(days=1):
        out["note"] = (
            f"outcomes not yet known: the {spec.window} outcome window after {as_of} ends "
            f"{window_end}, after the data ({last})"
        )
        return out
    labels = build_labels(src, [as_of], spec, cohort=cohort_spec(config.cohort))
    frame = pd.DataFrame({"officer_id": officers.astype(str).to_numpy(), "score": scores})
    joined = frame.merge(
        labels.assign(officer_id=labels["officer_id"].astype(str))[["officer_id", "label"]],
        on="officer_id",
        how="inner",
    )
    if joined.empty:
        out["note"] = "no outcome rows for the officers at the date"
        return out
    seed = int(tags.get("ews.seed") or config.seed or 0)
    metrics = evaluate_scores(joined["label"], joined["score"], ks=[k], seed=seed)
    out.update(
        matured=True,
        precision_at_k=_rounded(metrics[f"precision@{k:g}%"]),
        n=int(metrics["n"]),
        base_rate=_rounded(metrics["base_rate"]),
    )
    known_by = tags.get("ews.label_known_by") or ""
    if known_by and as_of < dt.date.fromisoformat(known_by):
        out["note"] = (
            f"in-sample: the outcome window overlaps the model's training labels (known up "
            f"to {known_by}), so this precision is optimistic"
        )
    return out


def drift(
    as_of: dt.date,
    model: str = "champion",
    agency: str | None = None,
    reference: list[dt.date] | None = None,
    out: Path | None = None,
    snapshot: str | None = None,
    max_share: float | None = None,
    score_psi: float | None = None,
    progress: bool | Callable[[str], None] = False,
    save: bool = True,
    db: AppDatabase | None = None,
) -> dict[str, Any]:
    """Check the model's inputs and scores at ``as_of`` against ``reference`` dates (default:
    the newest ``drift.max_reference_dates`` training dates) in the agency's current data
    (or ``snapshot``). Writes ``drift.json`` and
    ``drift.html`` to ``out`` (default ``EWS_HOME/drift/<agency>/<as_of>/``), stores the
    summary in the application database (``save``) and returns it; ``summary["alert"]`` says
    whether it passes the thresholds (``max_share``, ``score_psi``; default: the settings).
    Raises :class:`DriftDateError` for a date outside the data."""
    from ews.settings import get_settings
    from models.experiment import Clock, progress_printer

    settings = get_settings()
    cfg = settings.drift
    max_share = cfg.max_share if max_share is None else max_share
    score_psi = cfg.score_psi if score_psi is None else score_psi
    say = progress if callable(progress) else (progress_printer() if progress else None)
    clock = Clock(say)

    with clock.step("model", "loading the model"):
        import numpy as np
        import pandas as pd

        from features.build import build_features
        from models.experiment import cohort_spec
        from models.scoring import model_and_data

        loaded, config, src, agency, spec = model_and_data(model, agency, snapshot)
        train_dates = [
            dt.date.fromisoformat(d) for d in loaded.tags.get("ews.train_dates", "").split(",") if d
        ]
        if reference is None:
            if not train_dates:
                raise ScoringError(f"{loaded.name} v{loaded.version} records no training dates")
            reference = sorted(train_dates)[-cfg.max_reference_dates :]
        reference = sorted(set(reference))
        if as_of in reference:
            raise ScoringError(f"{as_of} is a reference date: compare a later date")
        first, last = data_span(src)
        check_dates(as_of, reference, first, last)
    columns = loaded.feature_names
    dates = sorted({*reference, as_of})
    with clock.step("features", f"building features at {len(dates)} as-of dates"):
        # Evidently takes seconds to import: import it while the features are built (DuckDB
        # releases the interpreter lock while it computes)
        preload = threading.Thread(target=_import_evidently, name="ews-drift-import", daemon=True)
        preload.start()
        features = build_features(src, dates, spec=spec, cohort=cohort_spec(config.cohort))
        missing = [c for c in columns if c not in features.columns]
        if missing:
            raise ScoringError(f"features missing: {', '.join(missing)}")
        day = pd.to_datetime(features["as_of_date"]).dt.date
        ref_rows = features.loc[day.isin(reference)]
        cur_rows = features.loc[day == as_of]
        if cur_rows.empty:
            raise ScoringError(f"no officer is in the cohort at {as_of}")
        if ref_rows.empty:
            raise ScoringError("no officer is in the cohort at the reference dates")
        sampled = len(ref_rows) > MAX_REFERENCE_ROWS
        if sampled:  # a seeded sample: the tests need no more, and stay fast
            ref_rows = ref_rows.sample(MAX_REFERENCE_ROWS, random_state=0)
        ref = ref_rows[columns].astype("float64").reset_index(drop=True)
        cur = cur_rows[columns].astype("float64").reset_index(drop=True)
    with clock.step("columns", f"testing {len(columns)} input columns (Evidently)"):
        preload.join()
        per_column = [column_drift(ref[c], cur[c]) for c in columns]
    drifted = [r["column"] for r in per_column if r["drifted"]]
    share = len(drifted) / len(columns) if columns else 0.0
    with clock.step("scores", "scoring both sides and comparing the scores"):
        ref_scores = np.asarray(loaded.model.predict_proba(ref)[:, 1], dtype=float)
        cur_scores = np.asarray(loaded.model.predict_proba(cur)[:, 1], dtype=float)
        scores = score_drift(ref_scores, cur_scores, config.flag_top_pct, score_psi)
    with clock.step("precision", "precision at the date, if its outcomes are known"):
        k = _metric_k(config.selection_metric) or float(config.flag_top_pct)
        precision = _precision_now(
            src, as_of, config, loaded.tags, cur_rows["officer_id"], cur_scores, k, last
        )
        validation = None
        if _metric_k(config.selection_metric) is not None and loaded.run_id:
            from models import registry

            try:
                validation = validation_precision(registry.run_results(loaded.run_id), loaded.tags)
            except registry.RegistryError:
                validation = None
        precision["validation_precision_at_k"] = _rounded(validation)
    alert_columns = share > max_share
    alert_scores = cfg.score_alert and scores["drifted"]
    why = []
    if alert_columns:
        why.append(
            f"{len(drifted)} of {len(columns)} input columns drifted "
            f"({share:.0%} > {max_share:.0%})"
        )
    if alert_scores:
        why.append(f"the scores drifted (PSI {scores['psi']:.3f} >= {score_psi:g})")
    from ews.store import Snapshot

    summary: dict[str, Any] = {
        "title": f"ews drift report: {agency}, {loaded.name} v{loaded.version}, {as_of}",
        "agency": agency,
        "model": f"{loaded.name} v{loaded.version}",
        "model_name": loaded.name,
        "model_version": str(loaded.version),
        "label": loaded.tags.get("ews.label", ""),
        "snapshot_id": src.id if isinstance(src, Snapshot) else None,
        "as_of": as_of.isoformat(),
        "reference_dates": [d.isoformat() for d in reference],
        "training_dates": [d.isoformat() for d in train_dates],
        "data": {"first_reported": first.isoformat(), "last_reported": last.isoformat()},
        "officers_current": len(cur),
        "officer_dates_reference": len(ref),
        "reference_sampled": sampled,
        "columns": len(columns),
        "drifted_columns": drifted,
        "drifted_share": round(share, 6),
        "per_column": per_column,
        "methods": sorted({r["method"] for r in per_column if r["method"]}),
        "score_drift": scores,
        "precision": precision,
        "thresholds": {
            "max_share": max_share,
            "score_psi": score_psi,
            "score_alert": cfg.score_alert,
        },
        "alert": bool(alert_columns or alert_scores),
        "alert_reasons": why,
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    }
    with clock.step("report", "writing the report"):
        home = settings.home
        folder = out or home / "drift" / agency / as_of.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        html = folder / "drift.html"
        summary["timings"] = clock.timings
        html.write_text(render_report(summary), encoding="utf-8")
        (folder / "drift.json").write_text(json.dumps(summary, indent=2, default=str))
        summary["report"] = str(html)
        try:
            relative: str | None = html.resolve().relative_to(home.resolve()).as_posix()
        except ValueError:  # a folder outside the workspace: not served by the service
            relative = None
        summary["report_path"] = relative
    if save:
        with clock.step("store", "storing the run in the application database"):
            summary["run_id"] = store_run(summary, db)
    summary["timings"] = clock.timings
    summary["seconds"] = round(clock.elapsed(), 2)
    clock.note(f"done in {clock.elapsed():.1f} s")
    return summary


def render_report(summary: dict[str, Any]) -> str:
    """The ews drift report: one self-contained HTML page (no script, no external file)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def num(value: Any, digits: int = 3) -> str:
        if value is None:
            return ""
        if isinstance(value, float) and value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"

    def pct(value: Any) -> str:
        return "" if value is None else f"{100 * value:.1f}%"

    env.filters["num"] = num
    env.filters["pct"] = pct
    rows = sorted(summary["per_column"], key=lambda r: (not r["drifted"], r["column"]))
    hist = summary["score_drift"]["histogram"]
    top = max([max(h["reference"], h["current"]) for h in hist] + [1e-9])
    return env.get_template("drift_report.html").render(s=summary, rows=rows, hist=hist, top=top)


def store_run(summary: dict[str, Any], db: AppDatabase | None = None) -> int:
    """Store a drift run (and its audit entry, in the same transaction); its id."""
    from ews.audit import append
    from ews.db import DriftRun, current_actor, ensure_agency, open_app_database

    owned = db is None
    database = open_app_database() if db is None else db
    scores, precision = summary["score_drift"], summary["precision"]
    actor = f"cli:{current_actor()}"
    try:
        with database.write() as s:
            ensure_agency(s, summary["agency"])
            run = DriftRun(
                agency=summary["agency"],
                actor=actor,
                model_name=summary["model_name"],
                model_version=summary["model_version"],
                snapshot_id=summary["snapshot_id"],
                as_of=dt.date.fromisoformat(summary["as_of"]),
                reference_dates=summary["reference_dates"],
                columns=summary["columns"],
                drifted_columns=len(summary["drifted_columns"]),
                drifted_share=summary["drifted_share"],
                drifted_names=summary["drifted_columns"],
                score_drift=scores["psi"],
                score_ks_pvalue=scores["ks_pvalue"],
                score_drifted=scores["drifted"],
                flag_rate_reference=scores["flag_rate_reference"],
                flag_rate_current=scores["flag_rate_current"],
                k_pct=precision.get("k_pct"),
                precision_at_k=precision.get("precision_at_k"),
                validation_precision_at_k=precision.get("validation_precision_at_k"),
                alert=summary["alert"],
                threshold=summary["thresholds"]["max_share"],
                score_threshold=summary["thresholds"]["score_psi"],
                report_path=summary.get("report_path"),
            )
            s.add(run)
            s.flush()
            append(
                s,
                actor,
                "cli",
                "write",
                "ews drift",
                summary["agency"],
                detail={
                    "drift_run": run.id,
                    "model": summary["model"],
                    "as_of": summary["as_of"],
                    "alert": summary["alert"],
                },
            )
            return int(run.id)
    finally:
        if owned:
            database.dispose()


def _row(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "as_of": r.as_of.isoformat(),
        "created_at": r.created_at.isoformat(timespec="seconds"),
        "model": f"{r.model_name} v{r.model_version}",
        "reference_dates": list(r.reference_dates),
        "columns": r.columns,
        "drifted_columns": r.drifted_columns,
        "drifted_share": r.drifted_share,
        "drifted_names": list(r.drifted_names),
        "score_drift": r.score_drift,
        "score_ks_pvalue": r.score_ks_pvalue,
        "score_drifted": r.score_drifted,
        "flag_rate_reference": r.flag_rate_reference,
        "flag_rate_current": r.flag_rate_current,
        "k_pct": r.k_pct,
        "precision_at_k": r.precision_at_k,
        "validation_precision_at_k": r.validation_precision_at_k,
        "alert": r.alert,
        "threshold": r.threshold,
        "score_threshold": r.score_threshold,
        "has_report": r.report_path is not None,
    }


def drift_history(
    agency: str, db: AppDatabase | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The agency's drift runs, newest first (at most ``limit``): as_of, created_at, model,
    reference_dates, columns (checked), drifted_columns (count), drifted_share, score_drift
    (PSI of the scores), precision_at_k and validation_precision_at_k (k_pct), alert and
    threshold (share of columns), with the run's id and a few more details."""
    from sqlalchemy import select

    from ews.db import DriftRun, open_app_database

    owned = db is None
    database = open_app_database() if db is None else db
    try:
        with database.session() as s:
            q = (
                select(DriftRun)
                .where(DriftRun.agency == agency)
                .order_by(DriftRun.created_at.desc(), DriftRun.id.desc())
                .limit(max(0, int(limit)))
            )
            return [_row(r) for r in s.scalars(q)]
    finally:
        if owned:
            database.dispose()


def drift_run(run_id: int, db: AppDatabase) -> tuple[str, str | None] | None:
    """(agency, report path relative to the workspace) of a stored drift run, or None."""
    from ews.db import DriftRun

    with db.session() as s:
        r = s.get(DriftRun, run_id)
        return None if r is None else (r.agency, r.report_path)
