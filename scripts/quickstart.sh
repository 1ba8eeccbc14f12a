#!/usr/bin/env bash
# The README's first command: installs dependencies, builds, and starts retain-server on the shipped
# default model (models/rwkv7-kjv-byte), listening on 127.0.0.1:50051 (gRPC) and 127.0.0.1:9464
# (/metrics). Extra arguments go to retain-server (see `build/server/retain-server --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash scripts/build.sh
exec build/server/retain-server "$@"
