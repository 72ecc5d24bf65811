"""Shared test set-up: one OpenMP thread, no MLflow telemetry, a workspace per test."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("EWS_THREADS", "1")  # fits, DuckDB and registry writers: one each
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# the audit report is built after every `ews train`/`ews score` (half a minute): only the
# tests of that step ask for it (tests/test_audit_report.py)
os.environ.setdefault("EWS_BUILD_REPORTS", "false")

import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CHICAGO = SHARED / "data" / "chicago-cpdp-2018"
TRIAGE_PEER = SHARED / "data" / "triage-peer-10k"


@pytest.fixture(scope="session", autouse=True)
def audit_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One audit key for the test session (EWS_AUDIT_KEY_FILE), outside the repository, so
    that every database a test opens, and every `ews` it runs, chains with the same key."""
    from ews.settings import get_settings

    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    os.environ["EWS_AUDIT_KEY_FILE"] = str(path)
    get_settings.cache_clear()
    return path


# Whole files that `bash scripts/test.sh --quick` leaves to CI (CI runs everything): each
# takes a minute or more of CPU (Spark's JVM, the browser, the notebooks' kernels, thousands of
# generated API calls). Single slow tests elsewhere carry @pytest.mark.slow.
SLOW_FILES = {
    "test_features_spark.py",
    "test_pages_browser.py",
    "test_notebooks.py",
    "test_api_schemathesis.py",
}


# The longest files start first, so that across the xdist workers (scripts/test.sh runs one
# per core, a file per worker) no long file is left to run alone at the end; the others keep
# their order. xdist keeps this order only with --no-loadscope-reorder (scripts/test.sh passes
# it): by default it hands out the files with the most tests first.
LONGEST_FIRST = (
    "test_readme_commands.py",
    "test_features_build.py",
    "test_features_spark.py",
    "test_audit_report.py",
    "test_benchmarks.py",
    "test_flag_reasons.py",
    "test_code_quality.py",
    "test_notebooks.py",
    "test_models_cli.py",
    "test_pages_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With EWS_TEST_CPU_LOG=FILE, append a line per test: its node id, the CPU seconds of
    this process (every thread: DuckDB, the served app) and the wall seconds, set-up and
    tear-down included; `scripts/test.sh` sums them per file. CPU time barely depends on how
    busy the machine is, so runs on a shared machine compare."""
    log = os.environ.get("EWS_TEST_CPU_LOG")
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    if log:
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        with open(log, "a") as f:
            f.write(f"{item.nodeid}\t{cpu:.3f}\t{wall:.3f}\n")


@pytest.fixture
def ews_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty workspace for one test, set as EWS_HOME."""
    from ews.settings import get_settings

    home = tmp_path / "ews-home"
    monkeypatch.setenv("EWS_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def _pg_admin_url() -> str | None:
    url = os.environ.get("EWS_TEST_POSTGRES_URL")
    if not url:
        return None
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip("EWS_TEST_POSTGRES_URL is not set (CI sets it to 127.0.0.1:5432/test)")
    name = f"ews_test_{uuid.uuid4().hex[:10]}"
    from sqlalchemy import create_engine, text

    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty application database: SQLite in the test's folder, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
