#!/usr/bin/env bash
# The main job on a fresh machine: install the Debian packages, build, and run tm-verify with its defaults
# (every CPU check; every CUDA check when a GPU is present). Extra arguments go to tm-verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target tm-verify
./build/tm-verify "$@"
