"""Ingest: validate a package, then store it as an immutable, content-addressed snapshot.

The snapshot id is a sha256 over the normalized content (canonical row order, canonical
column order, per-column hashes of values and null positions), so it does not depend on the
input format (CSV, gzip CSV or Parquet), on the row order or on the order of extra columns;
the short id is its first 12 hex digits. Re-ingesting identical content stores nothing.

Crash safety: the tables are written into a temporary folder inside the workspace
(``EWS_HOME/.tmp``), fsynced, then moved into ``snapshots/<agency>/<id>`` by one atomic
``os.rename``. A reader sees the whole snapshot or nothing; an ingest killed at any moment
(even ``kill -9``) leaves only an invisible temporary folder, which the next ingest removes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ews.contract import COLUMNS, TABLES, ContractError
from ews.processes import alive
from ews.store import Snapshot, Workspace
from ews.validate import Progress, Validation, validate_package

if TYPE_CHECKING:
    import pyarrow as pa

CONTRACT_VERSION = "1"
AGENCY_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
TMP_DIR = ".tmp"
# columns whose values are (nearly) all distinct: dictionary encoding only wastes time
_UNIQUE_COLUMNS = {"officers": ["officer_id"], "events": ["event_id"], "assignments": []}


class IngestRefused(Exception):
    """The package broke the contract: nothing was stored. Holds the validation."""

    def __init__(self, validation: Validation) -> None:
        super().__init__(f"{validation.package}: {validation.problem_count} problem(s)")
        self.validation = validation


@dataclass
class IngestResult:
    """What an ingest did: the snapshot (new or already there) and the validation."""

    snapshot: Snapshot
    created: bool
    validation: Validation
    seconds: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Agency names


def agency_name(name: str) -> str:
    """Check that ``name`` is a safe agency (folder) name: lower_snake_case, at most 64
    characters. Returns it; raises ValueError with the rule otherwise."""
    if not AGENCY_NAME.match(name) or len(name) > 64:
        raise ValueError(
            f"agency name {name!r} is not allowed: use lower_snake_case letters, digits and "
            "underscores, starting with a letter, at most 64 characters (e.g. chicago_pd)"
        )
    return name


def default_agency(package: Path) -> str:
    """The default agency name of a package: its folder name in lower_snake_case
    (``Chicago-CPDP 2018`` -> ``chicago_cpdp_2018``)."""
    words = re.findall(r"[a-z0-9]+", Path(package).resolve().name.lower())
    name = "_".join(words)
    if name and not name[0].isalpha():
        name = f"agency_{name}"
    return agency_name(name or "agency")


# --------------------------------------------------------------------------------------
# Content address


def _column_digest(col: pa.ChunkedArray) -> bytes:
    """sha256 of one column's values and null positions, independent of its chunking.

    Three streams, each fed chunk after chunk (so chunk boundaries leave no trace): one
    byte per row for validity, the byte length of each string, and the value bytes, with
    whatever lies under a null slot left out (strings) or zeroed (dates, integers).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    valid_h, lengths_h, data_h = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    is_str = pa.types.is_string(col.type)
    for chunk in col.chunks:
        n = len(chunk)
        valid = None
        if chunk.null_count:
            valid = pc.is_valid(chunk).to_numpy(zero_copy_only=False)
        valid_h.update(valid.tobytes() if valid is not None else b"\x01" * n)
        if is_str:
            offsets = np.frombuffer(chunk.buffers()[1], dtype="<i4")
            off = offsets[chunk.offset : chunk.offset + n + 1]
            lengths = np.diff(off)
            if valid is not None and lengths[~valid].any():  # bytes hidden under nulls
                chunk = pc.fill_null(chunk, "")
                offsets = np.frombuffer(chunk.buffers()[1], dtype="<i4")
                off = offsets[chunk.offset : chunk.offset + n + 1]
                lengths = np.diff(off)
            lengths_h.update(lengths.tobytes())
            buf = chunk.buffers()[2]
            if buf is not None and n:
                data_h.update(memoryview(buf)[int(off[0]) : int(off[-1])])
        else:
            width = chunk.type.bit_width // 8
            values = np.frombuffer(chunk.buffers()[1], dtype=f"<i{width}")
            values = values[chunk.offset : chunk.offset + n]
            if valid is not None:
                values = np.where(valid, values, 0)
            data_h.update(values.tobytes())
    head = f"{col.type}:{len(col)}".encode()
    return hashlib.sha256(head + valid_h.digest() + lengths_h.digest() + data_h.digest()).digest()


