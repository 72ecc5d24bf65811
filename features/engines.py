"""Engines that execute the compiled feature expressions: DuckDB (default) and Spark.

Both are reached through Ibis, so the cohort, feature and label definitions in
:mod:`features.compile` are written once and run unchanged on either. DuckDB runs in process
on the snapshot's Parquet files, within ``EWS_MEMORY_LIMIT`` and spilling to ``EWS_TEMP_DIR``
beyond it; Spark uses a session for ``EWS_SPARK_MASTER`` (default ``local[2]``; driver memory
``EWS_SPARK_DRIVER_MEMORY``, default 1g), reusing the active one if there is one (tests share
one per session).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import CATEGORY_GROUP, COLUMNS, ContractError

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

    from ews.store import Snapshot

ENGINES = ("duckdb", "spark")
# the columns each computation reads (extra package columns are never touched)
USED = {
    "officers": ["officer_id", "appointed_date", "separation_date", "birth_year"],
    "events": [
        "officer_id",
        "event_type",
        "reported_date",
        "category",
        "finding",
        "finding_date",
        "case_id",
    ],
    "assignments": ["officer_id", "kind", "value", "start_date", "end_date"],
}
_IBIS_TYPES = {"str": "string", "date": "date", "int": "int32"}


def package_folder(source: Snapshot | str | Path) -> Path:
    """The folder of a normalized package: a Snapshot's path, or the folder given."""
    path = source.path if hasattr(source, "path") else Path(source)
    if not (path / "officers.parquet").is_file() or not (path / "events.parquet").is_file():
        raise ContractError(
            f"{path}: not a normalized package (needs officers.parquet and events.parquet; "
            "run `ews ingest` to make a snapshot, or pass a snapshot)"
        )
    return path


def spark_session() -> Any:
    """The active Spark session, or a new local one for ``EWS_SPARK_MASTER``."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "engine 'spark' needs pyspark: pip install 'ews[spark]' (and Java 17)"
        ) from e
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return (
        SparkSession.builder.master(os.environ.get("EWS_SPARK_MASTER", "local[2]"))
        .appName("ews-features")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", os.environ.get("EWS_SPARK_PARTITIONS", "8"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.codegen.wholeStage", os.environ.get("EWS_SPARK_CODEGEN", "true"))
        .config("spark.driver.memory", os.environ.get("EWS_SPARK_DRIVER_MEMORY", "1g"))
        .getOrCreate()
    )


def connect(engine: str | BaseBackend = "duckdb") -> BaseBackend:
    """An Ibis backend for ``engine`` (``duckdb`` or ``spark``), or the backend given."""
    import ibis

    if not isinstance(engine, str):
        return engine
    if engine == "duckdb":
        return ibis.duckdb.connect(**duckdb_config())
    if engine == "spark":
        return ibis.pyspark.connect(spark_session())
    raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")


def duckdb_config() -> dict[str, Any]:
    """DuckDB's settings from ews settings: threads (``EWS_THREADS``), the memory it may
    hold (``EWS_MEMORY_LIMIT``, default DuckDB's 80% of RAM) and the folder it spills to
    beyond that (``EWS_TEMP_DIR``, default ``ews-duckdb-<pid>`` in the system temp folder;
    DuckDB creates it when it first spills and removes it when the connection closes)."""
    import tempfile

    from ews.settings import get_settings

    s = get_settings()
    temp = s.temp_dir or Path(tempfile.gettempdir()) / f"ews-duckdb-{os.getpid()}"
    config: dict[str, Any] = {"threads": max(1, s.threads), "temp_directory": str(temp)}
    if s.memory_limit:
        config["memory_limit"] = s.memory_limit
    return config


@dataclass
class Tables:
    """The package's tables as Ibis expressions (only the columns features read); ``con`` is
    None for tables bound to no backend (features.plan compiles over those)."""

    officers: ir.Table
    events: ir.Table
    assignments: ir.Table
    con: BaseBackend | None = None


def load_tables(con: BaseBackend, folder: Path) -> Tables:
    """Register the package's Parquet files with the backend (assignments may be missing)."""
    import ibis

    out: dict[str, ir.Table] = {}
    for name, cols in USED.items():
        path = folder / f"{name}.parquet"
        schema = {c: _IBIS_TYPES[COLUMNS[name][c]] for c in cols}
        if path.is_file():
            raw = con.read_parquet(str(path))
            missing = [c for c in cols if c not in raw.columns]
            if missing:
                raise ContractError(f"{path}: missing columns {', '.join(missing)}")
            picked = [raw[c].cast(schema[c]) for c in cols]
            if name == "events":  # optional (docs/contract.md): empty in older packages
                picked.append(
                    (
                        raw[CATEGORY_GROUP].cast("string")
                        if CATEGORY_GROUP in raw.columns
                        else ibis.null().cast("string")
                    ).name(CATEGORY_GROUP)
                )
            t = raw.select(*picked)
        else:
            # an agency without assignments: an empty table of the right types
            t = temp_table(con, ibis.schema(schema).to_pyarrow().empty_table())
        out[name] = t
    return Tables(con=con, **out)


_SPARK_DDL = {"date32[day]": "DATE", "string": "STRING", "int32": "INT", "large_string": "STRING"}


def temp_table(con: BaseBackend, table: Any) -> ir.Table:
    """A small Arrow table as a temporary table of the backend (DuckDB temp table, Spark
    temp view), visible to every expression on it, cached ones included."""
    name = f"ews_tmp_{uuid.uuid4().hex}"
    if con.name == "pyspark":
        ddl = ", ".join(f"`{f.name}` {_SPARK_DDL[str(f.type)]}" for f in table.schema)
        rows = [tuple(r.values()) for r in table.to_pylist()]
        spark_session().createDataFrame(rows, schema=ddl).createOrReplaceTempView(name)
        return con.table(name)
    return con.create_table(name, table, temp=True)


def execute(expr: ir.Table) -> Any:
    """Run an expression on its backend and return a pandas frame (through Arrow, which is
    much faster than Ibis's own conversion for wide tables; dates become datetime64)."""
    return expr.to_pyarrow().to_pandas(date_as_object=False)
