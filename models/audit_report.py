"""The credentialing reviewer's audit report: the whole system of one agency in one document.

:func:`build_report` gathers, from the workspace (snapshots, experiments), the model registry
and the application database, what a reviewer needs to judge the system without running it:

1. data coverage per snapshot;
2. the rules in force, in plain sentences (:meth:`models.rules._RuleBase.describe`);
3. the champion's card: features, training window, label, validation per split,
   calibration, the equal-volume comparison with the rules and its intervals;
4. the bias audit of the champion and of each rule side by side, on held-out dates only:
   the temporal validation's test dates, where each prediction comes from a model that never
   saw that outcome window, and the rules fitted on the same training rows and flagging the
   same number of officers;
5. drift history (rows handed in by the caller, see ``drift_rows``);
6. the review workflow (:func:`ews.reviews.review_summary`);
7. the access log and the verification of its hash chain;
8. intervention outcomes: adverse events in the year after an intervention was completed,
   against matched flagged officers without one (observational, not causal);
9. a checklist of what an early warning system is asked to do (Sec. 2(c) of the Executive
   Order on Safe Policing for Safe Communities), each answered from the figures above with a
   link to its evidence.

:func:`write_report` writes it as ONE self-contained HTML file (inline CSS, charts as inline
SVG, no script, nothing fetched) and a PDF of that file (WeasyPrint), with the figures as
JSON beside them. The CLI (``ews audit-report``), the reviewers' pages and notebooks call the
same functions.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ews.db import AppDatabase
    from ews.store import Snapshot

REPORT_NAME = "audit-report"
ATTRIBUTES = ("race", "sex")
REFUSALS = ("not_found", "denied", "refused", "sign_in_failed")
FOUR_FIFTHS = 0.8  # the lowest/highest ratio under which a difference is called a disparity
_LOCK = threading.Lock()  # pyplot's state is global: one figure at a time


class ReportError(LookupError):
    """The report cannot be built (no such agency in the workspace)."""


@dataclass
class AuditReport:
    """The report's figures (``data``, JSON-ready) and its self-contained HTML."""

    agency: str
    data: dict[str, Any]
    html: str


# ------------------------------------------------------------------------------ helpers


def _num(value: Any, digits: int = 4) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else round(f, digits)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        import pandas as pd

        return str(pd.Timestamp(value).date().isoformat())
    except (TypeError, ValueError):
        return str(value)


def _svg(fig: Any) -> str:
    """A figure as inline SVG: no XML prologue, no metadata block (nothing that links out)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(
    groups: list[str],
    series: dict[str, list[float | None]],
    xlabel: str,
    title: str,
    share: bool = True,
) -> str:
    """Horizontal bars per group, one bar per series (methods side by side), as SVG."""
    import numpy as np

    plt = _pyplot()
    with _LOCK:
        n = max(len(series), 1)
        fig, ax = plt.subplots(
            figsize=(7, 0.2 * n * max(len(groups), 1) + 1.6), dpi=100, layout="constrained"
        )
        try:
            y = np.arange(len(groups))
            h = 0.8 / n
            for i, (name, values) in enumerate(series.items()):
                vals = [0.0 if v is None else float(v) for v in values]
                ax.barh(y + i * h - 0.4 + h / 2, vals, h, label=name)
            ax.set_yticks(y, groups)
            ax.invert_yaxis()
            ax.set_xlabel(xlabel)
            top = max([float(v) for vs in series.values() for v in vs if v is not None] or [1])
            ax.set_xlim(0, 1 if share else top * 1.15 or 1)
            ax.set_title(title, fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            # below the plot, never over a bar
            fig.legend(loc="outside lower center", ncol=min(n, 4), fontsize=7, frameon=False)
            return _svg(fig)
        finally:
            plt.close(fig)


def reliability_chart(rows: list[dict[str, Any]], title: str) -> str:
    """Mean predicted score against the observed outcome rate per score bin, as SVG."""
    plt = _pyplot()
    with _LOCK:
        fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=100, layout="constrained")
        try:
            ax.plot([0, 1], [0, 1], ":", color="#777", label="perfectly calibrated")
            for day in sorted({r["test_date"] for r in rows}):
                pts = [r for r in rows if r["test_date"] == day]
                ax.plot(
                    [r["mean_score"] for r in pts],
                    [r["outcome_rate"] for r in pts],
                    "-o",
                    label=f"test {day}",
                )
            ax.set_xlabel("mean score in the bin")
            ax.set_ylabel("share with the outcome")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            fig.legend(loc="outside right upper", fontsize=7, frameon=False)  # off the points
            return _svg(fig)
        finally:
            plt.close(fig)


# ------------------------------------------------------------------------------ 1. coverage


def coverage(agency: str, home: Path | None, db: AppDatabase) -> list[dict[str, Any]]:
    """One row per snapshot of the agency, oldest first: id, when and from what it was
    ingested (and by whom, from the ingest journal), rows, events by type, date ranges."""
    from ews.store import Workspace

    journal = {r.snapshot_id: r for r in db.ingests(agency) if r.new_snapshot}
    out = []
    snaps = Workspace(home).snapshots(agency)
    for i, snap in enumerate(snaps):
        m = snap.manifest
        cov = m.get("coverage", {})
        j = journal.get(snap.id)
        out.append(
            {
                "id": snap.id,
                "current": i == len(snaps) - 1,
                "created_at": str(m.get("created_at", ""))[:19].replace("T", " "),
                "ingested_by": j.actor if j else None,
                "source_format": m.get("source", {}).get("format"),
                "officers": m.get("rows", {}).get("officers"),
                "events": m.get("rows", {}).get("events"),
                "assignments": m.get("rows", {}).get("assignments"),
                "events_by_type": m.get("events_by_type", {}),
                "event_dates": [
                    cov.get("event_date", {}).get("min"),
                    cov.get("event_date", {}).get("max"),
                ],
                "reported_dates": [
                    cov.get("reported_date", {}).get("min"),
                    cov.get("reported_date", {}).get("max"),
                ],
            }
        )
    return out


# ------------------------------------------------------------------------------ 2-3. champion


def label_sentence(name: str) -> str:
    """A label preset in words: "a sustained complaint or a use-of-force report, reported in
    the year after the date"."""
    from features.durations import parse_duration
    from features.labels import LabelSpec

    try:
        spec = LabelSpec.preset(name)
    except ValueError:
        return name
    parts = []
    for c in spec.any_of:
        what = c.event_type.replace("_", "-" if c.event_type == "use_of_force" else " ")
        if c.event_type == "use_of_force":
            what = "use-of-force report"
        text = f"a {what}"
        if c.finding:
            text += f" with the finding '{c.finding.replace('_', ' ')}'"
        if c.category_prefix:
            text += f" of category {c.category_prefix}*"
        parts.append(text)
    window = parse_duration(spec.window).phrase().replace("the last ", "the ")
    return f"{' or '.join(parts)}, reported in {window} after the date"