def content_digest(
    tables: dict[str, pa.Table],
    orders: dict[str, pa.Array],
    sorted_keys: dict[str, pa.ChunkedArray] | None = None,
) -> str:
    """The full sha256 (hex) of a package's normalized tables, each column hashed in the
    canonical row order ``orders`` gives (one column at a time, to spare memory).
    ``sorted_keys`` may hold a table's key column already in that order."""
    import pyarrow.compute as pc

    presorted = sorted_keys or {}
    outer = hashlib.sha256(f"ews-contract-{CONTRACT_VERSION}".encode())
    for name in TABLES:
        t = tables[name]
        outer.update(f"|{name}:{t.num_rows}".encode())
        for col in t.column_names:
            if col in _UNIQUE_COLUMNS[name] and name in presorted:
                ordered = presorted[name]
            else:
                ordered = pc.take(t.column(col), orders[name])
            digest = _column_digest(ordered)
            outer.update(col.encode() + b"=" + digest)
    return outer.hexdigest()


def canonical(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Contract columns first (contract order), then extra columns sorted by name."""
    out = {}
    for name, t in tables.items():
        extras = sorted(c for c in t.column_names if c not in COLUMNS[name])
        out[name] = t.select([*COLUMNS[name], *extras])
    return out


# --------------------------------------------------------------------------------------
# Writing


def _pandas_metadata(table: pa.Table, name: str) -> dict[bytes, bytes]:
    """Schema metadata that makes pandas read the snapshot as ``ews.contract.normalize``
    makes it (``string`` and ``Int32`` columns), without converting rows through pandas."""
    import pandas as pd
    import pyarrow as pa

    from ews.contract import normalize

    empty = normalize(
        pd.DataFrame({c: pd.Series([], dtype="string") for c in table.column_names}), name
    )
    meta = pa.Schema.from_pandas(empty, preserve_index=False).metadata
    return dict(meta or {})


def _write_table(table: pa.Table, path: Path, name: str) -> None:
    import pyarrow.parquet as pq

    table = table.replace_schema_metadata(_pandas_metadata(table, name))
    dictionary = [c for c in table.column_names if c not in _UNIQUE_COLUMNS[name]]
    pq.write_table(table, path, use_dictionary=dictionary, row_group_size=1 << 20)
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest(
    tables: dict[str, pa.Table], digest: str, agency: str, source: dict[str, Any]
) -> dict[str, Any]:
    import pyarrow.compute as pc

    from ews import __version__

    ev = tables["events"]
    counts = pc.value_counts(ev["event_type"]).to_pylist() if ev.num_rows else []
    by_type = {c["values"]: int(c["counts"]) for c in counts}

    def span(t: pa.Table, col: str) -> dict[str, str | None]:
        mm = pc.min_max(t[col]).as_py() if t.num_rows else {"min": None, "max": None}
        return {k: (v.isoformat() if v is not None else None) for k, v in mm.items()}

    return {
        "id": digest[:12],
        "content_sha256": digest,
        "agency": agency,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "source": source,
        "rows": {name: tables[name].num_rows for name in TABLES},
        "officers": tables["officers"].num_rows,
        "events_by_type": dict(sorted(by_type.items())),
        "coverage": {
            "event_date": span(ev, "event_date"),
            "reported_date": span(ev, "reported_date"),
            "appointed_date": span(tables["officers"], "appointed_date"),
        },
        "columns": {name: tables[name].column_names for name in TABLES},
        "contract_version": CONTRACT_VERSION,
        "ews_version": __version__,
    }


def clean_temp(workspace: Workspace) -> list[Path]:
    """Remove temporary folders left by killed ingests (those whose process is gone)."""
    removed: list[Path] = []
    tmp = workspace.home / TMP_DIR
    if not tmp.is_dir():
        return removed
    for p in tmp.iterdir():
        m = re.match(r"^ingest-(\d+)-", p.name)
        if m and alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            continue  # another ingest is writing it now
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def store_tables(
    tables: dict[str, pa.Table],
    orders: dict[str, pa.Array],
    agency: str,
    source: dict[str, Any],
    workspace: Workspace | None = None,
    progress: Progress | None = None,
    sorted_keys: dict[str, pa.ChunkedArray] | None = None,
) -> tuple[Snapshot, bool]:
    """Store valid normalized tables as a snapshot of ``agency``; return it and whether
    it is new (False: a snapshot with the same content already existed).

    ``orders`` gives each table's canonical row order (see :class:`ews.validate.Validation`)
    for the content address; the files keep the order the tables have, so that writing
    and hashing run side by side."""
    agency_name(agency)
    ws = workspace or Workspace()
    say = progress or (lambda _msg: None)
    clean_temp(ws)
    tables = canonical(tables)
    tmp = ws.home / TMP_DIR / f"ingest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        say("hashing and writing snapshot")
        with ThreadPoolExecutor(max_workers=2) as pool:
            digest_f = pool.submit(content_digest, tables, orders, sorted_keys)
            writes = [
                pool.submit(_write_table, tables[name], tmp / f"{name}.parquet", name)
                for name in ("events", "officers", "assignments")
            ]
            digest = digest_f.result()
            final = ws.snapshots_dir / agency / digest[:12]
            if (final / "manifest.json").is_file():
                for w in writes:
                    w.cancel()
                pool.shutdown(wait=True)
                return _existing(ws, agency, final, digest), False
            for w in writes:
                w.result()
        manifest = _manifest(tables, digest, agency, source)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _fsync(tmp / "manifest.json")
        _fsync(tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if (final / "manifest.json").is_file():  # a concurrent ingest of the same content
                return _existing(ws, agency, final, digest), False
            raise
        _fsync(final.parent)
        return Snapshot(agency, final.name, final), True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _existing(ws: Workspace, agency: str, final: Path, digest: str) -> Snapshot:
    snap = Snapshot(agency, final.name, final)
    if snap.manifest.get("content_sha256") != digest:
        raise RuntimeError(f"snapshot id collision at {final}: different content, same short id")
    return snap


def ingest_package(
    path: Path,
    agency: str | None = None,
    workspace: Workspace | None = None,
    source: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Validate the package at ``path`` and store it as a snapshot of ``agency`` (default:
    the folder's name in lower_snake_case). Raises :class:`IngestRefused` (nothing stored)
    when it breaks the contract, ValueError for a bad agency name."""
    import time

    path = Path(path)
    name = agency_name(agency) if agency is not None else default_agency(path)
    t0 = time.perf_counter()
    validation = validate_package(path, progress=progress)
    t1 = time.perf_counter()
    if not validation.ok:
        raise IngestRefused(validation)
    src = source or {
        "path": str(path.resolve()),
        "format": "contract",
        "files": {k: v.name for k, v in validation.files.items()},
    }
    snap, created = store_tables(
        validation.tables,
        validation.orders,
        name,
        src,
        workspace,
        progress,
        sorted_keys=validation.sorted_keys,
    )
    t2 = time.perf_counter()
    return IngestResult(snap, created, validation, {"validate": t1 - t0, "store": t2 - t1})


def ingest_cpdp(
    src: Path,
    agency: str = "chicago",
    workspace: Workspace | None = None,
    progress: Progress | None = None,
) -> tuple[IngestResult, Any]:
    """Convert the Chicago CPDP files in ``src`` (ews.adapters.cpdp) into a temporary
    package, then ingest it. Returns the ingest result and the converter's report."""
    import tempfile

    try:
        from ews.adapters.cpdp import convert_cpdp
    except ImportError as e:  # pragma: no cover - until the adapter exists
        raise ContractError(f"the CPDP adapter is not available: {e}") from None
    ws = workspace or Workspace()
    with tempfile.TemporaryDirectory(prefix="cpdp-") as tmp:
        out = Path(tmp) / "package"
        out.mkdir()
        if progress:
            progress("converting CPDP files")
        report = convert_cpdp(Path(src), out)
        source = {"path": str(Path(src).resolve()), "format": "cpdp"}
        result = ingest_package(out, agency, ws, source=source, progress=progress)
    return result, report


def journal_ingest(result: IngestResult, source: str) -> None:
    """Record a new snapshot in the application database's ingest journal. An identical
    re-ingest (nothing new stored) is not journaled: it changes nothing at all."""
    if not result.created:
        return
    from ews.db import open_app_database

    snap = result.snapshot
    db = open_app_database()
    try:
        db.record_ingest(snap.agency, snap.id, True, source, snap.manifest["rows"])
    finally:
        db.dispose()
