#!/usr/bin/env bash
# Install ews with its test and Spark extras into ./.venv, then run the whole test suite on
# every core (pytest-xdist; a test file stays on one worker, so its module fixtures are built
# once). Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_api.py -k flags`.
#   bash scripts/test.sh --quick    # while developing: no install, skips tests marked slow
#                                   # (Spark, browser, notebooks, the end-to-end CLI runs)
# It ends with pytest's summary line, the 15 slowest tests and the CPU seconds per test file
# (CPU time, unlike wall time, hardly depends on what else the machine runs).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
if [ "$quick" = 0 ] || [ ! -x .venv/bin/python ]; then
  bash scripts/install.sh '.[dev,spark]'
fi
# The browser tests drive Debian's chromium with Playwright (no browser download).
if [ "$quick" = 0 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed (apt-get install chromium): the browser tests will be skipped"
  fi
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MLFLOW_DISABLE_TELEMETRY=true SPARK_LOCAL_IP=127.0.0.1
cpu_log="$(mktemp)"
export EWS_TEST_CPU_LOG="$cpu_log"   # tests/conftest.py appends a line per test
marks=()
if [ "$quick" = 1 ]; then
  marks=(-m "not slow")
fi
pytest_log="$(mktemp)"
trap 'rm -f "$cpu_log" "$pytest_log"' EXIT
set +e
# --no-loadscope-reorder: xdist would otherwise hand out the files with the most tests first
# (the many quick ones), undoing the longest-first order of tests/conftest.py and leaving the
# README's end-to-end run to start near the end, alone
.venv/bin/python -m pytest -q -n "${EWS_TEST_WORKERS:-auto}" --dist loadfile --no-loadscope-reorder \
  --durations=15 \
  ${marks[@]+"${marks[@]}"} "$@" 2>&1 | tee "$pytest_log"
status=${PIPESTATUS[0]}
set -e
.venv/bin/python - "$cpu_log" <<'EOF' || true
import collections, sys
cpu, wall = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    node, c, w = line.rstrip("\n").split("\t")
    name = node.split("::")[0]
    cpu[name] += float(c)
    wall[name] += float(w)
if cpu:
    print("CPU seconds per test file (wall seconds in brackets), the 15 largest:")
    for name, c in cpu.most_common(15):
        print(f"  {c:7.1f}  ({wall[name]:7.1f})  {name}")
    print(f"  {sum(cpu.values()):7.1f}  ({sum(wall.values()):7.1f})  all {len(cpu)} files")
EOF
# pytest's summary line again, last, so that it closes the output
grep -E '^=*.*[0-9]+ (passed|failed|errors?|skipped|deselected)' "$pytest_log" | tail -1 || true
exit "$status"
