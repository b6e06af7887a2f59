#!/usr/bin/env bash
# The whole test suite on a fresh machine: install the Debian packages, build (CUDA too when nvcc is on
# PATH: every kernel compiles even without a GPU), run every ctest test. The last line is ctest's count
# ("100% tests passed, 0 tests failed out of N"), repeated after its list of skipped tests; the exit status is
# ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
status=0
ctest --test-dir build --output-on-failure -j"$(nproc)" 2>&1 | tee build/ctest.log || status=$?
grep -E '^[0-9]+% tests passed' build/ctest.log | tail -n 1
exit "$status"
