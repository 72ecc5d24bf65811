#!/usr/bin/env bash
# Install ews into ./.venv, then run the main job on the embedded defaults: a synthetic demo
# agency generated, ingested, trained, scored and served on http://127.0.0.1:8000/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
# byte-compiled once, as a wheel's install does: an editable install leaves ews's own modules
# as source, and where PYTHONDONTWRITEBYTECODE is set every command would compile them again
.venv/bin/python -m compileall -q -j0 ews features models api
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MLFLOW_DISABLE_TELEMETRY=true
exec .venv/bin/ews demo "$@"
