"""The evaluation report: the experiment's results as JSON and as one self-contained HTML page.

The HTML embeds its plots as base64 PNG (matplotlib, Agg backend), so it can be mailed or
archived as a single file: precision at the top k% for every method at every test date, the
equal-volume comparison of the selected model with each rule (true and false positives), and
the table of metrics. It also states which choices were made on training years only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def load_results(source: Path | str | dict[str, Any] | Any) -> dict[str, Any]:
    """Results as a dict from an ExperimentResult, a dict, or a ``results.json`` file."""
    if isinstance(source, dict):
        return source
    if hasattr(source, "to_dict"):
        from models.experiment import _json_safe

        result: dict[str, Any] = _json_safe(source.to_dict())
        return result
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no results file {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    if "records" not in data:
        raise ValueError(f"{path} is not an experiment results file (no 'records')")
    return data


def _png(fig: Figure) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _records(results: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(results.get("records", []))


def precision_curves(results: dict[str, Any], label: str) -> str | None:
    """PNG (base64): precision at each top k% per method, one panel per test date."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = _records(results)
    if df.empty:
        return None
    df = df[df["label"] == label]
    dates = sorted(df["test_date"].unique())
    ks = [float(k) for k in results.get("config", {}).get("ks", [1, 5, 10])]
    if not dates or not ks:
        return None
    fig, axes = plt.subplots(1, len(dates), figsize=(4.2 * len(dates), 3.4), squeeze=False)
    for ax, day in zip(axes[0], dates, strict=True):
        sub = df[df["test_date"] == day]
        for _, row in sub.iterrows():
            metrics = row.get("metrics") or {}
            ys = [metrics.get(f"precision@{k:g}%") for k in ks]
            if all(y is None for y in ys):
                continue
            ys = [float("nan") if y is None else y for y in ys]
            style = "--" if row["kind"] == "rule" else "-"
            width = 2.5 if row.get("selected") else 1.0
            name = str(row["method"]) + (" (selected)" if row.get("selected") else "")
            ax.plot(ks, ys, style, marker="o", linewidth=width, label=name)
        ax.set_title(f"test {day}")
        ax.set_xlabel("top k% of officers flagged")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.05)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, -0.25))
    fig.suptitle(f"Precision at top k% ({label}); dashed = rules", y=1.04)
    return _png(fig)


def _extra(comparison: dict[str, Any], kind: str) -> Any:
    """The model's extra TPs (``kind`` "tp") or fewer FPs ("fp") against a rule; results
    written before these were named ``extra_tp``/``fewer_fp`` called them ``tp``/``fp``."""
    key = "extra_tp" if kind == "tp" else "fewer_fp"
    return comparison.get(key, comparison.get(kind))


def rule_bars(results: dict[str, Any], label: str) -> str | None:
    """PNG (base64): at each rule's volume, TP and FP of the rule and of the selected model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = _records(results)
    if df.empty or "selected" not in df:
        return None
    sel = df[(df["label"] == label) & (df["kind"] == "model") & (df["selected"] == True)]  # noqa: E712
    if sel.empty:
        return None
    dates = sorted(sel["test_date"].unique())
    fig, axes = plt.subplots(1, len(dates), figsize=(4.6 * len(dates), 3.4), squeeze=False)
    for ax, day in zip(axes[0], dates, strict=True):
        row = sel[sel["test_date"] == day].iloc[0]
        vs = row.get("vs_rules") or {}
        rules = sorted(vs)
        if not rules:
            continue
        x = np.arange(len(rules))
        rule_tp = [vs[r].get("rule_tp") or 0 for r in rules]
        rule_fp = [vs[r].get("rule_fp") or 0 for r in rules]
        model_tp = [(vs[r].get("rule_tp") or 0) + (_extra(vs[r], "tp") or 0) for r in rules]
        model_fp = [(vs[r].get("rule_fp") or 0) - (_extra(vs[r], "fp") or 0) for r in rules]
        w = 0.38
        ax.bar(x - w / 2, rule_tp, w, color="#7f9fbf", label="rule: outcome (TP)")
        ax.bar(
            x - w / 2, rule_fp, w, bottom=rule_tp, color="#d9d9d9", label="rule: no outcome (FP)"
        )
        ax.bar(x + w / 2, model_tp, w, color="#1f5f9f", label="model: outcome (TP)")
        ax.bar(
            x + w / 2, model_fp, w, bottom=model_tp, color="#a6a6a6", label="model: no outcome (FP)"
        )
        ax.set_xticks(x, rules, rotation=20, fontsize=8)
        ax.set_ylabel("officers flagged")
        ax.set_title(f"test {day}\n{row['method']}", fontsize=8)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=7, bbox_to_anchor=(0.5, -0.2))
    fig.suptitle(f"Selected model vs rules at equal volume ({label})", y=1.06)
    return _png(fig)


def metrics_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per label, test date and method, with the headline metrics."""
    df = _records(results)
    cols = ["label", "test_date", "method", "kind", "selected", "flagged", "tp", "fp"]
    cols += ["precision", "recall", "auc", "ap", "brier"]
    if df.empty:
        return df
    out = df[[c for c in cols if c in df.columns]].copy()
    return out.sort_values(["label", "test_date", "kind", "method"]).reset_index(drop=True)


