#!/usr/bin/env python3
"""Turns retain-bench JSON lines into the markdown table of bench/results/cpu.md (stdlib only)."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]


def spread(d):
    f = d.get("window_roofline_fractions")
    return f"{min(f):.0%}–{max(f):.0%}" if f else ""


print("| arch | shape | dtype | mode | batch | prompt | position | tokens/s | step ms | bound | roofline fraction | windows' range | FMA fraction | peak RSS over weights+states | read GB/s | FMA GFLOP/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for d in rows:
    print(f"| {d['arch']} | {d['shape']} | {d['dtype']} | {d['mode']} | {d['batch']} | {d['prompt_tokens'] or ''} | "
          f"{d['position']} | {d['tokens_per_s']:.1f} | {d['step_ms']:.1f} | {d['bound']} | "
          f"**{d['roofline_fraction']:.0%}** | {spread(d)} | {d['fma_fraction']:.0%} | {d['rss_over_weights_and_states']:+.1%} | "
          f"{d['read_gbps']:.0f} | {d['fma_gflops']:.0f} |")
