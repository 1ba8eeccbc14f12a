#!/usr/bin/env bash
# The server benchmark of issue 20: retain-server on random-weight RWKV-7 models at real shapes,
# measured through the real client over 127.0.0.1, beside retain-bench's in-process decode.
#
#   bench/server_bench.sh [--build DIR] [--quick] [--with-0.4b] [--jsonl FILE]
#
#   --build DIR   the build directory holding bench/, server/ and client/ (default: build)
#   --quick       a few minutes: 15 s per load point, 3 s per in-process point, 32 sessions
#                 (default: 60 s, 10 s, 128)
#   --with-0.4b   RWKV-7 0.4b after 0.1b (each model on a server of its own)
#   --throughput-only  only (c), the throughput points
#   --streams "N ..."  the stream counts of (c) (default "1 8 32 128")
#   --jsonl FILE  every raw result (load and bench JSON, memory, CPU) as one JSON object a line;
#                 the load server's log beside it (FILE without .jsonl + .server-MODEL.log)
#
# For each model, one server after another, all with --max-batch 128 --max-step-tokens 512:
#  (f) a server whose state arena (--state-budget-bytes) holds exactly N states (N = 128; 32 with
#      --quick): resident memory (VmRSS) idle with 0 sessions and with N sessions created, against
#      weights + N x state bytes + the fixed overhead measured idle; idle CPU (utime+stime) over
#      10 s, before and after;
#  then a server with room for 136 states:
#  (c) for 1, 8, 32 and 128 streams, retain-bench's in-process decode at that batch, then `retain
#      load` twice (64 generated, prompts of 1 random id: pure decode; then of 16 ids; each measured
#      after a 5 s warm-up) with the rows the server stepped (prefill + decode) in the same window
#      beside the tokens it delivered;
#  (d) inter-token latency at 32 streams alone, then with a loop of 4096-token prompts (1 token
#      generated each) sent beside them from 5 s after the streams start; and retain-bench's in-process
#      prefill in 512-token steps, to read those by;
#  (e) conversations (8, then 1, x 50 turns of 32 new ids, 16 generated): time to first token
#      per turn;
#  idle CPU and resident memory again after all of it.
# Everything listens on 127.0.0.1 only; the server is killed on exit. The markdown tables are
# printed last (progress goes to stderr).
set -euo pipefail

BUILD=build
QUICK=0
WITH_04B=0
JSONL=""
THROUGHPUT_ONLY=0
STREAMS=(1 8 32 128)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --with-0.4b) WITH_04B=1; shift ;;
    --jsonl) JSONL="$2"; shift 2 ;;
    --throughput-only) THROUGHPUT_ONLY=1; shift ;;
    --streams) read -r -a STREAMS <<< "$2"; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "server_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

WRITE_MODEL="$BUILD/bench/retain-write-model"
BENCH="$BUILD/bench/retain-bench"
SERVER="$BUILD/server/retain-server"
CLIENT="$BUILD/client/retain"
for b in "$WRITE_MODEL" "$BENCH" "$SERVER" "$CLIENT"; do
  [[ -x "$b" ]] || { echo "server_bench.sh: $b not built" >&2; exit 2; }
done
for t in jq curl; do command -v "$t" >/dev/null || { echo "server_bench.sh: needs $t" >&2; exit 2; }; done

if [[ $QUICK == 1 ]]; then
  LOAD_S=15; BENCH_S=3; BENCH_WINDOWS=3; SESSIONS=32
else
  LOAD_S=60; BENCH_S=10; BENCH_WINDOWS=5; SESSIONS=128
fi
IDLE_S=10
WARMUP_S=5  # (c): the streams run this long before tokens/s and the server's step counters are taken
ITL_STREAMS=32
ITL_WARM_S=5  # the streams run alone this long before the long prompts start
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/retain-server-bench-XXXXXX)
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  stop_server
  local j
  for j in $(jobs -p); do kill "$j" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[server_bench] $*" >&2; }
