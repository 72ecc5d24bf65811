#!/usr/bin/env bash
# Install ews with its test and Spark extras into ./.venv, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,spark]'
# The browser tests drive Debian's chromium with Playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed (apt-get install chromium): the browser tests will be skipped"
  fi
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MLFLOW_DISABLE_TELEMETRY=true SPARK_LOCAL_IP=127.0.0.1
.venv/bin/python -m pytest -q --durations=15 "$@"   # then the 15 slowest tests
