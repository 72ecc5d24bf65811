"""The application database on SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from ews.db import AppDatabase, open_app_database


def _exercise(db: AppDatabase) -> None:
    db.record_ingest("demo", "abc123", True, "/data/demo", {"events": 10, "officers": 2})
    db.record_ingest("demo", "abc123", False, "/data/demo", {"events": 10, "officers": 2})
    db.record_ingest("other", "def456", True, "/data/other", {"events": 1, "officers": 1})
    db.audit("sgt.lee", "supervisor", "read", "/flags/17", agency="demo", officer_id="17")
    db.audit("auditor", "reviewer", "read", "/audit", detail={"rows": 3})

    journal = db.ingests("demo")
    assert [(j.snapshot_id, j.new_snapshot) for j in journal] == [
        ("abc123", True),
        ("abc123", False),
    ]
    assert journal[0].rows == {"events": 10, "officers": 2}
    assert len(db.ingests()) == 3
    reads = db.audit_entries(officer_id="17")
    assert [(a.actor, a.role, a.action, a.agency) for a in reads] == [
        ("sgt.lee", "supervisor", "read", "demo")
    ]
    assert db.audit_entries(actor="auditor")[0].detail == {"rows": 3}


def test_sqlite_default_lives_in_the_workspace(ews_home: Path) -> None:
    db = open_app_database()
    try:
        assert (ews_home / "app.db").is_file()
        _exercise(db)
    finally:
        db.dispose()


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    AppDatabase(url).dispose()
    db = AppDatabase(url)  # second open: upgrade to head is a no-op, data kept
    try:
        _exercise(db)
        tables = set(inspect(db.engine).get_table_names())
        assert {"ingest_log", "audit_log", "drift_runs", "alembic_version"} <= tables
    finally:
        db.dispose()
    reopened = AppDatabase(url)
    try:
        assert len(reopened.ingests()) == 3
    finally:
        reopened.dispose()


@pytest.mark.postgres
def test_postgresql(pg_url: str) -> None:
    db = AppDatabase(pg_url)
    try:
        _exercise(db)
        assert {"ingest_log", "audit_log", "drift_runs"} <= set(
            inspect(db.engine).get_table_names()
        )
    finally:
        db.dispose()


def test_a_plain_postgresql_url_names_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL psql and most tools print (``postgresql://`` or ``postgres://``) reaches the
    psycopg 3 driver ews installs, not psycopg2 (a ModuleNotFoundError before)."""
    from ews.settings import Settings

    for given in ("postgresql://u@h:5432/d", "postgres://u@h:5432/d"):
        monkeypatch.setenv("EWS_DATABASE_URL", given)
        assert Settings().app_database_url == "postgresql+psycopg://u@h:5432/d"
    for kept in ("postgresql+psycopg://u@h/d", "sqlite:///x.db"):
        assert Settings(database_url=kept).app_database_url == kept
