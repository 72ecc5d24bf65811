#!/usr/bin/env bash
# Install ews with its test and Spark extras into ./.venv, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,spark]'
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MLFLOW_DISABLE_TELEMETRY=true SPARK_LOCAL_IP=127.0.0.1
.venv/bin/python -m pytest -q --durations=15 "$@"   # then the 15 slowest tests
