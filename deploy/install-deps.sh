#!/usr/bin/env bash
# Installs every Debian package that retain's build, tests and benchmarks need.
# Idempotent and non-interactive: the README, the Dockerfile and .ci/run all call it.
#   deploy/install-deps.sh           build + test + bench dependencies
#   deploy/install-deps.sh --train   also PyTorch/NumPy and the corpus, for tools/train (large)
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  libabsl-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  prometheus-cpp-dev libcli11-dev libxxhash-dev
  python3 python3-grpcio python3-protobuf curl
)
if [[ "${1:-}" == "--train" ]]; then
  # bible-kjv dumps the corpus; OpenBLAS makes Debian torch ~4x faster than reference BLAS.
  packages+=(python3-torch python3-numpy bible-kjv-text bible-kjv libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
