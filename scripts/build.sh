#!/usr/bin/env bash
# Configures and builds retain into build/ (Release, Ninja). Extra arguments go to CMake;
# `--build-dir DIR` first builds into DIR instead (scripts/test.sh --sanitize).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
if [[ "${1:-}" == "--build-dir" ]]; then
  dir="$2"
  shift 2
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$dir" --parallel "$(nproc)"
