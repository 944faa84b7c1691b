#!/usr/bin/env bash
# Runs the whole test suite (sets up first when the build is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/vitshrink ] || [ ! -x build/tests/vitshrink_tests ]; then SETUP_ONLY=1 bash scripts/setup.sh; fi
cmake --build build -j"$(nproc)"
cd build && ctest --output-on-failure -j2 "$@"
