"""The application database: ingest journal, agencies, scored flags, users, the review
workflow and the tamper-evident access audit log.

SQLite in the workspace by default (``EWS_HOME/app.db``); PostgreSQL in production by setting
``EWS_DATABASE_URL`` (for example ``postgresql+psycopg://user@host/ews``). The schema is
owned by Alembic migrations in ``ews/migrations``; :class:`AppDatabase` brings a database to
the newest revision before handing out sessions. Several ``ews serve`` workers or hosts share
one database: everything the service reads is here, nothing in files.

Tables:
- ``ingest_log``: every new snapshot stored, who ran it and what it held.
- ``agencies``: the agencies known to the service (an agency is a row, never a folder name).
- ``scoring_runs`` and ``flags``: each ``ews score`` of an agency at an as-of date and its
  rows (score, rank, flagged, explanation, factors, rules fired, provenance). A later scoring
  of the same date supersedes the earlier run (``current`` false), which is kept.
- ``officer_units``: each officer's current unit (the unit at the newest scored date), the
  one fact a supervisor's scope is decided on.
- ``users``: roles, scopes, token hashes, expiry, e-mail address (``ews notify``).
- ``web_sessions``: the pages' sign-in sessions (the SHA-256 of the cookie's random id, the
  user, the idle and absolute expiry, when and why it ended).
- ``notices``, ``notice_items`` and ``notify_policy``: what ``ews notify`` sent, to whom,
  about which flags, and each agency's reminder and escalation days (:mod:`ews.notify`).
- ``reviews`` and ``flag_status``: the review workflow of each flag (every step, and the
  state it left the flag in).
- ``drift_runs``: each ``ews drift`` of an agency's model at an as-of date: how many input
  columns drifted, the drift of the scores, precision at the date once its outcomes are
  known, whether it alerted, and where its report lies in the workspace.
- ``audit_log``: every read and write of an officer's record and every refusal. Each entry
  carries the HMAC-SHA-256 (under the audit key, a file outside the database) of its
  content and of the entry before it (:mod:`ews.audit`); the migrations make it append-only
  (triggers refuse UPDATE and DELETE of entries that were not archived). ``audit_anchor``
  records each archive of old entries (signed), ``audit_chain_start`` where the chain was
  keyed. On PostgreSQL the service's role may only SELECT and INSERT them
  (:func:`roles_sql`, :func:`service_grants_sql`).

Writes go through :meth:`AppDatabase.write`, which serializes writers (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so that the audit chain has one
order and a review and its audit entry commit together or not at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool

from ews.settings import Settings, get_settings

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ews.audit import GroupWriter, LoopWriter
    from ews.loop_pg import LoopPg

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("ews.db")
# Seconds the event loop waits for SQLite's write lock before it hands its batch of audit
# entries to the writer thread (ews.audit.LoopWriter): the loop serves every request.
LOOP_BUSY = 0.002
# Seconds a checkpoint waits for the write lock and for readers of older snapshots before it
# settles for what it could copy (AppDatabase.checkpoint); meanwhile writers wait for it.
CHECKPOINT_BUSY = 0.05

# Lengths shared by the columns and the API's input limits.
NAME_LEN = 200  # user names, officer ids, units, agencies (agencies are also <= 64 at ingest)
AGENCY_LEN = 64
NOTE_LEN = 4000
REASON_LEN = 500
RESOURCE_LEN = 500
KEY_LEN = 100
EMAIL_LEN = 320

ROLES = ("supervisor", "commander", "reviewer", "data_scientist", "admin")
STATUSES = ("new", "under_review", "intervention_assigned", "intervention_completed", "dismissed")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("under_review", "dismissed"),
    "under_review": ("intervention_assigned", "dismissed"),
    "intervention_assigned": ("intervention_completed",),
    "intervention_completed": (),
    "dismissed": (),
}
INTERVENTIONS = (
    "supervisor_counselling",
    "training",
    "wellness_or_eap_referral",
    "peer_support",
    "reassignment",
    "other",
)
# The chain lock of PostgreSQL writers (any constant of the application's own).
WRITE_LOCK_KEY = 0x65777331
_PG_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


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
    """One access (or refusal), chained: ``entry_hash`` = HMAC-SHA-256 of the entry's content
    and ``prev_hash`` (the MAC of the entry before it; plain SHA-256 for entries older than
    the key). See :mod:`ews.audit`."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    role: Mapped[str] = mapped_column(String(50), nullable=False)
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    resource: Mapped[str] = mapped_column(String(RESOURCE_LEN), nullable=False)
    agency: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    officer_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    entry_hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditAnchor(Base):
    """An archive of the audit entries up to ``through_id``: where the chain now starts."""

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    through_id: Mapped[int] = mapped_column(Integer, nullable=False)
    through_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    entries: Mapped[int] = mapped_column(Integer, nullable=False)
    archive_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    archive_name: Mapped[str] = mapped_column(String(500), nullable=False)
    # the SHA-256 of the archive's manifest file, and the HMAC of this anchor under the audit
    # key (None only for anchors written before the chain was keyed)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditChainStart(Base):
    """Where the chain switched from plain SHA-256 to HMAC-SHA-256 under the audit key: the
    first keyed entry (``from_id``), the hash before it, the newest anchor written before the
    switch, and the HMAC of the three (one row, written by migration 0005)."""

    __tablename__ = "audit_chain_start"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    from_id: Mapped[int] = mapped_column(Integer, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    legacy_anchor_id: Mapped[int] = mapped_column(Integer, nullable=False)
    key_id: Mapped[str] = mapped_column(String(32), nullable=False)
    mac: Mapped[str] = mapped_column(String(64), nullable=False)


class Agency(Base):
    __tablename__ = "agencies"

    name: Mapped[str] = mapped_column(String(AGENCY_LEN), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class ScoringRun(Base):
    """One ``ews score`` of an agency at an as-of date."""

    __tablename__ = "scoring_runs"
    __table_args__ = (Index("ix_scoring_runs_agency_date", "agency", "as_of_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency: Mapped[str] = mapped_column(
        String(AGENCY_LEN), ForeignKey("agencies.name"), nullable=False
    )
    as_of_date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    scored_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    current: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    officers: Mapped[int] = mapped_column(Integer, nullable=False)
    flagged: Mapped[int] = mapped_column(Integer, nullable=False)
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class Flag(Base):
    """One scored officer of a scoring run."""

    __tablename__ = "flags"
    __table_args__ = (
        Index("ix_flags_run_rank", "run_id", "rank"),
        Index("ix_flags_agency_officer", "agency", "officer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("scoring_runs.id"), nullable=False)
    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), nullable=False)
    as_of_date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    officer_id: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    unit: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    peer_rank: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    percentile: Mapped[float | None] = mapped_column(Float, nullable=True)
    flagged: Mapped[bool] = mapped_column(Boolean, nullable=False)
    explanation: Mapped[str] = mapped_column(Text, nullable=False, default="")
    factors: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    rules_fired: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class OfficerUnit(Base):
    """An officer's current unit: the unit at the newest date the officer was scored."""

    __tablename__ = "officer_units"

    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), primary_key=True)
    officer_id: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    unit: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True, index=True)
    as_of_date: Mapped[dt.date] = mapped_column(Date, nullable=False)


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
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    token_issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    email: Mapped[str | None] = mapped_column(String(EMAIL_LEN), nullable=True)  # ews notify
    # the first characters of the current token: lets the sign-in limiter tell a user's
    # token from a guess without looking the token up (api.security)
    token_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)