def _champion_row(agency: str, uri: str | None, label: str | None) -> dict[str, Any] | None:
    """The agency's champion: of ``label`` (the label its flags are scored for) when there
    is one, else the first by name."""
    from models import registry

    rows = [
        r
        for r in registry.list_models(uri)
        if registry.CHAMPION in r["aliases"] and r["agency"] == agency
    ]
    rows.sort(key=lambda r: (r.get("label") != label, r["name"]))
    return rows[0] if rows else None


def scored_label(db: AppDatabase, agency: str) -> str | None:
    """The label of the agency's newest current scoring run (None when nothing is scored)."""
    from sqlalchemy import select

    from ews.db import ScoringRun

    with db.session() as s:
        run = s.scalars(
            select(ScoringRun)
            .where(ScoringRun.agency == agency, ScoringRun.current.is_(True))
            .order_by(ScoringRun.as_of_date.desc(), ScoringRun.id.desc())
            .limit(1)
        ).first()
        return run.label if run is not None and run.label else None


def _results(home: Path, tags: dict[str, str], uri: str | None) -> tuple[dict[str, Any], Path]:
    """The results.json of the experiment that produced the model, and its folder."""
    from models import registry

    folder = home / "experiments" / tags.get("ews.config_hash", "")
    path = folder / "results.json"
    if tags.get("ews.config_hash") and path.is_file():
        return json.loads(path.read_text()), folder
    run_id = tags.get("ews.run_id")
    if not run_id:
        raise ReportError("the champion names no experiment run")
    return registry.run_results(run_id, uri), folder


def _feature_groups(names: list[str], spec: Any) -> list[dict[str, Any]]:
    family = {c.name: c.family for c in spec.columns}
    words = {
        "count": "counts of events",
        "sustained": "sustained findings",
        "share_sustained": "shares of complaints sustained",
        "days_since": "days since the last event",
        "rate": "rates per activity",
        "trend": "trends",
        "peer": "comparisons with unit and rank peers",
        "network": "the complaint network (co-accused officers)",
        "attribute": "attributes (tenure)",
    }
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(family.get(n, "other"), []).append(n)
    return [
        {"family": k, "title": words.get(k, k), "columns": v}
        for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]


def _reliability(preds: pd.DataFrame, bins: int = 10) -> list[dict[str, Any]]:
    """Per test date, officers in ten equal-width score bins: mean score, outcome rate."""
    import numpy as np

    out = []
    for day, part in preds.groupby("as_of_date"):
        s = part["score"].to_numpy(dtype=float)
        y = part["outcome"].to_numpy(dtype=float)
        edges = np.linspace(0, 1, bins + 1)
        idx = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
        for b in range(bins):
            m = idx == b
            if m.sum() == 0:
                continue
            out.append(
                {
                    "test_date": _iso(day),
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "officers": int(m.sum()),
                    "mean_score": _num(s[m].mean()),
                    "outcome_rate": _num(y[m].mean()),
                }
            )
    return out


def champion_card(
    agency: str,
    home: Path,
    uri: str | None = None,
    load: bool = True,
    label: str | None = None,
) -> dict[str, Any] | None:
    """The champion of ``agency`` (None when none is registered) and what it was built on.

    Keys: name, version, candidate, label, label_sentence, snapshot_id, train_dates,
    label_cutoff, features (count, groups), splits (validation per test date), calibration
    (Brier and a reliability table from the test predictions), vs_rules (equal-volume
    comparison per test date with its bootstrap intervals), rules (name -> sentence), and, in
    ``_private`` (not serialized), what the bias audit needs.
    """
    import pandas as pd

    from models import registry
    from models.experiment import load_feature_spec

    row = _champion_row(agency, uri, label)
    if row is None:
        return None
    name, version = row["name"], row["version"]
    tags = registry.version_tags(name, version, uri) or {}
    results, folder = _results(home, tags, uri)
    label = tags.get("ews.label") or row.get("label") or ""
    config = results.get("config", {})
    spec = load_feature_spec(config.get("feature_spec"))
    descriptions = {c.name: c.description_template for c in spec.columns}
    loaded = registry.load_model(f"{name}/{version}", uri=uri) if load else None
    features = loaded.feature_names if loaded is not None else results.get("feature_columns", [])
    rules = loaded.rules or {} if loaded is not None else {}
    records = [r for r in results.get("records", []) if r.get("label") == label]
    picked = {r["test_date"]: r for r in records if r.get("kind") == "model" and r.get("selected")}
    # the registered config's own held-out rows at every test date (each date's own choice
    # beside them where it differs); results without them: each date's choice
    method = tags.get("ews.candidate") or row.get("candidate")
    own = {r["test_date"]: r for r in records if r.get("kind") == "model" and r["method"] == method}
    chosen = own or picked
    differences = [
        f"On {day} the validation splits before that date chose {p['method']}, not the "
        f"registered {method}: the row shows {method}'s own held-out results (precision "
        f"{_fmt(own[day].get('precision'))}, AUC {_fmt(own[day].get('auc'))}); that date's "
        f"choice had precision {_fmt(p.get('precision'))}, AUC {_fmt(p.get('auc'))}."
        for day, p in sorted(picked.items())
        if own and day in own and p["method"] != method
    ]
    gate = registry.gate_of(name, version, uri)
    if gate is None:  # a version registered without its gate in its tags: the results'
        stored = results.get("gates", {}).get(label)
        gate = stored if stored and stored.get("method") == method else None
    splits = []
    for sp in results.get("splits", []):
        day = sp["test_as_of"]
        rec = chosen.get(day, {})
        m = rec.get("metrics", {})
        rule_prec = {
            r["method"]: _num(r.get("precision"))
            for r in records
            if r.get("kind") == "rule" and r["test_date"] == day
        }
        splits.append(
            {
                "test_date": day,
                "train_dates": sp.get("train_as_of", []),
                "labels_known_by": sp.get("label_known_by"),
                "method": rec.get("method"),
                "n_train": rec.get("n_train"),
                "n_test": rec.get("n_test"),
                "prevalence": _num(rec.get("test_prevalence")),
                "flagged": rec.get("flagged"),
                "tp": rec.get("tp"),
                "precision": _num(rec.get("precision")),
                "recall": _num(rec.get("recall")),
                "auc": _num(rec.get("auc")),
                "auc_ci95": [_num(v) for v in rec.get("auc_ci95") or []],
                "split_choice": picked.get(day, {}).get("method"),
                "brier": _num(rec.get("brier")),
                "precision_at": {
                    k.split("@")[1]: _num(v) for k, v in m.items() if k.startswith("precision@")
                },
                "rules_precision": rule_prec,
            }
        )
    vs_rules = []
    for day, rec in sorted(chosen.items()):
        for rule, c in sorted((rec.get("vs_rules") or {}).items()):
            rule_tp = c.get("rule_tp") or 0
            extra = c["extra_tp"] if "extra_tp" in c else c.get("tp")  # older results: tp, fp
            vs_rules.append(
                {
                    "test_date": day,
                    "rule": rule,
                    "flagged": c.get("flagged"),
                    "rule_tp": rule_tp,
                    "model_tp": c["model_tp"] if "model_tp" in c else rule_tp + (extra or 0),
                    "extra_tp": extra,
                    "fewer_fp": c["fewer_fp"] if "fewer_fp" in c else c.get("fp"),
                    "pct_more_tp": _num(c.get("pct_more_tp"), 1),
                    "ci95_pct_more_tp": [_num(v, 1) for v in c.get("ci95_pct_more_tp") or []],
                    "pct_fewer_fp": _num(c.get("pct_fewer_fp"), 1),
                    "ci95_pct_fewer_fp": [_num(v, 1) for v in c.get("ci95_pct_fewer_fp") or []],
                }
            )
    preds_path = folder / "predictions.parquet"
    held = None
    calibration: dict[str, Any] = {"available": False, "brier": {}, "table": []}
    if preds_path.is_file():
        p = pd.read_parquet(preds_path)
        p = p[p["label"] == label]
        p["as_of_date"] = pd.to_datetime(p["as_of_date"])
        keep = [
            p[(p["as_of_date"] == pd.Timestamp(d)) & (p["method"] == r["method"])]
            for d, r in chosen.items()
        ]
        held = pd.concat(keep, ignore_index=True) if keep else p.iloc[:0]
        if len(held):
            import numpy as np

            brier = {
                _iso(d): _num(np.mean((g["score"] - g["outcome"]) ** 2))
                for d, g in held.groupby("as_of_date")
            }
            calibration = {"available": True, "brier": brier, "table": _reliability(held)}
    deployment: dict[str, Any] = next(
        (d for d in results.get("deployment", []) if d.get("label") == label), {}
    )
    train_dates = [d for d in tags.get("ews.train_dates", "").split(",") if d]
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "candidate": tags.get("ews.candidate") or row.get("candidate"),
        "label": label,
        "label_sentence": label_sentence(label),
        "snapshot_id": tags.get("ews.snapshot_id"),
        "config_hash": tags.get("ews.config_hash"),
        "spec_hash": tags.get("ews.spec_hash"),
        "train_dates": train_dates,
        "n_train": deployment.get("n_train"),
        "label_cutoff": tags.get("ews.label_known_by") or None,
        "deployed_as_of": tags.get("ews.as_of") or None,
        "flag_top_pct": config.get("flag_top_pct"),
        "selection": {
            "metric": config.get("selection_metric"),
            "penalty": config.get("selection_penalty"),
        },
        "features": {"count": len(features), "groups": _feature_groups(features, spec)},
        "splits": splits,
        "differences": differences,
        "gate": gate,
        "override": (gate or {}).get("override"),
        "calibration": calibration,
        "vs_rules": vs_rules,
        "rules": [
            {"name": n, "title": r.title, "sentence": r.describe(descriptions)}
            for n, r in rules.items()
        ],
        "predictions_file": preds_path.is_file(),
        "_private": {
            "held": held,
            "config": config,
            "results": results,
            "spec": spec,
            "records": records,
            "by_test": chosen,
        },
    }
    return card


