#!/usr/bin/env bash
# The whole test suite on a fresh machine: install the Debian packages, build (CUDA too when nvcc is on
# PATH: every kernel compiles even without a GPU), run every ctest test. The last line is ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
