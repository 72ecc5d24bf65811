"""The Chicago (CPDP) benchmark: ``ews benchmark chicago``, or

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.chicago [DATA] [OUT]

DATA defaults to ../shared/data/chicago-cpdp-2018, OUT to ./chicago-benchmark. Runs the
experiment of ``models/experiments/chicago.yaml`` on the converted CPDP release, prints the
table of rules and models per label and test date and the targets (the reference figures
live here, not in the library); writes OUT/results.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
from benchmarks.common import StageTimes, _fmt
from models.steps import VS_RULE_KEYS  # the equal-volume fields `ews train` records

CHICAGO_CONFIG = Path(models.__file__).resolve().parent / "experiments" / "chicago.yaml"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chicago-cpdp-2018"
CHICAGO_RULES = ("cmpd", "miami_dade", "best_single")
RECORD_KEYS = (
    "test_date",
    "label",
    "method",
    "kind",
    "selected",
    "flagged",
    "tp",
    "fp",
    "precision",
    "recall",
    "auc",
)


@dataclass(frozen=True)
class Target:
    """One goal of the Chicago benchmark, checked on the model selected for a label,
    averaged over the test dates."""

    label: str
    what: str  # "auc" or "vs_rules.<rule>.<key>"
    at_least: float

    def value(self, records: Sequence[dict[str, Any]]) -> float | None:
        vals: list[float] = []
        for r in records:
            if r["kind"] != "model" or not r["selected"] or r["label"] != self.label:
                continue
            v: Any = r
            for part in self.what.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if v is not None:
                vals.append(float(v))
        return sum(vals) / len(vals) if vals else None

    def describe(self) -> str:
        if self.what == "auc":
            return f"label {self.label}: ROC AUC >= {self.at_least:g}"
        _, rule, key = self.what.split(".")
        words = {"pct_more_tp": "more true positives", "pct_fewer_fp": "fewer false positives"}
        return f"label {self.label}: at the {rule} rule's volume >= {self.at_least:g}% {words[key]}"


CHICAGO_TARGETS = (
    Target("sustained_or_force", "auc", 0.81),
    Target("sustained_or_force", "vs_rules.cmpd.pct_more_tp", 35.0),
    Target("sustained_or_force", "vs_rules.cmpd.pct_fewer_fp", 65.0),
    Target("any_complaint", "vs_rules.cmpd.pct_more_tp", 20.0),
    Target("sustained", "auc", 0.67),
)


@dataclass
class ChicagoResult:
    """What ``ews benchmark chicago`` measured: the records of results.json, the targets and
    what was chosen on training years."""

    records: list[dict[str, Any]]
    targets: list[dict[str, Any]]
    selection: list[dict[str, Any]]
    stages: dict[str, float]
    experiment: dict[str, Any]
    # per stage of this run (convert, experiment): wall s, CPU s, load average before, after
    timed: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "chosen_on_training_years": [
                {
                    k: s.get(k)
                    for k in ("label", "test_date", "chosen", "metric", "made_on", "decision")
                }
                for s in self.selection
            ],
            "stages_seconds": {k: round(v, 2) for k, v in self.stages.items()},
            "timed": self.timed,
        }


def benchmark_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The experiment's records in the benchmark's results.json form (see the brief in
    ``run_chicago``): the shared keys, and for models ``vs_rules`` keyed by rule name."""
    out: list[dict[str, Any]] = []
    for r in records:
        rec = {k: r.get(k) for k in RECORD_KEYS}
        if r.get("kind") == "model":
            rec["vs_rules"] = {
                name: {k: vs.get(k) for k in VS_RULE_KEYS}
                for name, vs in (r.get("vs_rules") or {}).items()
            }
        out.append(rec)
    return out