record() { [[ -z "$JSONL" ]] || echo "$1" >> "$JSONL"; }
# A client call bounded in time: its run time plus a margin for start-up and the end's drain.
client() { timeout "$1" "$CLIENT" --server "$ADDR" "${@:2}"; }
# A `retain load` or retain-bench JSON line; '{}' (and a note) when the command printed none. A load
# that saw errors still prints its JSON (and exits 10 + the first error's code): its row says so.
json_of() {
  local out rc=0
  out=$("$@") || rc=$?
  [[ $rc == 0 ]] || log "exit code $rc from: ${*:2}"
  [[ -n "$out" ]] && echo "$out" || echo '{}'
}

start_server() {  # $1 model name, $2 dir, $3 --state-budget-bytes
  : > "$TMP/server.log"
  "$SERVER" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --model "$1=$2" --max-batch 128 \
    --max-step-tokens 512 --state-budget-bytes "$3" --threads 0 2> "$TMP/server.log" &
  SERVER_PID=$!
  ADDR=""
  for _ in $(seq 600); do
    ADDR=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$TMP/server.log" | head -1)
    [[ -n "$ADDR" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; echo "server_bench.sh: retain-server exited" >&2; exit 1; }
    sleep 0.2
  done
  [[ -n "$ADDR" ]] || { cat "$TMP/server.log" >&2; echo "server_bench.sh: retain-server did not listen within 120 s" >&2; exit 1; }
  METRICS=$(sed -n 's|.*metrics on \(http://127\.0\.0\.1:[0-9][0-9]*/metrics\).*|\1|p' "$TMP/server.log" | head -1)
  SLOTS=$(sed -n 's/.* \([0-9][0-9]*\) slots of .*/\1/p' "$TMP/server.log" | head -1)
  log "retain-server pid $SERVER_PID on $ADDR ($1, ${SLOTS:-?} state slots): $(grep -m1 'listening on' "$TMP/server.log" | sed 's/.*retain-server: //')"
}

# Who used the CPUs during a measurement: noise_begin, the measurement, then noise_end sets NOISE
# to {"seconds", "others_pct", "steal_pct", "server_pct", "children_pct"}, in % of all CPUs:
# server = retain-server's utime+stime; children = this script's waited-for children (clients,
# retain-bench); others = the machine's busy ticks (/proc/stat user+nice+system+irq+softirq) less
# those two; steal = ticks the hypervisor gave to other guests.
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }
children_ticks() {  # of `times`, run in this shell (a command substitution would see its own)
  awk -v h="$CLK_TCK" 'NR == 2 {
    t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += 60 * p[1] + p[2] }
    printf "%d\n", t * h }' "$TMP/times"
}
noise_begin() {
  read -r NZ_BUSY NZ_STEAL < <(machine_ticks)
  times > "$TMP/times"
  NZ_CHILD=$(children_ticks); NZ_SRV=$(cpu_ticks); NZ_T=$(date +%s.%N)
}
noise_end() {  # sets NOISE (run it in this shell, not in a command substitution)
  local busy steal child srv t
  read -r busy steal < <(machine_ticks)
  times > "$TMP/times"
  child=$(children_ticks); srv=$(cpu_ticks); t=$(date +%s.%N)
  NOISE=$(awk -v b="$((busy - NZ_BUSY))" -v st="$((steal - NZ_STEAL))" -v c="$((child - NZ_CHILD))" -v s="$((srv - NZ_SRV))" \
    -v t0="$NZ_T" -v t1="$t" -v h="$CLK_TCK" -v n="$(nproc)" 'BEGIN {
    cap = (t1 - t0) * h * n; o = b - c - s; if (o < 0) o = 0;
    printf "{\"seconds\": %.1f, \"others_pct\": %.1f, \"steal_pct\": %.1f, \"server_pct\": %.1f, \"children_pct\": %.1f}\n",
      t1 - t0, 100 * o / cap, 100 * st / cap, 100 * s / cap, 100 * c / cap }')
}

