#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs every test through ctest.
# Exits non-zero when any test fails. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 900