def vs_rules_table(results: dict[str, Any]) -> pd.DataFrame:
    """For each selected model and rule: extra TPs, fewer FPs and their 95% intervals."""
    import pandas as pd

    rows = []
    for rec in results.get("records", []):
        if rec.get("kind") != "model" or not rec.get("selected"):
            continue
        for rule, c in (rec.get("vs_rules") or {}).items():
            rows.append(
                {
                    "label": rec["label"],
                    "test_date": rec["test_date"],
                    "model": rec["method"],
                    "rule": rule,
                    "flagged": c.get("flagged"),
                    "rule_tp": c.get("rule_tp"),
                    "extra_tp": _extra(c, "tp"),
                    "fewer_fp": _extra(c, "fp"),
                    "pct_more_tp": c.get("pct_more_tp"),
                    "ci95_pct_more_tp": c.get("ci95_pct_more_tp"),
                    "pct_fewer_fp": c.get("pct_fewer_fp"),
                }
            )
    return pd.DataFrame(rows)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if value != value else f"{value:.3f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return html.escape(str(value))


def _table_html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cls = ' class="sel"' if row.get("selected") is True else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(v)}</td>" for v in row.tolist()) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:12px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#eef} tr.sel{background:#fff6d6;font-weight:600}
img{max-width:100%} .note{background:#f4f8ff;border-left:4px solid #1f5f9f;padding:.5em 1em}
"""


def render_html(results: dict[str, Any]) -> str:
    """The self-contained HTML page of a results dict."""
    labels = sorted({r["label"] for r in results.get("records", [])})
    cfg = results.get("config", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>ews evaluation {html.escape(str(results.get('config_hash', '')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation: {html.escape(str(cfg.get('name', 'experiment')))}</h1>",
        "<p>Agency <b>{}</b>, data snapshot <code>{}</code>, feature spec <code>{}</code>, "
        "config <code>{}</code>.</p>".format(
            *(
                html.escape(str(results.get(k, "")))
                for k in ("agency", "snapshot_id", "spec_hash", "config_hash")
            )
        ),
        "<div class='note'><p>Every model was trained on as-of dates whose label window ends by "
        "its test date; with label maturity on, training labels count only findings known at "
        "the test date. The selected model (highlighted) was chosen on validation splits inside "
        "the training years only; test-date outcomes played no part in the choice.</p>",
        "".join(f"<p>{html.escape(n)}</p>" for n in results.get("notes", [])),
        "</div>",
    ]
    for label in labels:
        parts.append(f"<h2>Label: {html.escape(label)}</h2>")
        for title, png in (
            ("Precision at the top k%", precision_curves(results, label)),
            ("Selected model vs rules, equal volume", rule_bars(results, label)),
        ):
            if png:
                parts.append(
                    f"<h3>{title}</h3><img alt='{title}' src='data:image/png;base64,{png}'>"
                )
    parts.append("<h2>Metrics</h2>")
    parts.append(_table_html(metrics_table(results)))
    parts.append("<h2>Selected model vs each rule (equal volume, bootstrap 95% intervals)</h2>")
    parts.append(_table_html(vs_rules_table(results)))
    parts.append("<h2>Model selection (training years only)</h2><ul>")
    for s in results.get("selection", []):
        val = ", ".join(i.get("validation_date", "") for i in s.get("inner_splits", []))
        parts.append(
            f"<li>{html.escape(s['label'])}, test {s['test_date']}: chose "
            f"<b>{html.escape(str(s['chosen']))}</b> by {html.escape(str(s.get('metric')))} "
            f"(mean − {s.get('penalty')} × std) on validation dates {html.escape(val)}</li>"
        )
    parts.append("</ul>")
    for d in results.get("deployment", []):
        parts.append(
            f"<p>Deployed champion for {html.escape(d['label'])}: "
            f"<b>{html.escape(str(d['chosen']))}</b>, chosen on validation dates "
            f"{html.escape(', '.join(i['validation_date'] for i in d.get('inner_splits', [])))}"
            f" and trained on {html.escape(', '.join(d['train_as_of']))} (labels known by "
            f"{d.get('train_labels_known_by')}), for scoring from {d['as_of']}.</p>"
        )
    parts.append("<h2>Splits</h2>")
    for sp in results.get("splits", []):
        parts.append(
            f"<p>test {sp['test_as_of']}: train {', '.join(sp['train_as_of'])}; training labels "
            f"known by {sp.get('label_known_by')}; last training label window ends "
            f"{sp.get('train_label_end')}</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: Path | str | dict[str, Any] | Any, out_dir: Path) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.html`` into ``out_dir``; return both paths."""
    from models.experiment import _json_safe

    data = load_results(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "evaluation.json"
    payload = {
        **data,
        "metrics_table": metrics_table(data).to_dict(orient="records"),
        "vs_rules_table": vs_rules_table(data).to_dict(orient="records"),
    }
    json_path.write_text(json.dumps(_json_safe(payload), indent=2))
    html_path = out_dir / "evaluation.html"
    html_path.write_text(render_html(data))
    return json_path, html_path


def short_names(methods: list[str], kinds: list[str]) -> dict[str, str]:
    """Short names for the models of a table (``m1``, ``m2``, ... in order of appearance);
    rules keep their names."""
    out: dict[str, str] = {}
    for method, kind in zip(methods, kinds, strict=True):
        if kind == "model" and method not in out:
            out[method] = f"m{sum(1 for v in out.values() if v.startswith('m')) + 1}"
    return out


def text_table(records: list[dict[str, Any]], width: int = 100) -> str:
    """The results as plain text no wider than ``width``: one block per label, one row per
    test date and method (models under short names, with a legend), the chosen model
    marked ``*``."""

    def num(v: Any, digits: int = 3) -> str:
        return "-" if v is None or (isinstance(v, float) and v != v) else f"{v:.{digits}f}"

    methods = [r["method"] for r in records]
    short = short_names(methods, [r["kind"] for r in records])
    name_w = max([len(short.get(m, m)) for m in methods] + [6])
    name_w = min(name_w, width - 62)
    head = (
        f"{'test date':<10}  {'method':<{name_w}}  {'sel':>3}  {'flagged':>7}  {'TP':>6}  "
        f"{'FP':>6}  {'prec':>5}  {'recall':>6}  {'AUC':>5}"
    )
    lines: list[str] = []
    for label in dict.fromkeys(r["label"] for r in records):
        lines += ["", f"label {label}", head, "-" * len(head)]
        for r in (r for r in records if r["label"] == label):
            name = short.get(r["method"], r["method"])[:name_w]
            flagged = r.get("flagged")
            lines.append(
                f"{r['test_date']:<10}  {name:<{name_w}}  {'*' if r.get('selected') else '':>3}  "
                f"{'-' if flagged is None else flagged:>7}  {r.get('tp', '-'):>6}  "
                f"{r.get('fp', '-'):>6}  {num(r.get('precision')):>5}  "
                f"{num(r.get('recall')):>6}  {num(r.get('auc')):>5}"
            )
    if short:
        lines += ["", "models:"]
        for method, s in short.items():
            text = f"  {s:<4} {method}"
            lines.append(text if len(text) <= width else text[: width - 3] + "...")
    # each rule in words, once; a rule that learns (best_single) per label, with the test
    # dates it was learned for
    legend: dict[tuple[str, str, str], list[str]] = {}
    for r in records:
        if r["kind"] == "rule" and r.get("condition"):
            learned = r["method"] == "best_single"
            key = (r["method"], r["label"] if learned else "", r["condition"])
            legend.setdefault(key, []).append(str(r["test_date"]) if learned else "")
    if legend:
        lines += ["", "rules:"]
        for (method, label, cond), dates in legend.items():
            when = f" (learned for {label}, test dates {', '.join(dates)})" if label else ""
            lines += textwrap.wrap(
                f"{method}{when}: {cond}", width, initial_indent="  ", subsequent_indent="    "
            )
    return "\n".join(line[:width] for line in lines).lstrip("\n")
