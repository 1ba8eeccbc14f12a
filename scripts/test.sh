#!/usr/bin/env bash
# The README's test command: installs dependencies, builds, runs every test through ctest.
# Exits non-zero when any test fails. CI (.ci/run) runs exactly this.
#
#   scripts/test.sh                      build/ and every test (what CI runs)
#   scripts/test.sh --sanitize LIST      a sanitizer build in build-sanitize-LIST/ and its tests:
#                                        address,undefined = the whole suite under ASan + UBSan;
#                                        thread = the engine alone (-DRETAIN_ENGINE_ONLY=ON) under TSan
#                                        (bench/results/sanitizers.md; not in CI: it doubles the build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
if [[ "${1:-}" == "--sanitize" ]]; then
  list="${2:?--sanitize needs a list: address,undefined or thread}"
  dir="build-sanitize-${list//,/-}"
  extra=()
  [[ "$list" == thread ]] && extra=(-DRETAIN_ENGINE_ONLY=ON)
  bash scripts/build.sh --build-dir "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DRETAIN_SANITIZE=$list" "${extra[@]}"
  # Reports fail the test that caused them; the servers the tests start inherit these.
  export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
  ctest --test-dir "$dir" --output-on-failure --parallel "$(nproc)" --timeout 1800
  exit
fi
bash scripts/build.sh
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 900
