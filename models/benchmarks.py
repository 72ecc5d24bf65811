"""Benchmarks: the triage-peer speed experiment and the Chicago (CPDP) benchmark.

Both run the project's own pieces end to end (features.build, features.labels,
models.splitter, models.grid, models.metrics, models.rules) and print measured figures;
nothing here is a timed test.

``ews benchmark triage-peer``
    Re-runs, on the synthetic agency ``triage-peer-10k``, the experiment that the peer
    system triage ran there (146.5 s end to end, precision@10% about 0.705): cohort of
    officers appointed before t and not separated, label "a sustained complaint or a
    use-of-force report in the year after t", the 12 features of
    ``models/specs/triage_peer.yaml``, test dates 2019-2022 each trained on as-of dates every
    6 months over up to 3 years (labels from 2018 on), and 16 models (per test date
    logistic regression C 0.01 and 1, random forest 200 trees, max_depth 5 and 10,
    min_samples_leaf 10).

    What makes it fast: the CSV package is read with pyarrow straight into a normalized
    Parquet package (no pandas round trip, no validation pass: it is a trusted benchmark
    input), features for all as-of dates come from one DuckDB query plan, and each pair of
    forests that differ only in depth is fitted once, at depth 10, the depth-5 forest being
    cut from it (:mod:`models.forest`: a genuine 200-tree depth-5 random forest, the same
    distribution of trees as a separate fit).

``ews benchmark chicago``
    See :func:`run_chicago`.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import COLUMNS, ContractError, find_table_file

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SPECS = Path(__file__).resolve().parent / "specs"
TRIAGE_PEER_SPEC = SPECS / "triage_peer.yaml"
TRIAGE_PEER_TEST_DATES = ("2019-01-01", "2020-01-01", "2021-01-01", "2022-01-01")
TRIAGE_PEER_GRID: list[dict[str, Any]] = [
    {"name": "lr", "estimator": "logistic_regression", "params": {"C": [0.01, 1.0]}},
    {
        "name": "rf",
        "estimator": "random_forest",
        "params": {"n_estimators": [200], "max_depth": [5, 10], "min_samples_leaf": [10]},
    },
]
# triage 6.0.0 on the same data and machine kind (data/triage-peer-10k/README.md)
TRIAGE_SECONDS = 146.5
TRIAGE_PRECISION_AT_10 = 0.705


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run (missing data, a package that cannot be read)."""


# --------------------------------------------------------------------------- timing


@dataclass
class StageTimes:
    """Wall-clock and CPU seconds per named stage, in the order the stages ran.

    CPU seconds (all threads of this process) are recorded beside wall-clock seconds because
    on a shared machine the wall clock also measures the neighbours' load: on an otherwise
    idle 2-core machine a stage takes about max(CPU / 2, its single-threaded part).
    """

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0, time.process_time() - c0)

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + wall
        self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started

    @property
    def cpu_total(self) -> float:
        return time.process_time() - self.cpu_started


# --------------------------------------------------------------------------- reading


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {"str": pa.string(), "date": pa.date32(), "int": pa.int32()}[kind]


