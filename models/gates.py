"""The promotion gate: a model gets the alias ``champion`` only if its held-out results pass.

The registered (deployed) config was evaluated at every test date of the temporal
validation, trained only on outcomes known by that date (:mod:`models.experiment`). It
passes when, at every test date:

1. its ROC AUC interval (95% bootstrap, :func:`models.metrics.auc_interval`) lies above 0.5:
   it ranks officers better than chance, beyond the noise of the test sample; and
2. flagging as many officers as the best rule of that date (highest precision, then most
   true positives), it finds at least as many with the outcome, within its interval: the
   95% interval of its extra true positives reaches zero or above.

Without bootstrap resamples (``n_boot: 0``) the point estimates decide (AUC > 0.5, at least
as many true positives), and the gate says so. :func:`gate_paragraph` says in one plain
paragraph why a model was not promoted and what the rules achieve. The gate is stored in
results.json (``gates``) and on the registered version (tags ``ews.gate``,
``ews.gate_detail``); ``ews models promote --force --reason`` overrides it with an audit
entry.
"""

from __future__ import annotations

import json
from typing import Any

CRITERIA = (
    "at every held-out test date, the AUC's 95% interval lies above 0.5, and at the volume "
    "of the best rule the model finds at least as many officers with the outcome (within "
    "its 95% interval)"
)


def _best_rule(rules: list[dict[str, Any]]) -> dict[str, Any] | None:
    fitted = [r for r in rules if not r.get("error") and (r.get("flagged") or 0) > 0]
    if not fitted:
        return None
    return max(fitted, key=lambda r: (r.get("precision") or 0.0, r.get("tp") or 0, r["method"]))


