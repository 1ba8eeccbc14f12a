#!/usr/bin/env bash
# Runs the training script for a handful of steps on a tiny slice. Skipped (exit 77) when PyTorch
# is not installed (deploy/install-deps.sh --train installs it).
set -euo pipefail
src="$1"
if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  echo "skipped: python3-torch/python3-numpy not installed (deploy/install-deps.sh --train)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
/usr/bin/python3 "$src/tools/train/train_rwkv7.py" --smoke --out "$out"
test -s "$out/model.safetensors"
test -s "$out/config.json"
echo "smoke training wrote $(stat -c %s "$out/model.safetensors") bytes of weights"