def _read_arrow(path: Path, table: str) -> pa.Table:
    """One table of a contract package as Arrow, contract columns cast to their types."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    kinds = COLUMNS[table]
    if path.suffix == ".parquet":
        t = pq.read_table(path)
    else:
        with pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16)) as reader:
            header = reader.schema
        types = {c: (_arrow_type(kinds[c]) if c in kinds else pa.string()) for c in header.names}
        t = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, null_values=[""]
            ),
        )
    cols: dict[str, pa.Array] = {}
    for col, kind in kinds.items():
        typ = _arrow_type(kind)
        cols[col] = t.column(col).cast(typ) if col in t.column_names else pa.nulls(len(t), typ)
    if table == "events":
        import pyarrow.compute as pc

        cols["reported_date"] = pc.coalesce(cols["reported_date"], cols["event_date"])
    for col in t.column_names:
        if col not in kinds:
            cols[col] = t.column(col).cast(pa.string())
    return pa.table(cols)


def arrow_package(src: Path, dst: Path) -> Path:
    """Write the contract package in ``src`` (CSV, CSV.gz or Parquet) as a normalized Parquet
    package in ``dst`` with pyarrow alone, for benchmarks.

    Unlike ``ews ingest`` this does not validate the package against the contract's rules
    (it trusts a known benchmark input) and stores no snapshot; it is several times faster
    on a million events. Missing optional columns are added empty; ``reported_date``
    defaults to ``event_date``.
    """
    import pyarrow.parquet as pq

    src = Path(src)
    if not src.is_dir():
        raise BenchmarkError(f"{src}: not a folder (expected a contract package)")
    dst.mkdir(parents=True, exist_ok=True)
    for table in ("officers", "events", "assignments"):
        path = find_table_file(src, table)
        if path is None:
            if table == "assignments":
                from ews.contract import empty_table, write_table

                write_table(empty_table(table), dst / "assignments.parquet", table)
                continue
            raise ContractError(f"{src}: no {table}.csv, {table}.csv.gz or {table}.parquet")
        pq.write_table(_read_arrow(path, table), dst / f"{table}.parquet")
    return dst


# --------------------------------------------------------------------------- helpers


def _as_dates(values: Sequence[date | str]) -> list[date]:
    return [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in values]


def _matrix(frame: pd.DataFrame, columns: Sequence[str]) -> Any:
    import numpy as np

    return frame[list(columns)].to_numpy(dtype=np.float32, na_value=np.nan)


@dataclass
class TriagePeerResult:
    """What ``ews benchmark triage-peer`` measured."""

    stages: dict[str, float]
    cpu_stages: dict[str, float]
    total_seconds: float
    cpu_seconds: float
    table: pd.DataFrame  # test_date, model, n, base_rate, precision@10%, recall@10%, roc_auc
    splits: list[dict[str, Any]]
    rows: dict[str, int]

    def mean_table(self) -> pd.DataFrame:
        cols = ["precision@10%", "recall@10%", "roc_auc"]
        return self.table.groupby("model", sort=False)[cols].mean().reset_index()

    def as_dict(self) -> dict[str, Any]:
        return {
            "stages_seconds": {k: round(v, 3) for k, v in self.stages.items()},
            "stages_cpu_seconds": {k: round(v, 3) for k, v in self.cpu_stages.items()},
            "total_seconds": round(self.total_seconds, 3),
            "total_cpu_seconds": round(self.cpu_seconds, 3),
            "rows": self.rows,
            "splits": self.splits,
            "results": json.loads(self.table.to_json(orient="records", date_format="iso")),
            "mean": json.loads(self.mean_table().to_json(orient="records")),
            "triage": {"seconds": TRIAGE_SECONDS, "precision@10%": TRIAGE_PRECISION_AT_10},
        }


def run_triage_peer(
    data: Path,
    *,
    seed: int = 0,
    threads: int = 2,
    share_depths: bool = True,
    workdir: Path | None = None,
    test_dates: Sequence[date | str] = TRIAGE_PEER_TEST_DATES,
    first_train_date: date | str = "2018-01-01",
    on_stage: Callable[[str], None] | None = None,
) -> TriagePeerResult:
    """Run the triage-peer experiment on the package in ``data`` (see the module docstring).

    ``threads`` is used by DuckDB and by the random forests (``n_jobs``); ``share_depths``
    cuts the depth-5 forests from the depth-10 ones (False fits each from scratch, to
    measure the difference). Every stage's wall-clock time is recorded.
    """
    times = StageTimes()
    t0, c0 = time.perf_counter(), time.process_time()
    import ibis
    import pandas as pd

    from features.build import build_features
    from features.labels import build_labels
    from features.spec import load_spec
    from models.forest import fit_candidates
    from models.grid import expand_grid
    from models.inputs import ID_COLUMNS, numeric_feature_columns
    from models.metrics import evaluate_scores
    from models.splitter import TemporalSplitter

    times.add("imports", time.perf_counter() - t0, time.process_time() - c0)
    note = on_stage or (lambda _s: None)
    splitter = TemporalSplitter(
        test_dates=list(test_dates),
        label_window="1y",
        train_history="3y",
        train_every="6m",
        first_train_date=first_train_date,
    )
    splits = splitter.split()
    candidates = expand_grid(TRIAGE_PEER_GRID, seed=seed)
    spec = load_spec(TRIAGE_PEER_SPEC)
    all_dates = sorted({d for s in splits for d in [*s.train_as_of, s.test_as_of]})
    tmp = tempfile.TemporaryDirectory(prefix="ews-triage-peer-", dir=workdir)
    try:
        pkg = Path(tmp.name)
        note("read")
        with times.stage("read package"):
            arrow_package(Path(data), pkg)
        note("features")
        with times.stage("features"):
            con = ibis.duckdb.connect(threads=max(1, threads))
            feats = build_features(pkg, all_dates, spec=spec, engine=con)
            feats["as_of_date"] = pd.to_datetime(feats["as_of_date"]).dt.date
        columns = [c for c in spec.column_names if c in feats.columns]
        inputs = numeric_feature_columns(feats[[*ID_COLUMNS, *columns]])
        if len(columns) != 12 or columns != inputs:
            raise BenchmarkError(f"expected the 12 triage-peer features, got {columns}")
        note("labels")
        with times.stage("labels"):
            test_labels = build_labels(
                pkg, [s.test_as_of for s in splits], "sustained_or_force", engine=con
            )
            train_labels = {
                s.test_as_of: build_labels(
                    pkg, s.train_as_of, "sustained_or_force", known_by=s.label_known_by, engine=con
                )
                for s in splits
            }
        records: list[dict[str, Any]] = []
        rows = {"feature_rows": len(feats), "train_rows": 0, "test_rows": 0}
        for s in splits:
            note(f"fit {s.test_as_of}")
            t0, c0 = time.perf_counter(), time.process_time()
            train = _join_labels(feats, train_labels[s.test_as_of], s.train_as_of)
            test = _join_labels(feats, test_labels, [s.test_as_of])
            x_tr, y_tr = _matrix(train, columns), train["label"].to_numpy()
            x_te, y_te = _matrix(test, columns), test["label"].to_numpy()
            rows["train_rows"] += len(train)
            rows["test_rows"] += len(test)
            models = fit_candidates(
                candidates, x_tr, y_tr, n_jobs=threads, share_depths=share_depths
            )
            t1, c1 = time.perf_counter(), time.process_time()
            times.add("fit", t1 - t0, c1 - c0)
            scores = {name: m.predict_proba(x_te)[:, 1] for name, m in models.items()}
            t2, c2 = time.perf_counter(), time.process_time()
            times.add("predict", t2 - t1, c2 - c1)
            for name, score in scores.items():
                m = evaluate_scores(y_te, score, ks=(10,), seed=seed)
                records.append(
                    {
                        "test_date": s.test_as_of.isoformat(),
                        "model": name,
                        "n_train": len(train),
                        "n": m["n"],
                        "base_rate": m["base_rate"],
                        "precision@10%": m["precision@10%"],
                        "recall@10%": m["recall@10%"],
                        "roc_auc": m["roc_auc"],
                    }
                )
            times.add("evaluate", time.perf_counter() - t2, time.process_time() - c2)
    finally:
        tmp.cleanup()
    return TriagePeerResult(
        stages=times.seconds,
        cpu_stages=times.cpu_seconds,
        total_seconds=times.total,
        cpu_seconds=times.cpu_total,
        table=pd.DataFrame(records),
        splits=[s.as_dict() for s in splits],
        rows=rows,
    )


def _join_labels(feats: pd.DataFrame, labels: pd.DataFrame, dates: Sequence[date]) -> pd.DataFrame:
    """Feature rows at ``dates`` with their label (inner join on officer and as-of date)."""
    import pandas as pd

    lab = labels[["officer_id", "as_of_date", "label"]].copy()
    lab["as_of_date"] = pd.to_datetime(lab["as_of_date"]).dt.date
    part = feats[feats["as_of_date"].isin(set(dates))]
    out = part.merge(lab, on=["officer_id", "as_of_date"], how="inner", validate="one_to_one")
    return out.sort_values(["as_of_date", "officer_id"], kind="stable").reset_index(drop=True)


def format_triage_peer(result: TriagePeerResult) -> str:
    """A plain-text report: stage times, per-date table and means, against triage."""
    lines = [f"{'stage':<16} {'wall s':>7} {'CPU s':>7}"]
    for k, v in result.stages.items():
        lines.append(f"{k:<16} {v:7.2f} {result.cpu_stages.get(k, 0.0):7.2f}")
    lines.append(
        f"{'total':<16} {result.total_seconds:7.2f} {result.cpu_seconds:7.2f}"
        f"   (triage: {TRIAGE_SECONDS} s wall)"
    )
    lines.append("")
    head = f"{'test date':<11} {'model':<54} {'n':>6} {'p@10%':>6} {'r@10%':>6} {'AUC':>6}"
    lines.append(head)
    for d in result.table.to_dict("records"):
        lines.append(
            f"{d['test_date']:<11} {d['model']:<54} {d['n']:>6} {_fmt(d['precision@10%'])} "
            f"{_fmt(d['recall@10%'])} {_fmt(d['roc_auc'])}"
        )
    for d in result.mean_table().to_dict("records"):
        lines.append(
            f"{'mean':<11} {d['model']:<54} {'':>6} {_fmt(d['precision@10%'])} "
            f"{_fmt(d['recall@10%'])} {_fmt(d['roc_auc'])}"
        )
    lines.append(f"(triage: precision@10% about {TRIAGE_PRECISION_AT_10}, ROC AUC 0.74-0.75)")
    return "\n".join(lines)


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:6.3f}" if isinstance(x, float) else f"{x!s:>6}"


# --------------------------------------------------------------------------- Chicago

CHICAGO_CONFIG = Path(__file__).resolve().parent / "experiments" / "chicago.yaml"
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
VS_RULE_KEYS = ("flagged", "tp", "fp", "pct_more_tp", "pct_fewer_fp", "ci95_pct_more_tp")


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

    def summary(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "chosen_on_training_years": [
                {k: s.get(k) for k in ("label", "test_date", "chosen", "metric", "made_on")}
                for s in self.selection
            ],
            "stages_seconds": {k: round(v, 2) for k, v in self.stages.items()},
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
    )
    (out / "results.json").write_text(json.dumps(res.records, indent=2))
    (out / "summary.json").write_text(json.dumps(_json_safe(res.summary()), indent=2))
    (out / "experiment.json").write_text(json.dumps(res.experiment, indent=2))
    return res


def cut_package(src: Path, dst: Path, t: date | str) -> Path:
    """Write the normalized package ``src`` as it was known at ``t`` (CONTRACT.md, knowledge
    time) to ``dst``: events reported on or after t deleted, findings dated on or after t
    blanked with their date, officers appointed on or after t deleted with their rows,
    assignments starting on or after t deleted, separation and end dates on or after t
    blanked. An experiment on the cut package can use nothing learned after t."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    day = _as_dates([t])[0]
    cut = pa.scalar(day, pa.date32())
    dst.mkdir(parents=True, exist_ok=True)
    officers = pq.read_table(src / "officers.parquet")
    officers = officers.filter(pc.less(officers["appointed_date"], cut))
    sep = officers["separation_date"]
    officers = officers.set_column(
        officers.schema.get_field_index("separation_date"),
        "separation_date",
        pc.if_else(pc.less(sep, cut), sep, pa.nulls(len(sep), pa.date32())),
    )
    keep = officers["officer_id"]
    events = pq.read_table(src / "events.parquet")
    events = events.filter(
        pc.and_(pc.less(events["reported_date"], cut), pc.is_in(events["officer_id"], keep))
    )
    known = pc.fill_null(pc.less(events["finding_date"], cut), False)
    for col in ("finding", "finding_date", "outcome"):
        i = events.schema.get_field_index(col)
        c = events[col]
        events = events.set_column(i, col, pc.if_else(known, c, pa.nulls(len(c), c.type)))
    tables = {"officers": officers, "events": events}
    if (src / "assignments.parquet").is_file():
        a = pq.read_table(src / "assignments.parquet")
        a = a.filter(pc.and_(pc.less(a["start_date"], cut), pc.is_in(a["officer_id"], keep)))
        end = a["end_date"]
        a = a.set_column(
            a.schema.get_field_index("end_date"),
            "end_date",
            pc.if_else(pc.less(end, cut), end, pa.nulls(len(end), pa.date32())),
        )
        tables["assignments"] = a
    for name, table in tables.items():
        pq.write_table(table, dst / f"{name}.parquet")
    return dst


