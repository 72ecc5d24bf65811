"""The application database: the ingest journal and the access audit log.

SQLite in the workspace by default (``EWS_HOME/app.db``); PostgreSQL in production by setting
``EWS_DATABASE_URL`` (for example ``postgresql+psycopg://user@host/ews``). The schema is
owned by Alembic migrations in ``ews/migrations``; :func:`connect` brings a database to the
newest revision before handing out sessions.

Two tables:
- ``ingest_log``: every accepted ingest (new snapshot or identical re-ingest), who ran it and
  what it held. Refused packages are not journaled: a refused package changes nothing.
- ``audit_log``: every read and write of an officer's record and every administrative action,
  with who asked, in which role, and when. Rows are only ever appended.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ews.settings import Settings, get_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class IngestLog(Base):
    __tablename__ = "ingest_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    agency: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    snapshot_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    new_snapshot: Mapped[bool] = mapped_column(nullable=False)
    source: Mapped[str] = mapped_column(String(2000), nullable=False)
    rows: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    role: Mapped[str] = mapped_column(String(50), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    resource: Mapped[str] = mapped_column(String(500), nullable=False)
    agency: Mapped[str | None] = mapped_column(String(200), nullable=True)
    officer_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


ROLES = ("supervisor", "reviewer", "data_scientist", "admin")
DECISIONS = ("intervention", "monitor", "no_action")


class User(Base):
    """Someone who may use the service. ``units`` scopes a supervisor to their own units."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(50), nullable=False)
    agency: Mapped[str | None] = mapped_column(String(200), nullable=True)
    units: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)


class Review(Base):
    """A supervisor's review of a flag, and the supportive intervention chosen, if any."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    agency: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    officer_id: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    as_of_date: Mapped[dt.date] = mapped_column(nullable=False)
    flagged_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    reviewer: Mapped[str] = mapped_column(String(200), nullable=False)
    decision: Mapped[str] = mapped_column(String(50), nullable=False)
    intervention: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str] = mapped_column(String(4000), nullable=False, default="")
    model_version: Mapped[str | None] = mapped_column(String(200), nullable=True)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


class AppDatabase:
    """A migrated application database and a session factory for it."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        migrate(url)
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as s:
            yield s

    def record_ingest(
        self, agency: str, snapshot_id: str, new: bool, source: str, rows: dict[str, Any]
    ) -> None:
        with self.session() as s:
            s.add(
                IngestLog(
                    actor=current_actor(),
                    agency=agency,
                    snapshot_id=snapshot_id,
                    new_snapshot=new,
                    source=source,
                    rows=rows,
                )
            )

    def audit(
        self,
        actor: str,
        role: str,
        action: str,
        resource: str,
        agency: str | None = None,
        officer_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry to the audit log."""
        with self.session() as s:
            s.add(
                AuditLog(
                    actor=actor,
                    role=role,
                    action=action,
                    resource=resource,
                    agency=agency,
                    officer_id=officer_id,
                    detail=detail or {},
                )
            )

    def ingests(self, agency: str | None = None) -> list[IngestLog]:
        with self.session() as s:
            q = select(IngestLog).order_by(IngestLog.id)
            if agency is not None:
                q = q.where(IngestLog.agency == agency)
            return list(s.scalars(q))

    def audit_entries(
        self, officer_id: str | None = None, actor: str | None = None
    ) -> list[AuditLog]:
        with self.session() as s:
            q = select(AuditLog).order_by(AuditLog.id)
            if officer_id is not None:
                q = q.where(AuditLog.officer_id == officer_id)
            if actor is not None:
                q = q.where(AuditLog.actor == actor)
            return list(s.scalars(q))

    def dispose(self) -> None:
        self.engine.dispose()


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def open_app_database(settings: Settings | None = None) -> AppDatabase:
    """The workspace's application database (SQLite by default, EWS_DATABASE_URL otherwise)."""
    settings = settings or get_settings()
    return AppDatabase(settings.app_database_url)
