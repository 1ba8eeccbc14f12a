#!/usr/bin/env bash
# The README's first command: installs dependencies, builds, and runs the shipped default model on a
# prompt. (Until the gRPC server exists this is `retain-run`; the server will take its place.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash scripts/build.sh
prompt="${1:-And God said}"
exec build/engine/retain-run --prompt "$prompt" --max-tokens "${MAX_TOKENS:-200}" --temperature "${TEMPERATURE:-0.8}" --top-p 0.9 --seed 1