def rules_in_force(card: dict[str, Any] | None) -> list[dict[str, str]]:
    """The rules of the agency's experiment, each as a plain sentence: those fitted with the
    champion, else the default experiment's (not yet fitted)."""
    if card is not None and card["rules"]:
        return list(card["rules"])
    from models.experiment import load_config, load_feature_spec
    from models.rules import make_rule

    cfg = load_config(None)
    spec = load_feature_spec(cfg.feature_spec)
    descriptions = {c.name: c.description_template for c in spec.columns}
    out = []
    for item in cfg.rules:
        rule = make_rule(item)
        out.append(
            {
                "name": str(rule.name or item),
                "title": rule.title,
                "sentence": rule.describe(descriptions),
            }
        )
    return out


# ------------------------------------------------------------------------------ 4. bias audit


def held_out_audit(
    card: dict[str, Any] | None, snap: Snapshot, min_group: int = 20
) -> dict[str, Any]:
    """The champion's held-out test predictions and each rule on the same dates at the same
    volume, by group of race and sex.

    At each test date of the temporal validation the model chosen then (trained only on
    outcomes known by that date) flags its top ``flag_top_pct`` percent; each rule, fitted on
    the same training rows, flags the same number of officers, ranked by its own score
    (conditions met first, then how far past the thresholds). Outcomes are those the
    experiment evaluated on. Rows are officer-dates pooled over the test dates.
    """
    import numpy as np
    import pandas as pd

    from features.build import build_features
    from features.labels import LabelSpec, build_labels
    from models.audit import by_group
    from models.experiment import cohort_spec
    from models.metrics import top_flags
    from models.rules import make_rule
    from models.steps import fit_columns, flag_count

    if card is None:
        return {"available": False, "why": "no champion is registered for this agency"}
    priv = card["_private"]
    held = priv["held"]
    if held is None or held.empty:
        return {
            "available": False,
            "why": "the experiment's test predictions (predictions.parquet, written by "
            "`ews train`) are not in the workspace: no held-out rows to audit",
        }
    config, spec, records = priv["config"], priv["spec"], priv["records"]
    seed = int(config.get("seed") or 0)
    pct = float(config.get("flag_top_pct") or 5.0)
    cohort = cohort_spec(config.get("cohort"))
    label = LabelSpec.preset(card["label"])
    columns = list(priv["results"].get("feature_columns", []))
    tests = sorted({str(_iso(d)) for d in held["as_of_date"]})
    by_test = priv.get("by_test") or {
        r["test_date"]: r for r in records if r.get("kind") == "model" and r["selected"]
    }
    train_dates = sorted({d for t in tests for d in by_test[t].get("train_dates_used", [])})
    all_dates = sorted({dt.date.fromisoformat(d) for d in [*tests, *train_dates]})
    feats = build_features(snap, all_dates, spec=spec, cohort=cohort)
    feats["as_of_date"] = pd.to_datetime(feats["as_of_date"])
    officers = snap.read().officers[["officer_id", *[a for a in ATTRIBUTES]]].copy()
    officers["officer_id"] = officers["officer_id"].astype(str)
    rows = []
    notes = []
    rule_items = [(make_rule(i).name or str(i), i) for i in config.get("rules", [])]
    for day in tests:
        rec = by_test[day]
        ts = pd.Timestamp(day)
        part = held[held["as_of_date"] == ts].reset_index(drop=True)
        n = len(part)
        k = flag_count(n, pct)
        frame = part[["officer_id", "as_of_date", "outcome"]].copy()
        frame["officer_id"] = frame["officer_id"].astype(str)
        frame["champion"] = top_flags(part["score"].to_numpy(dtype=float), k, seed)
        test_x = frame[["officer_id"]].merge(
            feats[feats["as_of_date"] == ts].astype({"officer_id": str}),
            on="officer_id",
            how="left",
        )
        known_by = dt.date.fromisoformat(rec["train_labels_known_by"])
        tdates = [dt.date.fromisoformat(d) for d in rec.get("train_dates_used", [])]
        y = build_labels(snap, tdates, label, known_by=known_by, cohort=cohort)
        y["as_of_date"] = pd.to_datetime(y["as_of_date"])
        train = feats[feats["as_of_date"].isin([pd.Timestamp(d) for d in tdates])].merge(
            y, on=["officer_id", "as_of_date"]
        )
        cols = fit_columns(train, [c for c in columns if c in train.columns])
        for name, item in rule_items:
            try:
                rule = make_rule(item).fit(train[cols].astype("float64"), train["label"])
            except ValueError as exc:
                notes.append(f"{day}: rule {name} could not be fitted ({exc})")
                continue
            score = np.asarray(rule.decision_function(test_x[cols].astype("float64")))
            frame[name] = top_flags(score, k, seed)
        frame["test_date"] = day
        rows.append(frame)
    data = pd.concat(rows, ignore_index=True).merge(officers, on="officer_id", how="left")
    # a rule unfitted on some date is left out of the audit (noted), not half counted
    methods = ["champion"] + [n for n, _ in rule_items if all(n in f for f in rows)]
    out: dict[str, Any] = {
        "available": True,
        "snapshot_id": snap.id,
        "test_dates": tests,
        "rows": len(data),
        "flag_top_pct": pct,
        "flagged_per_date": {
            d: int(data.loc[data["test_date"] == d, "champion"].sum()) for d in tests
        },
        "methods": methods,
        "chosen": {d: by_test[d]["method"] for d in tests},
        "notes": notes,
        "by": {},
        "overall": {},
    }
    y_true = data["outcome"].astype(int).to_numpy()
    for m in methods:
        flags = data[m].astype(bool).to_numpy()
        tp = int((flags & (y_true == 1)).sum())
        out["overall"][m] = {
            "flagged": int(flags.sum()),
            "precision": _num(tp / flags.sum()) if flags.sum() else None,
        }
    for attr in ATTRIBUTES:
        if attr not in data.columns:
            continue
        out["by"][attr] = {
            m: by_group(data[attr], data[m].astype(int), y_true, min_group) for m in methods
        }
    return out


