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
  # retain-server's OpenAI-compatible HTTP front-end (server/http) is served by cpp-httplib.
  libcpp-httplib-dev
  # retain-server checks its TLS files and hashes bearer tokens with OpenSSL (libcrypto).
  libssl-dev
  # The Redis state tier (--redis) speaks to Redis through hiredis; its tests run a real redis-server.
  libhiredis-dev redis-server redis-tools  # redis-tools: redis-cli, which builds the test cluster
  # retain-park-compression-bench measures zstd on parked session states (the engine and server
  # do not link it).
  libzstd-dev
  python3 python3-grpcio python3-protobuf curl
  # client/python installs with pip into a venv (tests/python/test_python_client.py); the TLS
  # tests make their certificates with openssl; client/node runs on node.
  python3-venv python3-pip python3-setuptools openssl nodejs
  # The Playground test drives the HTTP front-end's page in a real, headless browser
  # (puppeteer-core from client/node's lockfile, pointed at this chromium; nothing downloads one).
  chromium
  # deploy/prometheus: promtool checks the config and rules, and the end-to-end test runs a real
  # prometheus (its own, on 127.0.0.1; the Debian service is not started, see below) and reads the
  # dashboard and rules with PyYAML.
  prometheus python3-yaml
  # deploy/k8s: yamllint checks the manifests and kubectl renders them (tests/python/test_k8s.py).
  yamllint
  # scripts/fuzz.sh: the libFuzzer targets (fuzz/) build with clang-14 and its fuzzer, ASan and
  # UBSan runtimes.
  clang-14 libclang-rt-14-dev
)
# A nodejs package from elsewhere (NodeSource) carries npm itself and conflicts with Debian's.
command -v npm >/dev/null || packages+=(npm)
# Likewise a kubectl from elsewhere (Google's, Kubernetes') owns /usr/bin/kubectl, which Debian's
# kubernetes-client would overwrite; `kubectl kustomize` of either renders deploy/k8s.
command -v kubectl >/dev/null || packages+=(kubernetes-client)
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
else
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Debian's prometheus package would start its daemon (on :9090) as a system service; the tests
  # start their own. Unless the machine already has a policy-rc.d, one is put in place for this
  # install only, refusing every service start (exit 101), and removed afterwards.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
  fi
  status=0
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  if ((own_policy)); then $SUDO rm -f "$policy"; fi
  ((status == 0)) || exit $status
  # Under systemd the package also enables the unit for the next boot: a prometheus this script
  # installed stays off (one installed before it is left as it was).
  if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  echo "install-deps: installed ${missing[*]}"
fi

# client/node's packages, exactly as its committed lockfile says (from the npm registry). Skipped
# when node_modules was installed from this very lockfile: a stamp holds the lockfile's hash.
node_dir="$(cd "$(dirname "$0")/.." && pwd)/client/node"
lock_hash=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
stamp="$node_dir/node_modules/.retain-lock-sha256"
if [[ "$(cat "$stamp" 2>/dev/null)" == "$lock_hash" ]]; then
  echo "install-deps: client/node/node_modules matches package-lock.json"
else
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" >"$stamp"
  echo "install-deps: installed client/node/node_modules (npm ci)"
fi
