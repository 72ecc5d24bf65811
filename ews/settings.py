"""One settings object for the whole system (environment prefix ``EWS_``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DriftSettings(BaseModel):
    """When ``ews drift`` alerts (exit 3): more than ``max_share`` of the model's input
    columns drifted, or (``score_alert``) the distribution of the model's scores moved by a
    population stability index of ``score_psi`` or more. Set by environment, e.g.
    ``EWS_DRIFT__MAX_SHARE=0.5``, or per run with ``ews drift --max-share/--score-psi``."""

    max_share: float = Field(default=0.2, ge=0, le=1)
    score_psi: float = Field(default=0.2, gt=0)
    score_alert: bool = True
    max_reference_dates: int = Field(default=4, ge=1)  # the newest training dates compared


class Settings(BaseSettings):
    """Where the workspace lives and which services it talks to.

    Embedded defaults: everything lives in one folder, ``EWS_HOME`` (default ``./ews-home``):
    Parquet snapshots for analytics (read through DuckDB), a SQLite application database and
    a SQLite MLflow tracking store. Production points ``EWS_DATABASE_URL`` at PostgreSQL and
    ``EWS_MLFLOW_URI`` at any MLflow tracking server.
    """

    model_config = SettingsConfigDict(env_prefix="EWS_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path("ews-home")
    database_url: str | None = None
    mlflow_uri: str | None = None
    # threads for training (fits side by side, models.fitting), DuckDB and the registry's
    # writers: every core unless set (EWS_THREADS=1: one)
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # DuckDB (the feature engine): the most memory it may hold (e.g. "8GB"; default DuckDB's
    # own, 80% of RAM) and the folder it spills to beyond that (default a folder of this
    # process under the system temp folder, removed when the connection closes)
    memory_limit: str | None = None
    temp_dir: Path | None = None
    review_days: int = 14  # a flag not reviewed this many days after it was raised is overdue
    # `ews train`, `ews score` and `ews demo` build the audit report and model card for the
    # reviewers' pages when the model or the runs change (EWS_BUILD_REPORTS=false: on view)
    build_reports: bool = True
    drift: DriftSettings = Field(default_factory=DriftSettings)  # when `ews drift` alerts
    # page sessions (`ews serve`): ended after this many idle minutes, and this many hours
    # after sign-in whatever happens
    session_idle_minutes: float = Field(default=30, gt=0)
    session_hours: float = Field(default=12, gt=0)
    # supervisors see the flagged and previously flagged officers of their units; an admin
    # may widen that to every scored officer of their units
    supervisors_see_all_scored: bool = False
    # the key of the audit chain's HMACs (EWS_AUDIT_KEY_FILE): a file outside the database,
    # created with mode 0600 when the database is first migrated (default EWS_HOME/audit.key)
    audit_key_file: Path | None = None
    # PostgreSQL connections: the worker processes sharing the server's max_connections
    # (`ews serve --workers` sets it) and, if set, the connections of each process
    workers: int = Field(default=1, ge=1)
    db_pool: int | None = Field(default=None, ge=6)
    # the service remembers a working bearer token's user this many seconds (0: looks it up
    # on every request), so a revoked or rotated token, or a disabled user, is refused at
    # most this long after the change (an expiry is checked on every request)
    token_cache_seconds: float = Field(default=5.0, ge=0, le=60)

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"

    @field_validator("database_url")
    @classmethod
    def _driver(cls, url: str | None) -> str | None:
        """``postgresql://`` and ``postgres://`` (what psql and most tools print) name the
        psycopg 3 driver that ews installs; SQLAlchemy would otherwise look for psycopg2."""
        for plain in ("postgresql://", "postgres://"):
            if url is not None and url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url

    @property
    def app_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'app.db').resolve()}"

    @property
    def audit_key_path(self) -> Path:
        return (self.audit_key_file or self.home / "audit.key").resolve()

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
