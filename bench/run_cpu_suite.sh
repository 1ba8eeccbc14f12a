#!/usr/bin/env bash
# Runs the CPU benchmark table of bench/results/cpu.md: one JSON line per configuration.
#   bench/run_cpu_suite.sh [build-dir] > bench/results/cpu.jsonl
set -euo pipefail
bin="${1:-build}/bench/retain-bench"
run() { "$bin" "$@" --json; }
# RWKV-7 targets (issue 4)
run --arch rwkv7 --shape 1.5b --dtype f16 --mode decode --batch 1
run --arch rwkv7 --shape 1.5b --dtype f16 --mode decode --batch 32 --seconds 6
run --arch rwkv7 --shape 1.5b --dtype f16 --mode prefill --batch 1 --prompt-tokens 512 --seconds 6
run --arch rwkv7 --shape 0.1b --dtype f16 --mode decode --batch 1 --position 16
run --arch rwkv7 --shape 0.1b --dtype f16 --mode decode --batch 1 --position 16384
# Other shapes and dtypes
run --arch rwkv7 --shape 0.1b --dtype f32 --mode decode --batch 1
run --arch rwkv7 --shape 0.1b --dtype bf16 --mode decode --batch 8
run --arch rwkv7 --shape 0.4b --dtype bf16 --mode prefill --batch 1 --prompt-tokens 512
run --arch rwkv4 --shape 1.5b --dtype f16 --mode decode --batch 1
run --arch rwkv4 --shape 1.5b --dtype f16 --mode prefill --batch 1 --prompt-tokens 512 --seconds 6
# RetNet and TransNormerLLM (issue 5); long --position runs use the small shape (the history is
# really run through the model)
for b in 1 8 32; do run --arch retnet --shape small --dtype bf16 --mode decode --batch $b; done
for t in 512 4096; do run --arch retnet --shape small --dtype bf16 --mode prefill --batch 1 --prompt-tokens $t; done
for p in 16 1024 16384; do run --arch retnet --shape small --dtype bf16 --mode decode --batch 1 --position $p; done
for b in 1 8; do run --arch retnet --shape 1.3b --dtype bf16 --mode decode --batch $b; done
run --arch retnet --shape 1.3b --dtype bf16 --mode prefill --batch 1 --prompt-tokens 512 --seconds 6
for b in 1 8 32; do run --arch transnormer --shape 1b --dtype bf16 --mode decode --batch $b; done
run --arch transnormer --shape 1b --dtype bf16 --mode prefill --batch 1 --prompt-tokens 512 --seconds 6
for p in 16 1024; do run --arch transnormer --shape 1b --dtype bf16 --mode decode --batch 1 --position $p; done
