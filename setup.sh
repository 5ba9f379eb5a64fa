#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: installs the Debian packages
# minivmm needs, builds it, builds the test guest from Debian's packages and
# boots a demo VM on its serial console (tests/demo says where it runs).
set -euo pipefail
cd "$(dirname "$0")"
tests/deps.sh install
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
guest-images/build.sh
exec tests/demo "$@"