# The server's own step counters: "step_seconds_sum steps batch_sum batches" (Prometheus text).
step_counters() {
  curl -s --max-time 10 "$METRICS" | awk '
    /^retain_step_duration_seconds_sum/ {a = $NF} /^retain_step_duration_seconds_count/ {b = $NF}
    /^retain_decode_batch_size_sum/ {c = $NF} /^retain_decode_batch_size_count/ {d = $NF}
    /^retain_step_tokens_total/ {e += $NF}
    END {printf "%s %s %s %s %s\n", a + 0, b + 0, c + 0, d + 0, e + 0}'
}
status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }  # utime + stime (fields 14, 15)
idle_cpu() {  # prints "ticks seconds"
  local a b
  a=$(cpu_ticks); sleep "$IDLE_S"; b=$(cpu_ticks)
  echo "$((b - a)) $IDLE_S"
}
cpu_row() {  # $1 model, $2 when, $3 ticks, $4 seconds
  ROWS_CPU+="| $1 | $2 | $3 | $4 | $(awk -v t="$3" -v s="$4" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", 100 * t / h / s}') |"$'\n'
  record "$(jq -nc --arg m "$1" --arg w "$2" --argjson t "$3" --argjson s "$4" --argjson h "$CLK_TCK" '{kind: "idle_cpu", model: $m, when: $w, ticks: $t, seconds: $s, clk_tck: $h}')"
}
# One memory row: RSS against weights + sessions x state + the fixed overhead, which is what the
# same server held idle with no session beyond its weights (RSS idle - weights).
mem_row() {  # $1 model, $2 what, $3 weight bytes, $4 state bytes, $5 slots, $6 sessions, $7 RSS KiB idle, $8 RSS KiB now
  ROWS_MEM+=$(awk -v m="$1" -v what="$2" -v w="$3" -v s="$4" -v slots="$5" -v n="$6" -v r0="$7" -v rn="$8" 'BEGIN {
    mib = 1048576; fixed = r0 * 1024 - w; now = rn * 1024; bound = w + n * s * 1.05 + fixed;
    printf "| %s | %s | %.1f | %.2f | %d | %.1f | %.1f | %d | %.1f | %.1f | %+.1f | %s |\n", m, what, w / mib, s / mib, slots, r0 * 1024 / mib,
      fixed / mib, n, now / mib, (w + n * s + fixed) / mib, (now - r0 * 1024) / mib, (n > 0 ? (now <= bound ? "yes" : "no") : "n/a (no sessions: what the load left)") }')$'\n'
}

ROWS_THROUGHPUT=""
ROWS_ITL=""
ROWS_CONV=""
ROWS_MEM=""
ROWS_CPU=""

