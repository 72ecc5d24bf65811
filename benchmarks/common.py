"""What the benchmarks share: stage timing, reading a contract package with pyarrow alone,
cutting a package at a date (knowledge time), and comparing configs on training years."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import COLUMNS, ContractError, cut_package, find_table_file

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run (missing data, a package that cannot be read)."""


@dataclass
class StageTimes:
    """Wall-clock and CPU seconds per named stage, in the order the stages ran.

    CPU seconds (all threads of this process) are recorded beside wall-clock seconds because
    on a shared machine the wall clock also measures the neighbours' load: on an otherwise
    idle 2-core machine a stage takes about max(CPU / 2, its single-threaded part).
    """

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # the 1/5/15-minute load averages when each stage started and ended (the neighbours' load)
    loads: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        before = os.getloadavg()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0, time.process_time() - c0)
            self.loads[name] = (before, os.getloadavg())

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + wall
        self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started

    @property
    def cpu_total(self) -> float:
        return time.process_time() - self.cpu_started


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


def _as_dates(values: Sequence[date | str]) -> list[date]:
    return [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in values]


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


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:6.3f}" if isinstance(x, float) else f"{x!s:>6}"