# ------------------------------------------------------------------------------ 7. access log


def access_summary(db: AppDatabase, agency: str) -> dict[str, Any]:
    """Entries of the agency's audit log by role and action, refusals, and the chain check."""
    from sqlalchemy import func, select

    from ews.audit import verify
    from ews.db import AuditLog

    with db.session() as s:
        grouped = s.execute(
            select(AuditLog.role, AuditLog.action, func.count())
            .where(AuditLog.agency == agency)
            .group_by(AuditLog.role, AuditLog.action)
        ).all()
        span = s.execute(
            select(func.min(AuditLog.at), func.max(AuditLog.at)).where(AuditLog.agency == agency)
        ).one()
        failed = s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "sign_in_failed")
        )
        # a sign-in is logged under the account's agency: None for an account of every
        # agency (a reviewer created without --agency), who may read this one too
        signed = s.execute(
            select(AuditLog.role, func.count())
            .where(AuditLog.action == "sign_in", AuditLog.agency.is_(None))
            .group_by(AuditLog.role)
        ).all()
    table: dict[str, dict[str, int]] = {}
    for role, action, n in grouped:
        table.setdefault(str(role), {})[str(action)] = int(n)
    for role, n in signed:
        row = table.setdefault(str(role), {})
        row["sign_in"] = row.get("sign_in", 0) + int(n)
    actions = sorted({a for r in table.values() for a in r})
    v = verify(db)
    total = sum(sum(r.values()) for r in table.values())
    refusals = sum(n for r in table.values() for a, n in r.items() if a in REFUSALS)
    return {
        "entries": total,
        "first": _iso(span[0]),
        "last": _iso(span[1]),
        "by_role": table,
        "actions": actions,
        "refusals": refusals,
        "sign_ins": {r: a["sign_in"] for r, a in table.items() if a.get("sign_in")},
        "failed_sign_ins_all_agencies": int(failed or 0),
        "chain": {
            "ok": v.ok,
            "entries": v.entries,
            "head_id": v.head_id,
            "head_hash": v.head_hash,
            "first_bad_id": v.first_bad_id,
            "summary": v.summary(),
        },
    }


# ------------------------------------------------------------------------------ 8. outcomes


def adverse_events(
    events: pd.DataFrame, label: str, officer_id: str, start: dt.date, end: dt.date
) -> int:
    """Events of the label's kind (its clauses: event type, finding, category) reported by
    ``officer_id`` in ``[start, end)``."""
    import pandas as pd

    from features.labels import LabelSpec

    spec = LabelSpec.preset(label)
    ev = events[events["officer_id"] == officer_id]
    rep = pd.to_datetime(ev["reported_date"]).dt.date
    ev = ev[(rep >= start) & (rep < end)]
    hit = pd.Series(False, index=ev.index)
    for c in spec.any_of:
        m = ev["event_type"] == c.event_type
        if c.finding:
            m &= (ev["finding"].fillna("") == c.finding) & ev["finding_date"].notna()
        if c.category_prefix:
            m &= ev["category"].fillna("").str.startswith(c.category_prefix)
        hit |= m
    return int(hit.sum())