def compare_on_training_years(
    package: Path,
    configs: dict[str, Path],
    cut: date | str = "2013-01-01",
    test_dates: Sequence[str] = ("2010-01-01", "2011-01-01"),
    n_boot: int = 200,
) -> pd.DataFrame:
    """Compare experiment configs (for example feature specs) without looking at the test
    dates: on ``package`` cut at ``cut`` (the first test date), with validation test dates
    whose label windows end well before it. One row per config, label and test date with the
    selected model's ROC AUC and its gain over the CMPD rule at equal volume."""
    import pandas as pd

    from models.experiment import load_config, run_experiment

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ews-cut-") as tmp:
        cut_pkg = cut_package(Path(package), Path(tmp), cut)
        for name, path in configs.items():
            cfg = load_config(path)
            splitter = cfg.splitter.model_copy(update={"test_dates": list(_as_dates(test_dates))})
            cfg = cfg.model_copy(update={"splitter": splitter, "n_boot": n_boot})
            result = run_experiment(cfg, source=cut_pkg, tracking=False, progress=False)
            for r in result.records:
                if r["kind"] == "model" and r["selected"]:
                    cmpd = (r.get("vs_rules") or {}).get("cmpd") or {}
                    rows.append(
                        {
                            "config": name,
                            "label": r["label"],
                            "test_date": r["test_date"],
                            "model": r["method"],
                            "auc": r.get("auc"),
                            "cmpd_pct_more_tp": cmpd.get("pct_more_tp"),
                            "cmpd_pct_fewer_fp": cmpd.get("pct_fewer_fp"),
                        }
                    )
    return pd.DataFrame(rows)


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
    lines.append("Chosen on training years only (inner validation splits):")
    for s in result.selection:
        lines.append(f"  {s['label']:<19} {s['test_date']}: {s['chosen']}")
    lines.append("")
    lines.append("Targets (selected model, mean over the test dates):")
    for t in result.targets:
        v = t["value"]
        status = "met" if t["met"] else f"MISSED by {t['short_by']:.3g}" if v is not None else "n/a"
        shown = "-" if v is None else f"{v:.3f}"
        lines.append(f"  {t['target']:<70} {shown:>8}  {status}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def register(app: Any) -> None:
    """Add ``ews benchmark triage-peer`` and ``ews benchmark chicago`` to the ``ews`` app."""
    import typer

    bench = typer.Typer(
        help=(
            "Measured benchmarks: the triage-peer speed experiment and the Chicago (CPDP) "
            "benchmark. They print measured figures; nothing is tuned on test dates."
        ),
        no_args_is_help=True,
    )

    def one_line(func: Any) -> Any:
        """Put the docstring on one line so the terminal wraps it once."""
        func.__doc__ = " ".join((func.__doc__ or "").split())
        return func

    @bench.command("triage-peer")
    @one_line
    def triage_peer_cmd(
        data: Path = typer.Option(
            ...,
            "--data",
            help="The triage-peer-10k contract package (folder with officers and events).",
            exists=True,
            file_okay=False,
        ),
        threads: int = typer.Option(
            2, "--threads", min=1, help="Threads for DuckDB and the random forests."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the models and tie-breaking."),
        share_depths: bool = typer.Option(
            True,
            "--share-depths/--no-share-depths",
            help="Cut the depth-5 forests from the depth-10 ones (same distribution of "
            "trees, one fit) or fit each from scratch.",
        ),
        json_out: Path | None = typer.Option(
            None, "--json", help="Also write the figures as JSON to this file."
        ),
    ) -> None:
        """Re-run triage's experiment on triage-peer-10k (cohort, label, 12 features, 4 test
        dates, 16 models) end to end and print stage times and precision@10%, recall@10% and
        ROC AUC per test date and model, against triage's 146.5 s and 0.705."""
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("starting") as status:
            result = run_triage_peer(
                data,
                seed=seed,
                threads=threads,
                share_depths=share_depths,
                on_stage=lambda s: status.update(s),
            )
        typer.echo(format_triage_peer(result))
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result.as_dict(), indent=2))

    @bench.command("chicago")
    @one_line
    def chicago_cmd(
        data: Path = typer.Option(
            ...,
            "--data",
            help="The CPDP 2018 folder (cpd_officers.csv.gz, cpd_allegations.csv.gz, ...).",
            exists=True,
            file_okay=False,
        ),
        out: Path = typer.Option(
            ..., "--out", help="Folder for results.json, summary.json and experiment.json."
        ),
        config: Path | None = typer.Option(
            None,
            "--config",
            help="Experiment YAML (default: the shipped models/experiments/chicago.yaml).",
            exists=True,
            dir_okay=False,
        ),
        package: Path | None = typer.Option(
            None,
            "--package",
            help="Reuse an already converted package folder instead of converting DATA.",
            exists=True,
            file_okay=False,
        ),
    ) -> None:
        """Run the Chicago benchmark: convert CPDP, train on 2005+ as-of dates, test at
        2013-01-01 and 2014-01-01 for three 12-month labels, compare the models with the
        CMPD-style, Miami-Dade-style and best single rules at equal volume, print the table
        and the targets, and write OUT/results.json."""
        from rich.console import Console

        console = Console(stderr=True)
        result = run_chicago(
            data,
            out,
            config=config,
            package=package,
            progress=True,
            on_stage=lambda s: console.print(f"[bold]{s}[/bold]"),
        )
        typer.echo(format_chicago(result))
        typer.echo(f"\nwrote {Path(out) / 'results.json'}")

    app.add_typer(bench, name="benchmark")