class WebSession(Base):
    """A sign-in on the pages: the cookie holds a random id, this row its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(50), nullable=True)


class Review(Base):
    """One step of the review workflow of a flag (agency, officer, as-of date)."""

    __tablename__ = "reviews"
    __table_args__ = (
        Index("ix_reviews_flag", "agency", "officer_id", "as_of_date"),
        Index("ix_reviews_idempotency", "reviewer", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), nullable=False)
    officer_id: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    as_of_date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    flagged_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    reviewer: Mapped[str] = mapped_column(String(200), nullable=False)
    from_status: Mapped[str] = mapped_column(String(30), nullable=False)
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    intervention_type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    due_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(REASON_LEN), nullable=True)
    note: Mapped[str] = mapped_column(String(NOTE_LEN), nullable=False, default="")
    factor_feedback: Mapped[list[Any]] = mapped_column(JSON, nullable=False, default=list)
    model_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(KEY_LEN), nullable=True)


class FlagStatus(Base):
    """Where each flag stands in the review workflow (absent: ``new``)."""

    __tablename__ = "flag_status"

    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), primary_key=True)
    officer_id: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    as_of_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    first_reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    due_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    last_review_id: Mapped[int] = mapped_column(Integer, nullable=False)


class DriftRun(Base):
    """One ``ews drift`` of an agency's model at an as-of date (see :mod:`models.drift`)."""

    __tablename__ = "drift_runs"
    __table_args__ = (Index("ix_drift_runs_agency_created", "agency", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    agency: Mapped[str] = mapped_column(
        String(AGENCY_LEN), ForeignKey("agencies.name"), nullable=False
    )
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    model_name: Mapped[str] = mapped_column(String(200), nullable=False)
    model_version: Mapped[str] = mapped_column(String(50), nullable=False)
    snapshot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    as_of: Mapped[dt.date] = mapped_column(Date, nullable=False)
    reference_dates: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    columns: Mapped[int] = mapped_column(Integer, nullable=False)
    drifted_columns: Mapped[int] = mapped_column(Integer, nullable=False)
    drifted_share: Mapped[float] = mapped_column(Float, nullable=False)
    drifted_names: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    score_drift: Mapped[float | None] = mapped_column(Float, nullable=True)  # PSI of the scores
    score_ks_pvalue: Mapped[float | None] = mapped_column(Float, nullable=True)
    score_drifted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    flag_rate_reference: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag_rate_current: Mapped[float | None] = mapped_column(Float, nullable=True)
    k_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    precision_at_k: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_precision_at_k: Mapped[float | None] = mapped_column(Float, nullable=True)
    alert: Mapped[bool] = mapped_column(Boolean, nullable=False)
    threshold: Mapped[float] = mapped_column(Float, nullable=False)  # share of columns
    score_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # PSI
    report_path: Mapped[str | None] = mapped_column(String(500), nullable=True)


class MigrationNeeded(RuntimeError):
    """The database is behind the code and this role may not migrate it."""


def migrate(url: str, key_file: Path | None = None) -> None:
    """Bring the database at ``url`` to the newest schema revision (idempotent). The audit
    key file (default: the settings') is created by the migration that keys the chain."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import ProgrammingError

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["audit_key_file"] = key_file or get_settings().audit_key_path
    try:
        command.upgrade(cfg, "head")
    except ProgrammingError as e:
        if "permission denied" in str(e) or "must be owner" in str(e):
            raise MigrationNeeded(
                "the database needs a schema migration this role may not run: run "
                "`ews db migrate` as the owner role (see README, production)"
            ) from e
        raise


def _sqlite_pragmas(dbapi_conn: Any) -> None:
    """The settings of every connection to the SQLite database (WAL, NORMAL sync, foreign
    keys), in autocommit mode (the engines' events issue BEGIN)."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_engine(
    url: str, begin: str | None, timeout: float = 30.0, pool_size: int = 40
) -> Engine:
    """A SQLite engine in WAL mode whose transactions begin with ``begin``: 'BEGIN' (readers
    of several statements), 'BEGIN IMMEDIATE' (writers: they take the write lock at BEGIN, so
    two writers never deadlock on an upgrade from a read lock, and wait for each other up to
    the busy timeout, ``timeout`` seconds) or None (single-statement reads: no transaction
    around them). The pool holds as many connections as the service has threads, so none is
    opened per request."""
    engine = create_engine(
        url,
        connect_args={"timeout": timeout, "check_same_thread": False},
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        _sqlite_pragmas(dbapi_conn)

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    return engine


class AppDatabase:
    """A migrated application database and a session factory for it."""

    def __init__(
        self,
        url: str,
        key_file: Path | None = None,
        workers: int | None = None,
        pool: int | None = None,
    ) -> None:
        settings = get_settings()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.key_file = key_file or settings.audit_key_path
        migrate(url, self.key_file)
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._key: bytes | None = None
        if self.sqlite:
            self.engine: Engine = _sqlite_engine(url, "BEGIN")
            self.write_engine: Engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self.read_engine: Engine = _sqlite_engine(url, None)
            self.audit_engine: Engine = self.write_engine
            # the event loop's group commit (ews.audit.LoopWriter): one connection that waits
            # at most LOOP_BUSY seconds for the write lock and leaves checkpoints to threads
            self.loop_write_engine: Engine = _sqlite_engine(
                url, "BEGIN IMMEDIATE", timeout=LOOP_BUSY, pool_size=1
            )
            event.listen(
                self.loop_write_engine,
                "connect",
                lambda c, _r: c.execute("PRAGMA wal_autocheckpoint=0"),
            )
        else:
            self.pools = pg_pools(url, workers or settings.workers, pool or settings.db_pool)
            # no pre-ping (a round trip per checkout): connections are recycled instead;
            # a request waits for a free connection rather than opening one over the budget
            opts = {"max_overflow": 0, "pool_recycle": 1800, "pool_timeout": 60}
            self.engine = create_engine(url, pool_size=self.pools["session"], **opts)
            self.write_engine = create_engine(url, pool_size=self.pools["write"], **opts)
            self.read_engine = create_engine(
                url, isolation_level="AUTOCOMMIT", pool_size=self.pools["read"], **opts
            )
            # the group writer's own connection: a request holding a read connection while
            # it waits for its audit entry never starves the writer
            self.audit_engine = create_engine(url, pool_size=1, **opts)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._writer: GroupWriter | None = None
        self._writer_lock = threading.Lock()
        self._loop_writer: LoopWriter | None = None
        self._loop_reader = threading.local()
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._loop_readers: list[sqlite3.Connection] = []
        self._loop_pg: dict[str, LoopPg] = {}  # by use: the loop's reads, its audit entries

    @property
    def audit_key(self) -> bytes:
        """The key of the audit chain's HMACs (:func:`ews.audit.load_key`; never created
        here: the migration that keyed the chain created it)."""
        if self._key is None:
            from ews.audit import load_key

            self._key = load_key(self.key_file)
        return self._key

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read transaction (it may write, but writers should use :meth:`write`)."""
        with self.sessions.begin() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction that holds the database's one writer lock from its start, so
        audit entries chain in commit order and state checks cannot race."""
        from ews.audit import KEY_INFO

        key = self.audit_key
        with self.write_sessions.begin() as s:
            s.info[KEY_INFO] = key
            if not self.sqlite:
                s.execute(_PG_LOCK, {"k": WRITE_LOCK_KEY})
            yield s

    @contextmanager
    def read_conn(self) -> Iterator[Connection]:
        """A plain connection for reads of one statement each (the service's hot path: no
        ORM, no transaction round trips)."""
        with self.read_engine.connect() as c:
            yield c

    def _raw_sqlite(self, timeout: float) -> sqlite3.Connection:
        """A plain sqlite3 connection to the database, with the engine's pragmas, usable
        from any thread (its owner keeps it to one at a time)."""
        conn = sqlite3.connect(
            self.url.split("///", 1)[1], timeout=timeout, check_same_thread=False
        )
        _sqlite_pragmas(conn)
        return conn

    def loop_reader(self) -> sqlite3.Connection:
        """The event loop's own connection to the SQLite database, for the reads of one
        statement an async request makes on the loop (no pool checkout, no SQLAlchemy
        execution: these reads run on every request). Only the loop's thread uses it."""
        if not self.sqlite:
            raise RuntimeError("the loop's reader is SQLite's only")
        conn: sqlite3.Connection | None = getattr(self._loop_reader, "conn", None)
        if conn is None:  # one per thread (a test may run loops in several)
            conn = self._raw_sqlite(timeout=30)  # used by its thread only; closed by dispose()
            self._loop_reader.conn = conn
            with self._writer_lock:
                self._loop_readers.append(conn)
        return conn

    async def loop_pg_row(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of ``sql`` (psycopg's ``%(name)s`` parameters) on the event loop's
        own async PostgreSQL connection (:class:`ews.loop_pg.LoopPg`), or None when that
        connection cannot be had or fails: the caller then reads through the pools in a
        thread. Callers asking the same query before it is sent share it (it sees every
        commit each of them could have seen)."""
        return await self.loop_pg().row(sql, params)

    def loop_pg(self, use: str = "read") -> LoopPg:
        """The running event loop's :class:`ews.loop_pg.LoopPg` for ``use``: "read" (the
        loop's reads) or "audit" (its audit entries); one each per loop (a test may run
        several loops in turn: the connections of a loop no longer running are dropped)."""
        from ews.loop_pg import LoopPg

        loop = asyncio.get_running_loop()
        mine = self._loop_pg.get(use)
        if mine is None or mine.loop is not loop:
            old, mine = mine, LoopPg(self, loop)
            self._loop_pg[use] = mine
            if old is not None and old.conn is not None and old.loop.is_closed():
                old.conn.pgconn.finish()
        return mine

    async def aclose(self) -> None:
        """Close the event loop's own connections (before :meth:`dispose`), once the audit
        entries queued on them are stored."""
        loops, self._loop_pg = self._loop_pg, {}
        for mine in loops.values():
            if mine.loop is asyncio.get_running_loop():
                await mine.aclose()

    @contextmanager
    def write_conn(self, engine: Engine | None = None) -> Iterator[Connection]:
        """:meth:`write` on a plain connection (the group writer's own, or ``engine``'s)."""
        from ews.audit import KEY_INFO

        key = self.audit_key
        with (engine or self.audit_engine).begin() as c:
            c.info[KEY_INFO] = key
            if not self.sqlite:
                c.execute(_PG_LOCK, {"k": WRITE_LOCK_KEY})
            yield c

    def record_ingest(
        self, agency: str, snapshot_id: str, new: bool, source: str, rows: dict[str, Any]
    ) -> None:
        with self.write() as s:
            ensure_agency(s, agency)
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
    ) -> int:
        """Append one entry to the audit chain; its id, once the entry is committed. Entries
        of concurrent callers share a transaction (:class:`ews.audit.GroupWriter`)."""
        future = self.audit_submit(actor, role, action, resource, agency, officer_id, detail)
        return future.result(60.0)

    def audit_submit(
        self,
        actor: str,
        role: str,
        action: str,
        resource: str,
        agency: str | None = None,
        officer_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Future[int]:
        """:meth:`audit` without waiting: the future is done (the entry's id) once the entry
        is committed; an async request awaits it before it answers."""
        return self.group_writer().submit(
            actor=actor,
            role=role,
            action=action,
            resource=resource,
            agency=agency,
            officer_id=officer_id,
            detail=detail,
        )

    def group_writer(self) -> GroupWriter:
        """The writer thread of audit entries (started on first use)."""
        from ews.audit import GroupWriter

        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = GroupWriter(self)
        return self._writer

    def audit_submit_async(
        self,
        actor: str,
        role: str,
        action: str,
        resource: str,
        agency: str | None = None,
        officer_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Awaitable[int]:
        """:meth:`audit_submit` for a caller on the event loop: done once the entry is
        committed. On SQLite the loop commits the entries itself (:class:`ews.audit.
        LoopWriter`); on PostgreSQL on the loop's own async connection for audit entries
        (:class:`ews.loop_pg.LoopPg`)."""
        fields: dict[str, Any] = {
            "actor": actor,
            "role": role,
            "action": action,
            "resource": resource,
            "agency": agency,
            "officer_id": officer_id,
            "detail": detail,
        }
        if not self.sqlite:
            from ews.audit import _entry

            return self.loop_pg("audit").submit_entry(_entry(**fields))
        if self._loop_writer is None:
            from ews.audit import LoopWriter

            self._loop_writer = LoopWriter(self)
        return self._loop_writer.submit(**fields)

    def checkpoint(self) -> tuple[int, int, int] | None:
        """Checkpoint SQLite's write-ahead log so that the next commit writes it again from
        its beginning (mode RESTART), waiting at most :data:`CHECKPOINT_BUSY` seconds for the
        write lock and for readers of older snapshots; past that it copies back what it can,
        as a passive checkpoint would, and the next call tries again. SQLite's (busy, log
        frames, frames copied back), or None when another checkpoint is running.

        Why not passive: a passive checkpoint cannot copy back frames newer than the oldest
        reader's snapshot, and a log is restarted only after a complete one. Under steady
        load (a commit every few milliseconds, readers always active) that never happened:
        the log grew by about 8 MB a second under 50 clients (1.6 GB in three minutes of
        benchmarks/bench_api.py), and every read slowed down with it (SQLite looks a page up
        in the log's index segment by segment): the flag list fell from 78% of the bare
        endpoint in the first round to 38% in the third. RESTART took 11 ms against passive's
        9 (TRUNCATE, which also shrinks the file, 18) on 500 commits' worth of log."""
        if not self._checkpoint_lock.acquire(blocking=False):
            return None
        try:
            if self._checkpointer is None:
                self._checkpointer = self._raw_sqlite(CHECKPOINT_BUSY)  # closed by dispose()
            row = self._checkpointer.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            return (int(row[0]), int(row[1]), int(row[2]))
        finally:
            self._checkpoint_lock.release()

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
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        engines = {self.engine, self.write_engine, self.read_engine, self.audit_engine}
        if self.sqlite:
            engines.add(self.loop_write_engine)
        for engine in engines:
            engine.dispose()
        with self._writer_lock:
            readers, self._loop_readers = self._loop_readers, []
            self._loop_reader = threading.local()
        for conn in readers:
            conn.close()
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None


def ensure_agency(s: Session, name: str) -> None:
    """Register an agency (a row the service looks agencies up in) if it is new."""
    if s.get(Agency, name) is None:
        s.add(Agency(name=name))
        s.flush()


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def open_app_database(settings: Settings | None = None) -> AppDatabase:
    """The workspace's application database (SQLite by default, EWS_DATABASE_URL otherwise)."""
    settings = settings or get_settings()
    return AppDatabase(
        settings.app_database_url,
        key_file=settings.audit_key_path,
        workers=settings.workers,
        pool=settings.db_pool,
    )


class PoolTooSmall(RuntimeError):
    """The PostgreSQL server has too few connections for the workers' pools."""


# per process: the group writer, the event loop's reads and its audit entries, a write, a
# session, a read
MIN_POOL = 6
MAX_POOL = 48  # per process: more than the service's threads would never be used
SPARE = 5  # connections left for the CLI, migrations and an administrator


def pg_pools(url: str, workers: int, pool: int | None = None) -> dict[str, int]:
    """Size the connection pools of one process so that ``workers`` processes together stay
    under the server's ``max_connections`` (read now, less its reserved connections, those
    other clients hold now, and :data:`SPARE`); raise :class:`PoolTooSmall` with the figures
    when even :data:`MIN_POOL` per process (or the asked ``pool``) does not fit."""
    probe = create_engine(url, poolclass=NullPool)
    try:
        with probe.connect() as c:
            settings: dict[str, str] = {
                str(name): str(value)
                for name, value in c.execute(
                    text(
                        "SELECT name, setting FROM pg_settings WHERE name IN "
                        "('max_connections', 'superuser_reserved_connections', "
                        "'reserved_connections')"
                    )
                )
            }
            in_use = c.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
            )
    finally:
        probe.dispose()
    most = int(settings["max_connections"])
    reserved = sum(int(v) for k, v in settings.items() if k != "max_connections") or 0
    free = most - reserved - int(in_use or 0) + 1 - SPARE  # +1: the probe itself
    each = free // workers
    fits = (pool or MIN_POOL) <= each
    if not fits:
        raise PoolTooSmall(
            f"PostgreSQL allows {most} connections ({reserved} reserved, {in_use} in use, "
            f"{SPARE} kept spare): {free} for {workers} worker(s) is {max(each, 0)} each, "
            f"fewer than the {pool or MIN_POOL} each needs. Use fewer workers (--workers), "
            "a smaller EWS_DB_POOL (at least 6), or raise max_connections."
        )
    total = pool or min(each, MAX_POOL)
    write = max(1, total // 6)
    session = max(1, total // 6)
    # the other three: the group writer's connection and the event loop's two (reads and
    # audit entries: AppDatabase.loop_pg)
    read = total - 3 - write - session
    return {"total": total, "write": write, "session": session, "read": read}


# PostgreSQL roles: migrations run as an owner role, the service as a role that may only
# read and append to the audit tables (it cannot update, delete, truncate or alter them,
# and cannot disable their triggers, which needs ownership).
AUDIT_TABLES = ("audit_log", "audit_anchor", "audit_chain_start")
ROLE_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


def roles_sql(database: str, owner: str, service: str) -> str:
    """The SQL (run once by a PostgreSQL superuser) that creates the owner and the service
    roles, lets them connect to ``database``, and hands the tables already there (a database
    migrated by the service's own role) to the owner. Passwords are set apart (``\\password``)."""
    import re

    for name in (database, owner, service):
        if not re.match(ROLE_NAME, name):
            raise ValueError(f"{name!r}: use lower-case letters, digits and _ (at most 63)")
    if owner == service:
        raise ValueError("the owner and the service must be two roles")
    return f"""-- ews: PostgreSQL roles (run as a superuser, in the database {database})
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
    CREATE ROLE {owner} LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{service}') THEN
    CREATE ROLE {service} LOGIN;
  END IF;
END $$;
GRANT CONNECT ON DATABASE {database} TO {owner}, {service};
GRANT USAGE, CREATE ON SCHEMA public TO {owner};
GRANT USAGE ON SCHEMA public TO {service};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- tables created before the roles (by any role) now belong to the owner
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
    EXECUTE 'ALTER TABLE public.' || quote_ident(t.tablename) || ' OWNER TO {owner}';
  END LOOP;
  IF EXISTS (SELECT FROM pg_proc WHERE proname = 'ews_audit_append_only') THEN
    ALTER FUNCTION ews_audit_append_only() OWNER TO {owner};
  END IF;
END $$;
-- then, as {owner}: ews db migrate --service {service}
"""


def service_grants_sql(service: str) -> list[str]:
    """The grants of the service role on the migrated tables (run by the owner after every
    migration): read and write the application's tables, only read and append the audit
    tables, only read the schema revision."""
    import re

    if not re.match(ROLE_NAME, service):
        raise ValueError(f"{service!r}: use lower-case letters, digits and _ (at most 63)")
    audit = ", ".join(AUDIT_TABLES)
    return [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {service}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {service}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit} FROM {service}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {service}",
    ]


def grant_service(url: str, service: str) -> None:
    """Apply :func:`service_grants_sql` (as the tables' owner) on the database at ``url``."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as c:
            for statement in service_grants_sql(service):
                c.execute(text(statement))
    finally:
        engine.dispose()
