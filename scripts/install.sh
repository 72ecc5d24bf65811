#!/usr/bin/env bash
# Install ews into ./.venv, editable, with the extras named (scripts/demo.sh: `.`,
# scripts/test.sh: `.[dev,spark]`), then byte-compile ews's own modules once, as a wheel's
# install does: an editable install leaves them as source, and where PYTHONDONTWRITEBYTECODE
# is set every command would compile them again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e "${1:-.}"
.venv/bin/python -m compileall -q -j0 ews features models api