def intervention_outcomes(
    db: AppDatabase,
    agency: str,
    snap: Snapshot | None,
    label: str | None,
    follow_up: str = "1y",
    caliper: float = 0.1,
    min_pairs: int = 10,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Adverse-event rate in the ``follow_up`` after an intervention was completed, for the
    flagged officers who had one, against matched flagged officers who had none.

    Matching, 1:1 without replacement: each intervened officer's flag is paired with the
    flagged officer of the same scored date and the same unit (else the same rank) with the
    nearest score, within ``caliper``, who had no intervention on any flag. The control's
    follow-up is the same calendar window as its pair's. A pair counts only when the data
    cover its whole window. The difference of rates (intervened minus matched) comes with a
    95% percentile bootstrap interval over pairs. Observational: not causal.
    """
    import numpy as np
    from sqlalchemy import select

    from ews.db import Flag, ScoringRun
    from ews.reviews import completed_interventions, intervened_officers
    from features.durations import parse_duration
    from models.experiment import data_end

    base: dict[str, Any] = {
        "label": label,
        "label_sentence": label_sentence(label) if label else None,
        "follow_up": parse_duration(follow_up).phrase().replace("the last ", ""),
        "caliper": caliper,
        "min_pairs": min_pairs,
        "completed": 0,
        "pairs": 0,
        "unmatched": 0,
        "not_yet_covered": 0,
        "available": False,
    }
    done = completed_interventions(db, agency)
    base["completed"] = len(done)
    if not done:
        base["why"] = "no intervention has been completed yet"
        return base
    if snap is None or not label:
        base["why"] = "the flags name no outcome label or no data snapshot"
        return base
    treated_ids = intervened_officers(db, agency)
    with db.session() as s:
        q = (
            select(Flag.officer_id, Flag.as_of_date, Flag.unit, Flag.peer_rank, Flag.score)
            .join(ScoringRun, ScoringRun.id == Flag.run_id)
            .where(Flag.agency == agency, ScoringRun.current.is_(True), Flag.flagged.is_(True))
        )
        flags = [dict(r._mapping) for r in s.execute(q)]
    by_key = {(f["officer_id"], f["as_of_date"]): f for f in flags}
    end_of_data = data_end(snap)
    window = parse_duration(follow_up)
    events = snap.read().events
    events = events.assign(officer_id=events["officer_id"].astype(str))
    used: set[tuple[str, dt.date]] = set()
    pairs = []
    for t in sorted(done, key=lambda r: (r["completed_at"], r["officer_id"])):
        start = t["completed_at"]
        stop = window.after(start)
        if stop > end_of_data + dt.timedelta(days=1):
            base["not_yet_covered"] += 1
            continue
        f = by_key.get((t["officer_id"], t["as_of"]))
        if f is None or f["score"] is None:
            base["unmatched"] += 1
            continue
        best = None
        for group in ("unit", "peer_rank"):
            if f[group] is None:
                continue
            pool = [
                c
                for c in flags
                if c["as_of_date"] == f["as_of_date"]
                and c[group] == f[group]
                and c["officer_id"] not in treated_ids
                and (c["officer_id"], c["as_of_date"]) not in used
                and c["score"] is not None
                and abs(c["score"] - f["score"]) <= caliper
            ]
            if pool:
                best = min(pool, key=lambda c: (abs(c["score"] - f["score"]), c["officer_id"]))
                matched_on = "unit" if group == "unit" else "rank"
                break
        if best is None:
            base["unmatched"] += 1
            continue
        used.add((best["officer_id"], best["as_of_date"]))
        pairs.append(
            {
                "officer_id": t["officer_id"],
                "control_id": best["officer_id"],
                "as_of": _iso(f["as_of_date"]),
                "matched_on": matched_on,
                "score_gap": abs(best["score"] - f["score"]),
                "start": start,
                "treated_events": adverse_events(events, label, t["officer_id"], start, stop),
                "control_events": adverse_events(events, label, best["officer_id"], start, stop),
            }
        )
    base["pairs"] = len(pairs)
    if len(pairs) < min_pairs:
        base["why"] = (
            f"{len(pairs)} matched pair(s) with the follow-up covered by the data, fewer "
            f"than {min_pairs}: too few to give a rate"
        )
        return base
    treated = np.array([p["treated_events"] > 0 for p in pairs], dtype=float)
    control = np.array([p["control_events"] > 0 for p in pairs], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    diffs = treated[idx].mean(axis=1) - control[idx].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    base.update(
        available=True,
        treated_rate=_num(treated.mean()),
        control_rate=_num(control.mean()),
        difference=_num(treated.mean() - control.mean()),
        ci95=[_num(low), _num(high)],
        matched_on_unit=sum(p["matched_on"] == "unit" for p in pairs),
        mean_score_gap=_num(np.mean([p["score_gap"] for p in pairs])),
        n_boot=n_boot,
    )
    return base


# ------------------------------------------------------------------------------ 9. checklist


def checklist(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What an early warning system is asked to do, each answered from the report's figures:
    ``status`` met / not met / not measurable, ``figure`` and ``evidence`` (a section id)."""
    items: list[dict[str, Any]] = []

    def add(ask: str, status: str, figure: str, evidence: str) -> None:
        items.append({"ask": ask, "status": status, "figure": figure, "evidence": evidence})

    rev = data["workflow"]["totals"]
    card = data["champion"]
    scored = data["workflow"]["count"]
    if card is None:
        add(
            "Identifies officers who may require intervention",
            "not met",
            "no champion model is registered",
            "champion",
        )
    elif not scored:
        add(
            "Identifies officers who may require intervention",
            "not measurable",
            f"{card['name']} v{card['version']} is registered but has scored no date yet",
            "workflow",
        )
    else:
        add(
            "Identifies officers who may require intervention",
            "met" if rev["flagged"] else "not met",
            f"{rev['flagged']} flags raised on {scored} scored date(s) by "
            f"{card['name']} v{card['version']}",
            "workflow",
        )
    comps = [c for c in (card or {}).get("vs_rules", []) if c["extra_tp"] is not None]
    overall = data["bias"].get("overall", {})
    ask = "Validated on held-out dates, at least as precise as the rules at the same volume"
    gate = (card or {}).get("gate")
    if gate is not None:  # the promotion gate stored on the very version that is champion
        said = "; ".join(gate.get("reasons") or gate.get("summary") or []) or "no figures"
        figure = (
            f"{card['name']} v{card['version']} ({gate.get('method')}) passed the promotion "
            f"gate: {said}"
            if gate.get("passed")
            else f"{card['name']} v{card['version']} ({gate.get('method')}) did not pass the "
            f"promotion gate: {said}"
        )
        if gate.get("override"):
            o = gate["override"]
            figure += f"; promoted by override ({o.get('by')}, {o.get('at')}): {o.get('reason')}"
        add(ask, "met" if gate.get("passed") else "not met", figure, "comparison")
    elif overall.get("champion", {}).get("precision") is not None:
        champ = overall["champion"]["precision"]
        rules = {m: o["precision"] for m, o in overall.items() if m != "champion"}
        beaten = [m for m, p in rules.items() if p is not None and p > champ]
        ahead = sum(c["extra_tp"] >= 0 for c in comps)
        add(
            ask,
            "met" if not beaten else "not met",
            f"precision {champ:.2f} on the test dates against "
            + ", ".join(f"{m.replace('_', ' ')} {p:.2f}" for m, p in rules.items() if p is not None)
            + f"; at each rule's own volume the model finds as many or more in {ahead} of "
            f"{len(comps)} comparisons",
            "comparison",
        )
    else:
        add(ask, "not measurable", "no held-out test predictions", "comparison")
    from ews.db import INTERVENTIONS

    assigned = data["workflow"]["interventions_by_type"]
    if assigned:
        other = {k: v for k, v in assigned.items() if k not in INTERVENTIONS}
        add(
            "Interventions are supportive (counselling, training, wellness, peer support)",
            "met" if not other else "not met",
            ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in assigned.items()),
            "workflow",
        )
    else:
        add(
            "Interventions are supportive (counselling, training, wellness, peer support)",
            "not measurable",
            "no intervention assigned yet",
            "workflow",
        )
    days = data["workflow"]["review_days"]
    need = data["workflow"].get("timely_share", 0.8)
    timely = (
        f"Reviews are timely (at least {100 * need:.0f}% of the flags whose {days}-day window "
        "has closed reviewed within it)"
    )
    if rev["flagged"]:
        waiting = rev["flagged"] - rev["reviewed"]
        figure = f"{rev['reviewed']} of {rev['flagged']} flags reviewed "
        figure += f"({100 * (rev['share_reviewed'] or 0):.0f}%); {rev['overdue']} overdue"
        if waiting == 0:
            status = "met"
        elif rev["overdue"] == 0:
            status = "not measurable"
            figure += f": the {waiting} not yet reviewed are within the {days}-day window"
        else:
            status = "not met"
        add("Every flag is reviewed by a supervisor", status, figure, "workflow")
        due, on_time = rev.get("due", 0), rev.get("reviewed_in_time", 0)
        med = rev["median_days_to_review"]
        median = (
            f"median {med:.1f} days to the first review"
            if med is not None
            else ("none reviewed yet")
        )
        if not due:
            status = "not measurable"
            figure = f"no flag's {days}-day window has closed yet; {median}"
        else:
            status = "met" if on_time / due >= need else "not met"
            figure = (
                f"{on_time} of {due} flags whose window has closed reviewed within {days} days "
                f"({100 * on_time / due:.0f}%); {rev['overdue']} overdue; {median}"
            )
        add(timely, status, figure, "workflow")
    else:
        for ask in ("Every flag is reviewed by a supervisor", timely):
            add(ask, "not measurable", "no flag raised yet", "workflow")
    bias = data["bias"]
    ask = "Flags do not fall unequally on groups (held-out flag rates, four-fifths rule)"
    if bias.get("available"):
        worst = None
        for attr, methods in bias["by"].items():
            part = methods.get("champion", {})
            ratio = part.get("min_over_max", {}).get("flag_rate")
            rated = [g for g in part.get("groups", []) if g.get("flag_rate") is not None]
            if ratio is None or len(rated) < 2:
                continue
            if worst is None or ratio < worst[1]:
                lo = min(rated, key=lambda g: g["flag_rate"])
                hi = max(rated, key=lambda g: g["flag_rate"])
                worst = (attr, ratio, lo, hi)
        if worst is not None:
            attr, ratio, lo, hi = worst
            add(
                ask,
                "met" if ratio >= FOUR_FIFTHS else "not met",
                f"lowest/highest flag rate by {attr} {ratio:.2f} (threshold {FOUR_FIFTHS}): "
                f"{lo['group']} {lo['flagged']} of {lo['officers']}, "
                f"{hi['group']} {hi['flagged']} of {hi['officers']}; the rules side by side "
                "in the evidence",
                "bias",
            )
        else:
            add(ask, "not measurable", "every group is below the minimum size", "bias")
    else:
        add(ask, "not measurable", bias.get("why", "no held-out rows"), "bias")
    acc = data["access"]
    add(
        "Every access is documented and the record is tamper-evident",
        "met" if acc["chain"]["ok"] else "not met",
        acc["chain"]["summary"],
        "access",
    )
    drift = data["drift"]
    if drift:
        last = drift[0]
        add(
            "The model is monitored for drift",
            "met" if not last.get("alert") else "not met",
            f"{len(drift)} check(s); the newest ({last.get('as_of')}): "
            f"{'ALERT' if last.get('alert') else 'no alert'}",
            "drift",
        )
    else:
        add(
            "The model is monitored for drift", "not measurable", "no drift check recorded", "drift"
        )
    out = data["outcomes"]
    add(
        "The effect of interventions is followed up",
        "met" if out["available"] else "not measurable",
        (
            f"{out['pairs']} matched pairs: adverse-event rate {out['treated_rate']:.2f} vs "
            f"{out['control_rate']:.2f}"
            if out["available"]
            else out.get("why", "")
        ),
        "outcomes",
    )
    return items


