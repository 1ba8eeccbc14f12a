#!/usr/bin/env bash
# Issue 19 through the real server: time to first token for a request whose 4,096-token prefix is
# in the prefix cache against the same request on a cold cache, and for an edit of the last turn of
# an 8-turn session (RewindSession, then the new turn) against re-prefilling the whole conversation
# on a fresh state. retain-server on random-weight RWKV-7 models (retain-write-model), the `retain`
# CLI over 127.0.0.1; TTFT is the server's own (Finished.usage.time_to_first_token_seconds).
#
#   bench/history_server_bench.sh [--build DIR] [--shapes "0.1b 0.4b"]
#
# Prints a markdown table last; progress goes to stderr. Token ids are random (seeded): the cost of
# a prefill does not depend on which ids it reads.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
SHAPES="0.1b"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --shapes) SHAPES="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "history_server_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
SERVER="$BUILD/server/retain-server" CLIENT="$BUILD/client/retain" WRITE_MODEL="$BUILD/bench/retain-write-model"
for b in "$SERVER" "$CLIENT" "$WRITE_MODEL"; do [[ -x "$b" ]] || { echo "history_server_bench.sh: build $b first" >&2; exit 1; }; done

TMP=$(mktemp -d)
SERVER_PID=""
trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
log() { echo "[history_bench] $*" >&2; }

start_server() {  # $1 model dir
  "$SERVER" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --model "m=$1" --max-step-tokens 512 \
    --prefix-cache-bytes 1GiB --prefix-block 256 --threads 0 2> "$TMP/server.log" &
  SERVER_PID=$!
  ADDR=""
  for _ in $(seq 600); do
    ADDR=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$TMP/server.log" | head -1)
    [[ -n "$ADDR" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
    sleep 0.2
  done
  [[ -n "$ADDR" ]] || { echo "history_server_bench.sh: no server within 120 s" >&2; exit 1; }
  METRICS=$(sed -n 's|.*metrics on \(http://127\.0\.0\.1:[0-9][0-9]*/metrics\).*|\1|p' "$TMP/server.log" | head -1)
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }
cli() { "$CLIENT" --server "$ADDR" "$@"; }
ids() { shuf -i 0-65000 -n "$1" --random-source=<(yes "$2") | tr '\n' ' '; }  # $1 count, $2 seed
# The server's TTFT in ms of a greedy request ($@: generate's arguments), from the CLI's summary.
ttft_ms() {
  cli generate --temperature 0 --ignore-eos "$@" 2>&1 >/dev/null |
    sed -n 's/.*finished:.* ttft=\([0-9.]*\)s.*/\1/p' | awk '{printf "%.0f", $1 * 1000}'
}
metric() { curl -s "$METRICS" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'; }
now() { date +%s.%N; }

ROWS=""
for shape in $SHAPES; do
  dir="$TMP/rwkv7-$shape"
  log "writing rwkv7-$shape"
  "$WRITE_MODEL" --arch rwkv7 --shape "$shape" --dtype f16 --seed 1 --out "$dir" >&2
  start_server "$dir"

  # Shared prefix: the first request fills the cache, the second (another 32-id suffix) hits it.
  system=$(ids 4096 1)
  cold=$(ttft_ms --max-tokens 1 --tokens "$system $(ids 32 2)")
  hit_before=$(metric retain_prefix_cache_hit_tokens_total)
  warm=$(ttft_ms --max-tokens 1 --tokens "$system $(ids 32 3)")
  cached=$(( $(metric retain_prefix_cache_hit_tokens_total) - hit_before ))
  log "$shape: 4096-token prefix: cold ${cold} ms, cached ${warm} ms ($cached tokens from the cache)"
  ROWS+="| rwkv7-$shape | 4,096-token system prompt + 32 own ids, 1 generated | ${cold} ms (cache cold) | ${warm} ms | $(awk -v a="$cold" -v b="$warm" 'BEGIN {printf "%.1fx", a / b}') | $cached cached tokens |"$'\n'

  # Edit the last turn of 8 turns of 104 ids: rewind to the end of turn 7, send the new turn.
  s=$(cli session create 2>/dev/null)
  history=""
  for t in $(seq 1 8); do
    turn=$(ids 104 $((10 + t)))
    [[ $t -le 7 ]] && history+="$turn "
    cli generate --session "$s" --max-tokens 0 --tokens "$turn" > /dev/null 2>&1
  done
  edit=$(ids 104 99)
  t0=$(now)
  cli session rewind "$s" 728 > /dev/null 2>&1
  t1=$(now)
  rewind_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", (b - a) * 1000}')
  edited=$(ttft_ms --session "$s" --max-tokens 1 --tokens "$edit")
  reprefill=$(ttft_ms --max-tokens 1 --tokens "$history $edit")
  log "$shape: edit of turn 8: rewind ${rewind_ms} ms + ttft ${edited} ms; re-prefill of 832 ids ${reprefill} ms"
  ROWS+="| rwkv7-$shape | edit the last of 8 turns of 104 ids (832 tokens) | ${reprefill} ms (re-prefill 832 ids on a fresh state) | ${rewind_ms} ms RewindSession + ${edited} ms the new turn | $(awk -v a="$reprefill" -v b="$((rewind_ms + edited))" 'BEGIN {printf "%.1fx", a / b}') | 104 tokens fed after the rewind |"$'\n'
  stop_server
done

cat <<EOF

load average at the end: $(cat /proc/loadavg) ($(nproc) CPUs)

| model | request | without (TTFT) | with | speed-up | note |
|---|---|---|---|---|---|
${ROWS}
EOF