def promotion_gate(records: list[dict[str, Any]], label: str, method: str) -> dict[str, Any]:
    """The gate of ``method`` (the registered config) for ``label`` from an experiment's
    records: ``passed``, ``reasons`` (why not, one per failed check), ``rules`` (what the
    best rule achieves at each date) and ``dates`` (the figures of each check)."""
    dates: list[dict[str, Any]] = []
    reasons: list[str] = []
    rules_said: list[str] = []
    mine = [
        r
        for r in records
        if r.get("label") == label and r.get("kind") == "model" and r.get("method") == method
    ]
    for rec in sorted(mine, key=lambda r: r["test_date"]):
        day = rec["test_date"]
        row: dict[str, Any] = {"test_date": day, "auc": rec.get("auc")}
        if rec.get("error"):
            row.update(auc_ok=False, tp_ok=False)
            reasons.append(f"on {day} it could not be evaluated ({rec['error']})")
            dates.append(row)
            continue
        auc, ci = rec.get("auc"), rec.get("auc_ci95")
        row["auc_ci95"] = ci
        if auc is None:
            row["auc_ok"] = False
            reasons.append(f"on {day} its AUC is undefined (no officer had the outcome)")
        elif ci:
            row["auc_ok"] = ci[0] > 0.5
            if not row["auc_ok"]:
                reasons.append(
                    f"on {day} its AUC is {auc:.2f} with a 95% interval {ci[0]:.2f} to "
                    f"{ci[1]:.2f}, which does not lie above 0.5 (chance)"
                )
        else:
            row["auc_ok"] = auc > 0.5
            if not row["auc_ok"]:
                reasons.append(f"on {day} its AUC is {auc:.2f}, not above 0.5 (chance)")
        rules = [
            r
            for r in records
            if r.get("label") == label and r.get("kind") == "rule" and r["test_date"] == day
        ]
        best = _best_rule(rules)
        if best is None:
            row["tp_ok"] = True
            row["best_rule"] = None
            rules_said.append(f"on {day} no rule flagged anyone")
        else:
            vs = (rec.get("vs_rules") or {}).get(best["method"], {})
            rule_tp, model_tp = vs.get("rule_tp", best.get("tp")), vs.get("model_tp")
            interval = vs.get("ci95_pct_more_tp")
            flagged = vs.get("flagged", best.get("flagged"))
            row.update(
                best_rule=best["method"],
                rule_flagged=flagged,
                rule_tp=rule_tp,
                rule_precision=best.get("precision"),
                model_tp=model_tp,
                ci95_pct_more_tp=interval,
            )
            if model_tp is None or rule_tp is None:
                row["tp_ok"] = False
                reasons.append(f"on {day} it was not compared with the rule {best['method']}")
            else:
                row["tp_ok"] = model_tp >= rule_tp or bool(interval and interval[1] >= 0)
                if not row["tp_ok"]:
                    within = (
                        f" (95% interval of the difference {interval[0]:.0f}% to "
                        f"{interval[1]:.0f}%)"
                        if interval
                        else ""
                    )
                    reasons.append(
                        f"on {day}, flagging as many officers as the rule {best['method']} "
                        f"({flagged}), it finds {model_tp} with the outcome against the "
                        f"rule's {rule_tp}{within}"
                    )
            prec = best.get("precision")
            rules_said.append(
                f"on {day} the best rule, {best['method']}, flagged {flagged} officers, "
                f"{rule_tp} of whom had the outcome"
                + (f" (precision {prec:.2f})" if prec is not None else "")
            )
        dates.append(row)
    if not mine:
        reasons.append("it has no held-out results (no test date was evaluated)")
    summary = []
    for d in dates:
        ci = d.get("auc_ci95")
        text = f"{d['test_date']}: AUC " + ("n/a" if d.get("auc") is None else f"{d['auc']:.2f}")
        text += f" (95% {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""
        if d.get("best_rule"):
            tp = d.get("ci95_pct_more_tp")
            text += (
                f"; at the volume of {d['best_rule']} ({d.get('rule_flagged')}) "
                f"{d.get('model_tp')} with the outcome against the rule's {d.get('rule_tp')}"
                + (f" (difference {tp[0]:+.0f}% to {tp[1]:+.0f}%)" if tp else "")
            )
        summary.append(text)
    passed = bool(mine) and all(d.get("auc_ok") and d.get("tp_ok") for d in dates)
    return {
        "label": label,
        "method": method,
        "passed": passed,
        "criteria": CRITERIA,
        "point_estimates_only": any(d.get("auc_ci95") is None for d in dates),
        "reasons": reasons,
        "summary": summary,
        "rules": rules_said,
        "dates": dates,
    }


def gate_paragraph(gate: dict[str, Any], model: str, registered: bool = True) -> str:
    """One plain paragraph: why ``model`` was not promoted, what the rules achieve, and how
    to promote it anyway (or, when it passed, one sentence saying so)."""
    if gate.get("passed"):
        return f"{model} ({gate['method']}) passed the promotion gate: {gate['criteria']}."
    why = "; ".join(gate.get("reasons") or ["its held-out results did not pass"])
    rules = "; ".join(gate.get("rules") or []) or "no rule was evaluated"
    what = (
        f"{model} ({gate['method']}) was registered WITHOUT the alias champion"
        if registered
        else f"{model} ({gate['method']}) would not be promoted"
    )
    anyway = (
        f"To deploy this model anyway, a person accountable for it runs `ews models promote "
        f"{model.replace(' v', ' ')} --force --reason TEXT` (recorded in the audit log, the "
        "model card and the audit report)."
        if registered
        else "Nothing was registered (--no-register)."
    )
    return (
        f"{what}: a champion must pass the promotion gate ({gate['criteria']}), and {why}. "
        f"What the rules achieve: {rules}. Scoring uses the champion; "
        f"until a model passes, the rules are the better list. {anyway}"
    )


def gate_tags(gate: dict[str, Any]) -> dict[str, str]:
    """The gate as tags of a registered model version."""
    keys = ("method", "passed", "criteria", "reasons", "summary", "rules")
    detail = {k: gate[k] for k in keys if k in gate}
    text = json.dumps(detail, default=str)
    return {"ews.gate": "passed" if gate["passed"] else "failed", "ews.gate_detail": text[:4900]}