# ------------------------------------------------------------------------------ the report


def build_report(
    agency: str,
    *,
    home: Path | None = None,
    db: AppDatabase | None = None,
    uri: str | None = None,
    drift_rows: list[dict[str, Any]] | None = None,
    review_days: int | None = None,
    today: dt.date | None = None,
    min_group: int = 20,
    min_pairs: int = 10,
    follow_up: str = "1y",
) -> AuditReport:
    """Gather every section of the audit report of ``agency`` and render it as HTML.

    ``home``: the workspace (default EWS_HOME); ``db``: the application database (default:
    the workspace's); ``uri``: the MLflow store; ``drift_rows``: the drift checks to show,
    newest first (the keys of ``models.drift.drift_history``), None or [] for none recorded.
    """
    from ews.db import open_app_database
    from ews.reviews import review_summary
    from ews.settings import get_settings
    from ews.store import StoreError, Workspace

    settings = get_settings()
    home = Path(home) if home is not None else settings.home
    uri = uri or (settings.mlflow_tracking_uri if home == settings.home else None)
    if uri is None:
        uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    owned = db is None
    database = db or open_app_database(settings)
    try:
        ws = Workspace(home)
        try:
            snap = ws.snapshot(agency)
        except StoreError as exc:
            raise ReportError(str(exc)) from exc
        days = review_days if review_days is not None else settings.review_days
        card = champion_card(agency, home, uri, label=scored_label(database, agency))
        workflow = review_summary(database, agency, days, today)
        label = card["label"] if card else None
        trained_on = snap
        if card and card.get("snapshot_id") and card["snapshot_id"] != snap.id:
            try:  # the champion's own data: where its test predictions' outcomes came from
                trained_on = ws.snapshot(agency, card["snapshot_id"])
            except StoreError:
                trained_on = snap
        data: dict[str, Any] = {
            "agency": agency,
            "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "snapshot_id": snap.id,
            "coverage": coverage(agency, home, database),
            "rules": rules_in_force(card),
            "champion": card,
            "bias": held_out_audit(card, trained_on, min_group),
            "drift": list(drift_rows or []),
            "workflow": workflow,
            "access": access_summary(database, agency),
            "outcomes": intervention_outcomes(
                database, agency, snap, label, follow_up, min_pairs=min_pairs
            ),
            "min_group": min_group,
        }
        data["checklist"] = checklist(data)
    finally:
        if owned:
            database.dispose()
    public = _public(data)
    return AuditReport(agency, public, render_html(public))


