#!/usr/bin/env bash
# Install ews into ./.venv, then run the main job on the embedded defaults: a synthetic demo
# agency generated, ingested, trained, scored and served on http://127.0.0.1:8000/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh .
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MLFLOW_DISABLE_TELEMETRY=true
exec .venv/bin/ews demo "$@"
