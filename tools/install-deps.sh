#!/usr/bin/env bash
# Installs every dependency of transmamba from Debian's packages (run as root on a fresh Debian 12 machine), and
# NumPy + safetensors from PyPI for the Python fixture test.
# CUDA is optional: when nvcc is on PATH the build also compiles cuda/; nothing here installs it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  cmake g++ make libeigen3-dev catch2 librapidcheck-dev nlohmann-json3-dev libcli11-dev libclang-rt-14-dev \
  libboost-context-dev >/dev/null
echo "install-deps: Debian packages installed"
# The Python interop test of the fixtures (tests/test_fixtures.py): NumPy and safetensors from PyPI, pinned.
# Without them that test reports itself as skipped.
if python3 -m pip --version >/dev/null 2>&1; then
  python3 -m pip install -q numpy==1.26.4 safetensors==0.4.5
  echo "install-deps: numpy 1.26.4 and safetensors 0.4.5 installed"
else
  echo "install-deps: no python3 with pip: the Python fixture test (tests/test_fixtures.py) will be skipped"
fi