def _public(data: dict[str, Any]) -> dict[str, Any]:
    """The figures without the private working data, as plain JSON values."""
    from models.experiment import _json_safe

    out = dict(data)
    if out.get("champion"):
        out["champion"] = {k: v for k, v in out["champion"].items() if k != "_private"}
    result: dict[str, Any] = _json_safe(out)
    return result


def _charts(data: dict[str, Any]) -> dict[str, str]:
    charts: dict[str, str] = {}
    bias = data["bias"]
    if bias.get("available"):
        for attr, methods in bias["by"].items():
            groups = [
                g["group"]
                for g in methods["champion"]["groups"]
                if g.get("precision") is not None or g.get("flag_rate") is not None
            ]
            if not groups:
                continue
            for measure in ("precision", "flag_rate"):
                series = {}
                for m, part in methods.items():
                    vals = {g["group"]: g.get(measure) for g in part["groups"]}
                    series[m] = [vals.get(g) for g in groups]
                charts[f"{attr}_{measure}"] = grouped_bars(
                    groups,
                    series,
                    measure.replace("_", " "),
                    f"{measure.replace('_', ' ').capitalize()} by {attr}, held-out test dates",
                    share=measure == "precision",
                )
    card = data.get("champion")
    if card and card["calibration"]["table"]:
        charts["calibration"] = reliability_chart(
            card["calibration"]["table"], "Reliability of the scores on the test dates"
        )
    return charts


def short_hashes(value: Any) -> Any:
    """``value`` as HTML with its hex strings of 16 or more characters (hashes) shortened to
    12 with the whole value in a title: a 64-character hash does not wrap and would widen
    the page. Returns markupsafe.Markup (the rest of the text escaped)."""
    from markupsafe import Markup, escape

    out, last, text = [], 0, str(value)
    for m in re.finditer(r"\b[0-9a-f]{16,}\b", text):
        h = m.group()
        out += [
            escape(text[last : m.start()]),
            Markup('<code title="{}">{}…</code>').format(h, h[:12]),
        ]
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def render_html(data: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script)."""
    from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def pct(v: Any, digits: int = 0) -> str:
        if v is None or isinstance(v, Undefined):
            return "n/a"
        try:
            return f"{100 * float(v):.{digits}f}%"
        except (TypeError, ValueError):
            return str(v)

    def num(v: Any, digits: int = 2) -> str:
        if v is None or isinstance(v, Undefined):
            return "n/a"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        try:
            return f"{float(v):.{digits}f}"
        except (TypeError, ValueError):
            return str(v)

    env.filters["pct"] = pct
    env.filters["num"] = num
    env.filters["hashes"] = short_hashes
    env.filters["words"] = lambda v: str(v).replace("_", " ")
    template = env.get_template("audit_report.html")
    return template.render(d=data, charts=_charts(data), four_fifths=FOUR_FIFTHS)


def render_pdf(html: str) -> bytes:
    """The PDF of the report's HTML (WeasyPrint; nothing is fetched: the page is whole)."""
    from weasyprint import HTML

    def no_fetch(url: str, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"the audit report fetches nothing ({url})")

    pdf: bytes = HTML(string=html, url_fetcher=no_fetch).write_pdf()
    return pdf


def workspace_folder(agency: str, home: Path | None = None) -> Path:
    """Where the newest report of an agency is kept in the workspace (read by the pages)."""
    from ews.settings import get_settings

    return (Path(home) if home is not None else get_settings().home) / "reports" / agency