def run_chicago(
    data: Path,
    out: Path,
    *,
    config: Path | None = None,
    package: Path | None = None,
    progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> ChicagoResult:
    """The Chicago benchmark: convert the CPDP release in ``data``, run the experiment of
    ``models/experiments/chicago.yaml`` (or ``config``) on it and write ``out/results.json``
    (one record per test date, label and method), ``out/summary.json`` (targets, choices made
    on training years, stage times) and ``out/experiment.json`` (the full experiment result).

    Test as-of dates 2013-01-01 and 2014-01-01, trained on earlier January 1sts from 2005,
    12-month labels ``sustained``, ``sustained_or_force`` and ``any_complaint``, cohort of
    officers holding a rank at t, label maturity on, models chosen on inner validation
    splits inside the training years (never on the test dates). ``package`` reuses an
    already converted package folder instead of converting again.
    """
    from ews.adapters.cpdp import convert_cpdp
    from models.experiment import _json_safe, load_config, run_experiment

    times = StageTimes()
    note = on_stage or (lambda _s: None)
    config_path = Path(config or CHICAGO_CONFIG)
    cfg = load_config(config_path)
    if cfg.feature_spec and not Path(cfg.feature_spec).is_absolute():
        # a spec path in the config is relative to the config file
        spec_path = (config_path.parent / cfg.feature_spec).resolve()
        cfg = cfg.model_copy(update={"feature_spec": str(spec_path)})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if package is None:
            tmp = tempfile.TemporaryDirectory(prefix="ews-chicago-")
            package = Path(tmp.name)
            note("converting the CPDP files")
            with times.stage("convert"):
                convert_cpdp(Path(data), package, progress=progress)
        note("features, training and evaluation")
        with times.stage("experiment"):
            result = run_experiment(cfg, source=package, tracking=False, progress=progress)
    finally:
        if tmp is not None:
            tmp.cleanup()
    records = benchmark_records(result.records)
    targets = []
    for t in CHICAGO_TARGETS:
        v = t.value(records)
        targets.append(
            {
                "target": t.describe(),
                "label": t.label,
                "metric": t.what,
                "at_least": t.at_least,
                "value": v,
                "met": v is not None and v >= t.at_least,
                "short_by": None if v is None or v >= t.at_least else t.at_least - v,
            }
        )
    res = ChicagoResult(
        records=_json_safe(records),
        targets=_json_safe(targets),
        selection=_json_safe(result.selection),
        stages={**times.seconds, **{f"experiment:{k}": v for k, v in result.timings.items()}},
        experiment=_json_safe(result.to_dict()),
        timed=[
            {
                "stage": name,
                "seconds": round(wall, 1),
                "cpu_seconds": round(times.cpu_seconds[name], 1),
                "load_before": [round(x, 2) for x in times.loads[name][0]],
                "load_after": [round(x, 2) for x in times.loads[name][1]],
            }
            for name, wall in times.seconds.items()
        ],
    )
    (out / "results.json").write_text(json.dumps(res.records, indent=2))
    (out / "summary.json").write_text(json.dumps(_json_safe(res.summary()), indent=2))
    (out / "experiment.json").write_text(json.dumps(res.experiment, indent=2))
    return res


def format_chicago(result: ChicagoResult) -> str:
    """The printed table: per label and test date every rule and model, then the targets."""
    lines = [
        f"{'label':<19} {'test date':<11} {'method':<44} {'kind':<5} {'sel':<3} {'flag':>5} "
        f"{'TP':>5} {'FP':>5} {'prec':>6} {'recall':>6} {'AUC':>6} "
        f"{'vs cmpd: +TP%':>13} {'-FP%':>6}"
    ]
    for r in result.records:
        vs = (r.get("vs_rules") or {}).get("cmpd") or {}
        more, fewer = vs.get("pct_more_tp"), vs.get("pct_fewer_fp")
        lines.append(
            f"{r['label']:<19} {r['test_date']:<11} {r['method'][:44]:<44} {r['kind']:<5} "
            f"{'*' if r['selected'] else '':<3} {_fmt(r['flagged'])[-5:]:>5} "
            f"{_fmt(r['tp'])[-5:]:>5} {_fmt(r['fp'])[-5:]:>5} {_fmt(r['precision'])} "
            f"{_fmt(r['recall'])} {_fmt(r['auc'])} "
            f"{'' if more is None else f'{more:+.1f}':>13} "
            f"{'' if fewer is None else f'{fewer:.1f}':>6}"
        )
    lines.append("")
    from models.steps import TIE_RULE, describe_decision

    lines.append(
        f"Chosen on training years only (inner validation splits; near-ties: {TIE_RULE}), "
        "with the margin of each choice:"
    )
    for s in result.selection:
        lines.append(
            f"  {s['label']:<19} {s['test_date']}: "
            f"{describe_decision(s['chosen'], s.get('decision'))}"
        )
    lines.append("")
    lines.append("Targets (selected model, mean over the test dates):")
    for t in result.targets:
        v = t["value"]
        status = "met" if t["met"] else f"MISSED by {t['short_by']:.3g}" if v is not None else "n/a"
        shown = "-" if v is None else f"{v:.3f}"
        lines.append(f"  {t['target']:<70} {shown:>8}  {status}")
    if result.timed:
        lines += ["", f"Time of this run ({os.cpu_count()} cores):"]
    for t in result.timed:
        load = [", ".join(f"{x:g}" for x in t[k]) for k in ("load_before", "load_after")]
        lines.append(
            f"  {t['stage']:<10} {t['seconds']:>7.1f} s wall, {t['cpu_seconds']:.1f} s CPU "
            f"(this process); load average {load[0]} before, {load[1]} after"
        )
    if result.timed:
        lines.append(
            "  baseline, same run: the rules' figures in the table above (accuracy); no speed "
            "baseline is timed here (`ews benchmark train` times one: one thread, no fit cache)"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    data = Path(argv[0]) if argv else DEFAULT_DATA
    out = Path(argv[1]) if len(argv) > 1 else Path("chicago-benchmark")
    result = run_chicago(data, out, progress=True)
    print(format_chicago(result))
    print(f"\nwrote {out / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