bench_model() {  # $1 shape
  local shape="$1" name="rwkv7-$1" dir="$TMP/rwkv7-$1"
  log "writing $name"
  "$WRITE_MODEL" --arch rwkv7 --shape "$shape" --dtype f16 --seed 1 --out "$dir" >&2
  local weight_bytes state_bytes
  weight_bytes=$(stat -c %s "$dir/model.safetensors")
  # The state bytes per session, from a first start (the budget then sizes the arena exactly).
  start_server "$name" "$dir" 64MiB
  state_bytes=$(client 30 models --json | jq '.[0].state_bytes')
  stop_server

  if [[ $THROUGHPUT_ONLY == 0 ]]; then
    # (f) memory and idle CPU on a server whose arena holds exactly SESSIONS states.
    start_server "$name" "$dir" $((SESSIONS * state_bytes))
    local slots=$SLOTS rss0 anon0 file0 rssn anonn filen ticks secs i
    sleep 2
    rss0=$(status_kib VmRSS); anon0=$(status_kib RssAnon); file0=$(status_kib RssFile)
    read -r ticks secs < <(idle_cpu)
    cpu_row "$name" "fresh, 0 sessions" "$ticks" "$secs"
    for ((i = 0; i < SESSIONS; i++)); do client 30 session create --model "$name" > /dev/null 2>&1 || log "session create $i failed"; done
    sleep 1
    rssn=$(status_kib VmRSS); anonn=$(status_kib RssAnon); filen=$(status_kib RssFile)
    read -r ticks secs < <(idle_cpu)
    cpu_row "$name" "$SESSIONS idle sessions" "$ticks" "$secs"
    log "memory: idle VmRSS $rss0 KiB, with $SESSIONS sessions $rssn KiB ($slots slots)"
    record "$(jq -nc --arg model "$name" --argjson w "$weight_bytes" --argjson s "$state_bytes" --argjson n "$SESSIONS" --argjson slots "${slots:-0}" \
      --argjson r0 "$rss0" --argjson a0 "$anon0" --argjson f0 "$file0" --argjson rn "$rssn" --argjson an "$anonn" --argjson fn "$filen" \
      '{kind: "memory", model: $model, weight_bytes: $w, state_bytes: $s, slots: $slots, sessions: $n,
        idle_kib: {VmRSS: $r0, RssAnon: $a0, RssFile: $f0}, sessions_kib: {VmRSS: $rn, RssAnon: $an, RssFile: $fn}}')"
    mem_row "$name" "arena = $SESSIONS states" "$weight_bytes" "$state_bytes" "${slots:-0}" "$SESSIONS" "$rss0" "$rssn"
    stop_server
  fi

  # The load server: room for 128 streams' throw-away states and a few more.
  start_server "$name" "$dir" $(((128 + 8) * state_bytes))
  local load_slots=$SLOTS load_rss0
  sleep 2
  load_rss0=$(status_kib VmRSS)

  # (c) throughput: the server's generated tokens/s beside the engine's in-process decode, with
  # prompts of 1 id (each request is then 64 decode rows, the in-process bench's work) and of 16
  # ids (each request also prefills 15 more rows, which in-process decode never does: the rows
  # column is retain_step_tokens_total, prefill + decode rows, the work both sides did).
  local n p load bench steps s0 c0 b0 d0 p0 s1 c1 b1 d1 p1 load_noise bench_noise
  for n in "${STREAMS[@]}"; do
    log "$name: retain-bench decode batch $n"
    noise_begin
    bench=$(json_of timeout $((BENCH_S * 4 + 300)) "$BENCH" --arch rwkv7 --shape "$shape" --dtype f16 --mode decode --batch "$n" \
      --seconds "$BENCH_S" --windows "$BENCH_WINDOWS" --json)
    noise_end; bench_noise=$NOISE
    for p in 1 16; do
      log "$name: $n streams, $p-id prompts, $WARMUP_S s warm-up then $LOAD_S s (load $(cut -d' ' -f1-3 /proc/loadavg))"
      # The load runs in the background so that the server's counters are read when its measured
      # window starts (after the warm-up) and when it ends, the same window as its tokens/s.
      client $((WARMUP_S + LOAD_S + 120)) load --streams "$n" --warmup "$WARMUP_S" --duration "$LOAD_S" --prompt-tokens "$p" \
        --max-tokens 64 --json --quiet > "$TMP/load.json" &
      local load_pid=$! load_rc=0
      sleep "$WARMUP_S"
      read -r s0 c0 b0 d0 p0 < <(step_counters)
      noise_begin
      wait "$load_pid" || load_rc=$?
      read -r s1 c1 b1 d1 p1 < <(step_counters)
      noise_end; load_noise=$NOISE
      [[ $load_rc == 0 ]] || log "exit code $load_rc from: load --streams $n --prompt-tokens $p"
      load=$(cat "$TMP/load.json"); [[ -n "$load" ]] || load='{}'
      steps=$(awk -v s0="$s0" -v c0="$c0" -v b0="$b0" -v d0="$d0" -v p0="$p0" -v s1="$s1" -v c1="$c1" -v b1="$b1" -v d1="$d1" -v p1="$p1" \
        'BEGIN {printf "{\"step_seconds\": %.6f, \"steps\": %d, \"batch_sum\": %d, \"batches\": %d, \"rows\": %d}\n", s1 - s0, c1 - c0, b1 - b0, d1 - d0, p1 - p0}' |
        jq -c '. + {mean_step_ms: (if .steps > 0 then 1e3 * .step_seconds / .steps else null end), mean_batch: (if .batches > 0 then .batch_sum / .batches else null end)}')
      record "$(jq -nc --argjson l "$load" --argjson b "$bench" --argjson st "$steps" --argjson ln "$load_noise" --argjson bn "$bench_noise" \
        --argjson p "$p" --arg loadavg "$(cat /proc/loadavg)" '{kind: "throughput", prompt_ids: $p, load: $l, bench: $b, server_steps: $st, load_noise: $ln, bench_noise: $bn, loadavg: $loadavg}')"
      ROWS_THROUGHPUT+=$(jq -nr --arg m "$name" --argjson p "$p" --argjson l "$load" --argjson b "$bench" --argjson st "$steps" --argjson ln "$load_noise" --argjson bn "$bench_noise" \
        '($st.rows / $l.elapsed_seconds) as $rows |
        "| \($m) | \($l.streams) | \($p) | \($l.tokens_per_second * 10 | round / 10) | \($b.tokens_per_s * 10 | round / 10) | \(100 * $l.tokens_per_second / $b.tokens_per_s | round) % | \($rows | round) | \(100 * $rows / $b.tokens_per_s | round) % | \($l.ttft_seconds.p50 * 1e4 | round / 10) | \($l.itl_seconds.p50 * 1e4 | round / 10) | \($l.itl_seconds.p99 * 1e4 | round / 10) | \($b.step_ms * 10 | round / 10) | \(if $st.mean_step_ms then ($st.mean_step_ms * 10 | round / 10) else "?" end) | \(if $st.mean_batch then ($st.mean_batch * 10 | round / 10) else "?" end) | \($l.requests) | \($ln.server_pct) / \($ln.children_pct) | \($ln.others_pct) / \($ln.steal_pct) | \($bn.others_pct) / \($bn.steal_pct) | \(if ($l.errors | length) == 0 then "none" else ($l.errors | to_entries | map("\(.key) \(.value)") | join(", ")) end) |"' 2>/dev/null || echo "| $name | $n | $p | no result (see the log) |")$'\n'
    done
  done

  if [[ $THROUGHPUT_ONLY == 1 ]]; then
    stop_server
    return
  fi

  # (d) inter-token latency at ITL_STREAMS streams, alone and with 4096-token prompts alongside.
  log "$name: ITL at $ITL_STREAMS streams alone"
  local alone beside long alone_noise beside_noise
  noise_begin
  alone=$(json_of client $((LOAD_S + 120)) load --streams "$ITL_STREAMS" --duration "$LOAD_S" --prompt-tokens 16 --max-tokens 64 --json --quiet)
  noise_end; alone_noise=$NOISE
  # The streams first, so they are decoding when the long prompts come; the loop of long prompts
  # then runs for LOAD_S of their LOAD_S + ITL_WARM_S seconds.
  log "$name: ITL at $ITL_STREAMS streams with a loop of 4096-token prompts beside"
  noise_begin
  json_of client $((LOAD_S + ITL_WARM_S + 120)) load --streams "$ITL_STREAMS" --duration $((LOAD_S + ITL_WARM_S)) \
    --prompt-tokens 16 --max-tokens 64 --json --quiet > "$TMP/beside.json" &
  local beside_pid=$!
  sleep "$ITL_WARM_S"
  long=$(json_of client $((LOAD_S + 180)) load --streams 1 --duration "$LOAD_S" --prompt-tokens 4096 --max-tokens 1 --seed 9 --json --quiet)
  wait "$beside_pid" || true
  noise_end; beside_noise=$NOISE
  beside=$(cat "$TMP/beside.json")
  record "$(jq -nc --argjson a "$alone" --argjson b "$beside" --argjson p "$long" --argjson an "$alone_noise" --argjson bn "$beside_noise" \
    '{kind: "itl", alone: $a, beside_prefill: $b, prefill_loop: $p, alone_noise: $an, beside_noise: $bn}')"
  ROWS_ITL+=$(jq -nr --arg m "$name" --argjson a "$alone" --argjson b "$beside" --argjson p "$long" --argjson an "$alone_noise" --argjson bn "$beside_noise" '
    def ms(x): x * 1e4 | round / 10;
    "| \($m) | nothing | \(ms($a.itl_seconds.p50)) | \(ms($a.itl_seconds.p90)) | \(ms($a.itl_seconds.p99)) | \($a.itl_seconds.p99 / $a.itl_seconds.p50 * 100 | round / 100) | \(ms($a.ttft_seconds.p50)) / \(ms($a.ttft_seconds.p99)) | | \($a.tokens_per_second | round) | \($an.others_pct) / \($an.steal_pct) |",
    "| \($m) | 4096-token prompts, one after another | \(ms($b.itl_seconds.p50)) | \(ms($b.itl_seconds.p90)) | \(ms($b.itl_seconds.p99)) | \($b.itl_seconds.p99 / $b.itl_seconds.p50 * 100 | round / 100) | \(ms($b.ttft_seconds.p50)) / \(ms($b.ttft_seconds.p99)) | \($p.requests) done + \($p.cancelled_at_end) cut at the end; ttft p50 \(ms($p.ttft_seconds.p50)) ms | \($b.tokens_per_second | round) | \($bn.others_pct) / \($bn.steal_pct) |"' 2>/dev/null || echo "| $name | no result (see the log) |")$'\n'

  # What a 512-row prefill step costs in-process, for reading the table above.
  log "$name: retain-bench prefill 512 tokens"
  local prefill prefill_noise
  noise_begin
  prefill=$(json_of timeout 600 "$BENCH" --arch rwkv7 --shape "$shape" --dtype f16 --mode prefill --batch 1 --prompt-tokens 512 \
    --step-tokens 512 --seconds "$BENCH_S" --windows "$BENCH_WINDOWS" --json)
  noise_end; prefill_noise=$NOISE
  record "$(jq -nc --argjson b "$prefill" --argjson n "$prefill_noise" '{kind: "prefill_in_process", bench: $b, noise: $n}')"
  ROWS_ITL+=$(jq -nr --arg m "$name" --argjson b "$prefill" --argjson n "$prefill_noise" \
    '"| \($m) | (in-process prefill, 512-token chunks: \($b.tokens_per_s | round) tok/s, \($b.step_ms | round) ms per 512; a 4096-token prompt alone: \(4096 / $b.tokens_per_s * 10 | round / 10) s) | | | | | | | | \($n.others_pct) / \($n.steal_pct) |"' 2>/dev/null || echo "| $name | in-process prefill: no result |")$'\n'

  # (e) conversations: every turn appends 32 ids to its session and generates 16; 8 at once, then
  # one alone (the turn's cost against its position, without the others' prefills beside it).
  local c conv conv_noise
  for c in 8 1; do
    log "$name: conversations $c x 50 turns"
    noise_begin
    conv=$(json_of client 1800 load --conversations "$c" --turns 50 --turn-tokens 32 --max-tokens 16 --json --quiet)
    noise_end; conv_noise=$NOISE
    record "$(jq -nc --argjson c "$conv" --argjson n "$conv_noise" '{kind: "conversations", load: $c, noise: $n}')"
    ROWS_CONV+=$(jq -nr --arg m "$name" --argjson c "$conv" --argjson n "$conv_noise" -f "$TMP/conv.jq" 2>/dev/null || echo "| $name | no result (see the log) |")$'\n'
  done

  # Idle again, after all the load: nothing left spinning, and what the load left resident.
  sleep 2
  read -r ticks secs < <(idle_cpu)
  cpu_row "$name" "after the load" "$ticks" "$secs"
  local load_rss1
  load_rss1=$(status_kib VmRSS)
  record "$(jq -nc --arg model "$name" --argjson slots "${load_slots:-0}" --argjson r0 "$load_rss0" --argjson r1 "$load_rss1" \
    '{kind: "memory_load_server", model: $model, slots: $slots, idle_before_kib: $r0, idle_after_load_kib: $r1}')"
  mem_row "$name" "load server, after the load (0 sessions)" "$weight_bytes" "$state_bytes" "${load_slots:-0}" 0 "$load_rss0" "$load_rss1"
  [[ -z "$JSONL" ]] || cp "$TMP/server.log" "${JSONL%.jsonl}.server-$name.log"
  stop_server
  rm -rf "$dir"
}

# Turn 2 against turn 50 (and turn 1), from the conversation JSON's per-turn figures.
cat > "$TMP/conv.jq" <<'EOF'
def ms(x): x * 1e4 | round / 10;
def turn(n): $c.per_turn[] | select(.turn == n);
def mean_ttft(a; b): [$c.per_turn[] | select(.turn >= a and .turn <= b) | .ttft_p50_seconds] | add / length;
turn(1) as $t1 | turn(2) as $t2 | turn($c.turns) as $tl |
mean_ttft(2; 6) as $early | mean_ttft($c.turns - 4; $c.turns) as $late |
"| \($m) | \($c.conversations) x \($c.turns) | \(ms($t1.ttft_p50_seconds)) | \(ms($t2.ttft_p50_seconds)) | \(ms($tl.ttft_p50_seconds)) | \((100 * ($tl.ttft_p50_seconds / $t2.ttft_p50_seconds - 1)) | round) % | \(ms($t2.server_ttft_p50_seconds)) / \(ms($tl.server_ttft_p50_seconds)) | \($t2.prompt_tokens_p50) / \($tl.prompt_tokens_p50) | \($tl.position_p50) | \(ms($early)) / \(ms($late)) (\((100 * ($late / $early - 1)) | round) %) | \($n.others_pct) / \($n.steal_pct) |"
EOF

LOAD_START=$(cat /proc/loadavg)
log "load average at start: $LOAD_START"
bench_model 0.1b
[[ $WITH_04B == 1 ]] && bench_model 0.4b
LOAD_END=$(cat /proc/loadavg)

cat <<EOF

load average at start: $LOAD_START; at the end: $LOAD_END ($(nproc) CPUs)

| model | streams | prompt ids | server tok/s | in-process tok/s | ratio | server rows/s (prompt + decode) | rows ratio | ttft p50 ms | itl p50 ms | itl p99 ms | in-process step ms | server mean step ms | server mean batch | requests done | server / client CPU % | others' CPU / steal %, load | the same, in-process | errors |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
${ROWS_THROUGHPUT}
EOF
[[ $THROUGHPUT_ONLY == 1 ]] && exit 0
cat <<EOF
| model | beside the $ITL_STREAMS streams | itl p50 ms | itl p90 ms | itl p99 ms | p99 / p50 | streams' ttft p50 / p99 ms | long prompts | streams' tok/s | others' CPU / steal % |
|---|---|---|---|---|---|---|---|---|---|
${ROWS_ITL}
| model | conversations | ttft turn 1 ms | ttft turn 2 ms | ttft last turn ms | last vs turn 2 | server's ttft ms (2 / last) | prompt tokens (2 / last) | position after last | mean ttft ms, turns 2-6 / last 5 | others' CPU / steal % |
|---|---|---|---|---|---|---|---|---|---|---|
${ROWS_CONV}
| model | server | weights MiB | state MiB | arena slots | RSS idle MiB | fixed overhead MiB | sessions | RSS MiB | weights + sessions x state + fixed MiB | RSS change MiB | RSS <= weights + N x state x 1.05 + fixed |
|---|---|---|---|---|---|---|---|---|---|---|---|
${ROWS_MEM}
| model | when | CPU ticks (utime+stime) | seconds | % of one core |
|---|---|---|---|---|
${ROWS_CPU}
EOF