def write_report(
    report: AuditReport,
    out: Path | None = None,
    home: Path | None = None,
    key: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the report's HTML, PDF and JSON into the workspace (``reports/<agency>/``, where
    the pages read the newest) and, when ``out`` is given, into ``out`` too. Returns the
    paths written in ``out`` (or in the workspace). ``key``: the :func:`report_key` read
    before the report was built, kept beside it (the pages rebuild a report whose key is
    no longer the current one)."""
    pdf = render_pdf(report.html)
    blobs = {
        "html": report.html.encode("utf-8"),
        "pdf": pdf,
        "json": json.dumps(report.data, indent=2).encode("utf-8"),
    }
    written: dict[str, Path] = {}
    for folder in [workspace_folder(report.agency, home), *([Path(out)] if out else [])]:
        folder.mkdir(parents=True, exist_ok=True)
        for ext, blob in blobs.items():
            path = folder / f"{REPORT_NAME}-{report.agency}.{ext}"
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(blob)
            tmp.replace(path)
            written[ext] = path
    if key is not None:
        _key_path(report.agency, workspace_folder(report.agency, home)).write_text(json.dumps(key))
    return written


def stored_report(agency: str, ext: str, home: Path | None = None) -> Path | None:
    """The newest report of ``agency`` written to the workspace (html, pdf or json)."""
    path = workspace_folder(agency, home) / f"{REPORT_NAME}-{agency}.{ext}"
    return path if path.is_file() else None


def report_figures(
    agency: str, settings: Any, db: AppDatabase, rebuild: bool = False
) -> dict[str, Any]:
    """The figures of the newest report of ``agency`` written to the workspace of
    ``settings``; built from the current data (with the drift history) and written there
    when there is none yet, or ``rebuild``. Raises ReportError when it cannot be built."""
    import json

    from models.drift import drift_history

    path = stored_report(agency, "json", settings.home)
    if path is not None and not rebuild:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    report = build_report(
        agency,
        home=settings.home,
        db=db,
        uri=settings.mlflow_tracking_uri,
        review_days=settings.review_days,
        drift_rows=drift_history(agency, db=db),
    )
    write_report(report, home=settings.home)
    return report.data


# ------------------------------------------------------------------------------ kept built

STALE_BUILD_S = 15 * 60  # a build marker older than this belongs to a process that died
_BUILDS: dict[tuple[str, str], threading.Thread] = {}  # (home, agency) -> its running build
_BUILDS_LOCK = threading.Lock()
_FAILED: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}  # slot -> (key, why)


def report_key(agency: str, settings: Any, db: AppDatabase) -> dict[str, Any]:
    """What the stored report of ``agency`` depends on, read in milliseconds: the current
    snapshot, the champion versions, the current scoring runs, the newest drift check and
    the report's template.
    A stored report with another key is stale. (The review workflow and the access log move
    with every click: the report shows them as of when it was written; "Rebuild" renews.)"""
    from sqlalchemy import func, select

    from ews.db import DriftRun, ScoringRun
    from ews.store import StoreError, Workspace
    from models.registry import list_models

    try:
        snapshot: str | None = Workspace(settings.home).snapshot(agency).id
    except StoreError:
        snapshot = None
    champions = sorted(
        f"{r['name']}/{r['version']}"
        for r in list_models(settings.mlflow_tracking_uri)
        if r.get("agency") == agency and "champion" in r["aliases"]
    )
    with db.session() as s:
        runs = sorted(
            int(i)
            for i in s.scalars(
                select(ScoringRun.id).where(
                    ScoringRun.agency == agency, ScoringRun.current.is_(True)
                )
            )
        )
        drift = s.scalar(select(func.max(DriftRun.id)).where(DriftRun.agency == agency))
    import hashlib

    layout = hashlib.sha256(Path(__file__).with_name("audit_report.html").read_bytes())
    return {
        "snapshot": snapshot,
        "champions": champions,
        "runs": runs,
        "drift": drift,
        "layout": layout.hexdigest()[:12],  # a new report layout rebuilds it too
    }


def _key_path(agency: str, folder: Path) -> Path:
    return folder / f"{REPORT_NAME}-{agency}.key.json"


def _marker(agency: str, home: Path) -> Path:
    return workspace_folder(agency, home) / f"{REPORT_NAME}-{agency}.building"


def stored_key(agency: str, home: Path) -> dict[str, Any] | None:
    """The key the stored report was built with (None: none stored, or from before keys)."""
    path = _key_path(agency, workspace_folder(agency, home))
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found


def building_since(agency: str, home: Path) -> str | None:
    """When the running build of the report of ``agency`` started ("YYYY-MM-DD HH:MM UTC"),
    by this or another process of this machine; None when none runs (a marker left by a
    process that ended, or older than STALE_BUILD_S, does not count)."""
    import time

    from ews.processes import alive

    path = _marker(agency, home)
    try:
        if time.time() - path.stat().st_mtime > STALE_BUILD_S:
            return None
        since, _, pid = path.read_text().partition("\n")
    except OSError:
        return None
    if pid.strip().isdigit() and not alive(int(pid)):
        return None
    return since.strip() or None


def _mark_building(agency: str, home: Path) -> None:
    import os

    marker = _marker(agency, home)
    marker.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    marker.write_text(f"{stamp}\n{os.getpid()}")


def refresh_report(
    agency: str,
    settings: Any,
    db: AppDatabase,
    *,
    force: bool = False,
    progress: Any = None,
) -> bool:
    """Build the audit report of ``agency`` (HTML, PDF, JSON: the model card's figures too)
    and keep it in the workspace with its :func:`report_key`, unless the stored one is
    current (``force``: build anyway). ``progress``: a callable given a line before and
    after. Returns whether it built. Raises ReportError when it cannot be built."""
    import time

    from models.drift import drift_history

    home = Path(settings.home)
    key = report_key(agency, settings, db)
    if not force and stored_key(agency, home) == key and stored_report(agency, "pdf", home):
        return False
    marker = _marker(agency, home)
    _mark_building(agency, home)
    t0 = time.perf_counter()
    try:
        if progress:
            progress(f"building the audit report and model card of {agency} for the reviewers")
        report = build_report(
            agency,
            home=home,
            db=db,
            uri=settings.mlflow_tracking_uri,
            review_days=settings.review_days,
            drift_rows=drift_history(agency, db=db),
        )
        write_report(report, home=home, key=key)
    finally:
        marker.unlink(missing_ok=True)
    if progress:
        progress(
            f"audit report of {agency} kept in {workspace_folder(agency, home)} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    return True


def start_refresh(agency: str, settings: Any, db: AppDatabase, force: bool = False) -> str:
    """Rebuild the report of ``agency`` in a background thread (unless a build already runs,
    here or in another process) and return when the running build started."""
    import logging

    home = Path(settings.home)
    since = building_since(agency, home)
    if since is not None:
        return since
    slot = (str(home.resolve()), agency)

    def run() -> None:
        try:
            refresh_report(agency, settings, db, force=force)
            _FAILED.pop(slot, None)
        except Exception as exc:  # the page keeps the stored report and says it failed
            logging.getLogger(__name__).exception("the audit report of %s failed", agency)
            _FAILED[slot] = (report_key(agency, settings, db), str(exc) or type(exc).__name__)
        finally:
            _marker(agency, home).unlink(missing_ok=True)
            with _BUILDS_LOCK:
                _BUILDS.pop(slot, None)

    with _BUILDS_LOCK:
        if slot not in _BUILDS:
            _mark_building(agency, home)
            thread = threading.Thread(target=run, name=f"report-{agency}", daemon=True)
            _BUILDS[slot] = thread
            thread.start()
    return building_since(agency, home) or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def report_status(agency: str, settings: Any, db: AppDatabase) -> dict[str, Any]:
    """What the reviewers' pages need, in milliseconds: ``stored`` (a report is kept),
    ``current`` (its key is today's), ``building`` (when a running build started, or None)
    and ``failed`` (why the last build for today's key failed, or None). A missing or stale
    report starts a background build, once per key. Raises ReportError when the agency has
    no data in the workspace."""
    home = Path(settings.home)
    key = report_key(agency, settings, db)
    if key["snapshot"] is None:
        from ews.store import StoreError, Workspace

        try:
            Workspace(home).snapshot(agency)
        except StoreError as exc:  # the store's own words, as `ews audit-report` says them
            raise ReportError(str(exc)) from exc
    stored = stored_report(agency, "json", home) is not None
    current = stored and stored_key(agency, home) == key
    building = building_since(agency, home)
    failed = _FAILED.get((str(home.resolve()), agency))
    why = failed[1] if failed and failed[0] == key else None
    if not current and building is None and why is None:
        building = start_refresh(agency, settings, db)
    return {"stored": stored, "current": current, "building": building, "failed": why}


def keep_built(agency: str, echo: Any, settings: Any = None) -> None:
    """The step `ews train`, `ews score` and `ews demo` end with: bring the stored audit report
    of ``agency`` up to date (:func:`refresh_report`), saying so on ``echo`` (a line before
    and after). Skipped when the settings' ``build_reports`` is off. A failure is told, not
    raised: the scores are saved, and the reviewers' pages build the report on view."""
    from ews.db import open_app_database
    from ews.settings import get_settings

    settings = settings or get_settings()
    if not settings.build_reports:
        return
    db = open_app_database(settings)
    try:
        refresh_report(agency, settings, db, progress=echo)
    except Exception as exc:  # noqa: BLE001 - the work before it is done and saved
        echo(
            f"note: the audit report of {agency} was not built ({exc}); the reviewers' pages "
            "build it when first opened"
        )
    finally:
        db.dispose()
