"""The workspace store: immutable, content-addressed snapshots of each agency's data.

Layout under ``EWS_HOME``::

    snapshots/<agency>/<snapshot_id>/officers.parquet    normalized tables (ews.contract)
                                     events.parquet
                                     assignments.parquet
                                     manifest.json        id, agency, created_at, row counts,
                                                          date coverage, source
    app.db                                               application database (SQLite)
    mlflow.db                                            MLflow tracking and registry

A snapshot folder appears by one atomic rename of a fully written temporary folder, so a
reader never sees half a snapshot and an ingest killed at any moment leaves the store as it
was. The newest snapshot of an agency (by ``created_at`` in its manifest) is its current one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ews.contract import TABLES, Package, read_normalized
from ews.settings import Settings, get_settings


class StoreError(LookupError):
    """The workspace has no such agency or snapshot."""


@dataclass(frozen=True)
class Snapshot:
    agency: str
    id: str
    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.path / "manifest.json").read_text())
        return result

    def table_path(self, table: str) -> Path:
        if table not in TABLES:
            raise KeyError(table)
        return self.path / f"{table}.parquet"

    def read(self) -> Package:
        return read_normalized(self.path)


class Workspace:
    def __init__(self, home: Path | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.home = Path(home) if home is not None else self.settings.home
        self.snapshots_dir = self.home / "snapshots"

    def agencies(self) -> list[str]:
        if not self.snapshots_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.snapshots_dir.iterdir() if p.is_dir() and self.snapshots(p.name)
        )

    def snapshots(self, agency: str) -> list[Snapshot]:
        """Every complete snapshot of an agency, oldest first."""
        folder = self.snapshots_dir / agency
        if not folder.is_dir():
            return []
        snaps = [
            Snapshot(agency, p.name, p)
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()
        ]
        return sorted(snaps, key=lambda s: (s.manifest.get("created_at", ""), s.id))

    def snapshot(self, agency: str | None = None, snapshot_id: str | None = None) -> Snapshot:
        """A snapshot by id, or the agency's current one; the agency may be omitted when the
        workspace holds only one."""
        if agency is None:
            agencies = self.agencies()
            if not agencies:
                raise StoreError(f"the workspace {self.home} holds no data yet: run `ews ingest`")
            if len(agencies) > 1:
                raise StoreError(
                    f"the workspace holds several agencies ({', '.join(agencies)}): name one"
                )
            agency = agencies[0]
        snaps = self.snapshots(agency)
        if not snaps:
            raise StoreError(f"no snapshot of agency {agency!r} in {self.home}")
        if snapshot_id is None:
            return snaps[-1]
        for s in snaps:
            if s.id == snapshot_id or s.id.startswith(snapshot_id):
                return s
        raise StoreError(f"agency {agency!r} has no snapshot {snapshot_id!r}")
