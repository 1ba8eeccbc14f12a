#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang-14, ASan + UBSan) in their own build directory and
# runs each over its seed corpus for a bounded number of executions. CI (.ci/run) runs the smoke.
#
#   scripts/fuzz.sh                      smoke: every target, its smoke count of executions
#   scripts/fuzz.sh --runs N [TARGET..]  N executions of each (of the named targets)
#   scripts/fuzz.sh --time S [TARGET..]  S seconds of each (the long run; bench/results/fuzz.md)
#
# Seeds: fuzz/corpus/TARGET (committed: hand-written inputs and every regression input), those
# retain-fuzz-seeds writes (requests, real session snapshots), and files of the checkout (the
# conformance kits' weights and config.json, the head of the World vocabulary). New inputs a run
# finds go to $RETAIN_FUZZ_WORK (default build-fuzz/work), not to the repository; crashes to
# $RETAIN_FUZZ_WORK/artifacts. Exits non-zero when any target crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
build="${RETAIN_FUZZ_BUILD:-$root/build-fuzz}"
work="${RETAIN_FUZZ_WORK:-$build/work}"

mode=smoke value=0
case "${1:-}" in
  --runs) mode=runs value="$2"; shift 2 ;;
  --time) mode=time value="$2"; shift 2 ;;
esac
targets=("$@")
((${#targets[@]})) || targets=(fuzz_safetensors fuzz_model_config fuzz_world_vocab fuzz_world_tokenizer
                               fuzz_request_validation fuzz_session_snapshot fuzz_tenant_file)

# The smoke's executions per target: about 10-20 s each on one busy core.
declare -A smoke_runs=(
  [fuzz_safetensors]=20000 [fuzz_model_config]=3000 [fuzz_world_vocab]=5000
  [fuzz_world_tokenizer]=100000 [fuzz_request_validation]=200000 [fuzz_session_snapshot]=50000
  [fuzz_tenant_file]=20000)
declare -A dicts=(
  [fuzz_safetensors]=safetensors [fuzz_model_config]=model_config [fuzz_world_vocab]=world_vocab
  [fuzz_session_snapshot]=session_snapshot [fuzz_tenant_file]=tenant_file)

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRETAIN_FUZZ=ON
fi
cmake --build "$build" --target "${targets[@]}" retain-fuzz-seeds

# Seeds into the working corpora (existing inputs there are kept: a later run goes on from them).
mkdir -p "$work/artifacts"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp -n "$root/fuzz/corpus/$t/"* "$work/$t/" 2>/dev/null || true
done
"$build/fuzz/retain-fuzz-seeds" "$work/seeds"
for t in "${targets[@]}"; do
  [[ -d "$work/seeds/$t" ]] && cp -n "$work/seeds/$t/"* "$work/$t/"
done
kits="$root/tests/data/conformance"
i=0
for kit in rwkv7-tiny rwkv7-tiny-bf16 rwkv4-tiny retnet-tiny transnormer-tiny; do
  [[ -d "$work/fuzz_safetensors" ]] && cp -n "$kits/$kit/model.safetensors" "$work/fuzz_safetensors/kit-$kit"
  # fuzz_model_config's first byte picks the weights (the order of its kWeights).
  [[ -d "$work/fuzz_model_config" ]] &&
    { printf "\\x$(printf %02x $i)"; cat "$kits/$kit/config.json"; } >"$work/fuzz_model_config/kit-$kit"
  i=$((i + 1))
done
[[ -d "$work/fuzz_model_config" ]] &&
  { printf '\x05'; cat "$root/models/rwkv7-kjv-byte/config.json"; } >"$work/fuzz_model_config/rwkv7-kjv-byte"
[[ -d "$work/fuzz_world_vocab" ]] &&
  head -n 320 "$kits/tokenizer/rwkv_vocab_v20230424.txt" >"$work/fuzz_world_vocab/head-320"
[[ -d "$work/fuzz_world_tokenizer" ]] &&
  head -c 2000 "$root/models/rwkv7-kjv-byte/heldout.txt" >"$work/fuzz_world_tokenizer/heldout-head"

failed=()
for t in "${targets[@]}"; do
  args=(-rss_limit_mb=2560 -timeout=30 -print_final_stats=1 -artifact_prefix="$work/artifacts/$t-")
  [[ -n "${dicts[$t]:-}" ]] && args+=(-dict="$root/fuzz/dict/${dicts[$t]}.dict")
  case "$mode" in
    smoke) args+=(-runs="${smoke_runs[$t]}" -max_total_time=120) ;;
    runs) args+=(-runs="$value") ;;
    time) args+=(-max_total_time="$value") ;;
  esac
  log="$work/$t.log"
  start=$SECONDS
  if "$build/fuzz/$t" "${args[@]}" "$work/$t" >"$log" 2>&1; then status=ok; else status=CRASH; failed+=("$t"); fi
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  printf 'fuzz: %-24s %-5s %10s execs  %-20s %4ss  corpus %s\n' "$t" "$status" "${execs:-?}" "${cov:-?}" \
    "$((SECONDS - start))" "$(ls "$work/$t" | wc -l)"
  [[ $status == ok ]] || tail -n 40 "$log"
done
if ((${#failed[@]})); then
  echo "fuzz: crashed: ${failed[*]} (inputs in $work/artifacts)"
  exit 1
fi
