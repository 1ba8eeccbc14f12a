#!/usr/bin/env bash
# The thread pool when the cores are shared: retain-bench at 1 thread and at the default thread
# count, on an idle machine and with a busy neighbour process pinned on one core, interleaved in
# one run so that every figure of a round is measured within the same minute or two.
#
#   bench/contended.sh [build-dir] [rounds] [retain-bench flags...] > out.jsonl
#
# Defaults: build, 3 rounds, RWKV-7 0.1b f16 decode at batch 1 (--seconds 4 --windows 4).
# NEIGHBOUR_CPU (default: the last CPU of this shell's affinity mask) is the core the neighbour
# keeps busy: `taskset -c CPU sh -c 'while :; do :; done'`, bounded by `timeout`, started before
# and killed after each contended run (and on exit, whatever happens). retain-bench itself is not
# pinned: it may use every CPU it is allowed, as a server would.
#
# Prints one JSON line per run (retain-bench's, plus "condition", "threads_flag", "loadavg") on
# stdout and, on stderr, a table: per condition, the throughput over all windows (tokens/s, the
# median of the rounds and every round) at 1 thread and at the default, and default / 1.
set -euo pipefail
build="${1:-build}"
rounds="${2:-3}"
shift $(( $# >= 2 ? 2 : $# ))
bin="$build/bench/retain-bench"
[[ -x "$bin" ]] || { echo "contended.sh: no $bin (build first)" >&2; exit 2; }
flags=("$@")
(( ${#flags[@]} )) || flags=(--arch rwkv7 --shape 0.1b --dtype f16 --mode decode --batch 1 --seconds 4 --windows 4)
cpus=$(taskset -pc $$ | sed 's/.*: //')
last_cpu=$(python3 -c "import os; print(max(os.sched_getaffinity(0)))")
cpu="${NEIGHBOUR_CPU:-$last_cpu}"

neighbour=""
stop_neighbour() {
  if [[ -n "$neighbour" ]]; then
    kill "$neighbour" 2>/dev/null || true
    wait "$neighbour" 2>/dev/null || true
    neighbour=""
  fi
}
out=$(mktemp)
trap 'stop_neighbour; rm -f "$out"' EXIT
trap 'exit 130' INT TERM
run() {  # condition threads_flag
  local cond="$1" t="$2" load line
  if [[ "$cond" == contended ]]; then
    timeout 900 taskset -c "$cpu" sh -c 'while :; do :; done' &
    neighbour=$!
    sleep 0.5  # the neighbour is running before the model is built
  fi
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  line=$("$bin" "${flags[@]}" --threads "$t" --json)
  stop_neighbour
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j.update(condition=sys.argv[2], threads_flag=int(sys.argv[3]), loadavg=sys.argv[4]); print(json.dumps(j))' \
    "$line" "$cond" "$t" "$load" | tee -a "$out"
}

echo "contended.sh: CPUs allowed $cpus, neighbour on CPU $cpu, $rounds rounds of: ${flags[*]}" >&2
for ((r = 0; r < rounds; ++r)); do
  # ABBA within a round and alternating rounds, so that a drift of the host does not favour one side.
  if (( r % 2 == 0 )); then order=("idle 1" "idle 0" "contended 0" "contended 1"); else order=("contended 1" "contended 0" "idle 0" "idle 1"); fi
  for o in "${order[@]}"; do run $o; done
done

python3 - "$out" >&2 <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def fig(cond, t):
    return [r["tokens_per_s_all_windows"] for r in rows if r["condition"] == cond and r["threads_flag"] == t]
default_threads = sorted({r["threads"] for r in rows if r["threads_flag"] == 0})
print(f"\n| condition | 1 thread tok/s (rounds) | default ({','.join(map(str, default_threads))} threads) tok/s (rounds) | default / 1 |")
print("|---|---|---|---|")
for cond in ("idle", "contended"):
    one, dflt = fig(cond, 1), fig(cond, 0)
    if not one or not dflt:
        continue
    m1, md = statistics.median(one), statistics.median(dflt)
    fmt = lambda v: " ".join(f"{x:.1f}" for x in v)
    print(f"| {cond} | **{m1:.1f}** ({fmt(one)}) | **{md:.1f}** ({fmt(dflt)}) | **{md / m1:.2f}** |")
EOF
