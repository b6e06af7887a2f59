#!/usr/bin/env bash
# Installs every dependency of transmamba from Debian's packages (run as root on a fresh Debian 12 machine).
# CUDA is optional: when nvcc is on PATH the build also compiles cuda/; nothing here installs it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  cmake g++ make libeigen3-dev catch2 librapidcheck-dev nlohmann-json3-dev libcli11-dev libclang-rt-14-dev >/dev/null
echo "install-deps: Debian packages installed"
