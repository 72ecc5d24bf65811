"""Shared test set-up: one OpenMP thread, no MLflow telemetry, a workspace per test."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CHICAGO = SHARED / "data" / "chicago-cpdp-2018"
TRIAGE_PEER = SHARED / "data" / "triage-peer-10k"


@pytest.fixture
def ews_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty workspace for one test, set as EWS_HOME."""
    from ews.settings import get_settings

    home = tmp_path / "ews-home"
    monkeypatch.setenv("EWS_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
