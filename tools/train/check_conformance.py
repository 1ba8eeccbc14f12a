#!/usr/bin/env python3
"""Check tools/train/rwkv7.py against the RWKV-7 conformance kits (reference logits from
the official `rwkv` package). For each kit: load model.safetensors (BF16 upcast to F32)
into the training model, run every prompt from an empty state (chunked and per-token-loop
WKV), then decode the case's tokens one at a time with the recurrent step function,
continuing from the prompt's state, and compare with expected.safetensors.
Exit status 0 iff every kit is within its tolerance (case.json, max_abs 2e-4)."""
import argparse
import json
import os
import sys

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rwkv7 import RWKV7, config_from_state_dict, load_safetensors, wkv_chunked, wkv_loop  # noqa: E402

KITS = ['rwkv7-tiny', 'rwkv7-tiny-bf16']


def check_kit(kdir):
    cfg = json.load(open(os.path.join(kdir, 'config.json')))
    case = json.load(open(os.path.join(kdir, 'case.json')))
    tol = case['tolerance']['max_abs']
    sd = load_safetensors(os.path.join(kdir, 'model.safetensors'))
    exp = load_safetensors(os.path.join(kdir, 'expected.safetensors'))
    cfg = config_from_state_dict(sd, cfg)
    model = RWKV7(cfg)
    mine = model.state_dict()
    assert set(mine) == set(sd), (set(mine) ^ set(sd))
    for k in mine:
        assert tuple(mine[k].shape) == tuple(sd[k].shape), (k, mine[k].shape, sd[k].shape)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    model.eval()
    worst = {'prompt_chunk': 0.0, 'prompt_loop': 0.0, 'decode': 0.0}
    with torch.no_grad():
        for i, (prompt, dec) in enumerate(zip(case['prompts'], case['decode'])):
            idx = torch.tensor([prompt], dtype=torch.long)
            ref = exp[f'prompt{i}.logits'].reshape(len(prompt), -1)
            lc, st = model(idx, mode='chunk')
            ll, st_l = model(idx, mode='loop')
            worst['prompt_chunk'] = max(worst['prompt_chunk'], (lc[0] - ref).abs().max().item())
            worst['prompt_loop'] = max(worst['prompt_loop'], (ll[0] - ref).abs().max().item())
            refd = exp[f'prompt{i}.decode_logits'].reshape(len(dec), -1)
            for j, tok in enumerate(dec):
                lg, st = model.step(torch.tensor([tok]), st)
                worst['decode'] = max(worst['decode'], (lg[0] - refd[j]).abs().max().item())
    w = max(worst.values())
    ok = w <= tol
    print(f'{os.path.basename(kdir)}: worst max|d| = {w:.3e} (prompt chunked {worst["prompt_chunk"]:.3e}, '
          f'prompt loop {worst["prompt_loop"]:.3e}, decode {worst["decode"]:.3e}); tol {tol:g}: '
          f'{"PASS" if ok else "FAIL"}')
    return ok


def check_chunk_vs_loop():
    """Chunked WKV == per-token loop with a non-zero initial state and trained-like ranges."""
    g = torch.Generator().manual_seed(0)
    B, T, H, N = 2, 70, 3, 16
    rnd = lambda *s: torch.randn(*s, generator=g)
    r, k, v = rnd(B, T, H, N), rnd(B, T, H, N), rnd(B, T, H, N)
    w = torch.exp(-0.606531 * torch.sigmoid(rnd(B, T, H, N) * 3))
    kk = torch.nn.functional.normalize(rnd(B, T, H, N), dim=-1)
    ia = torch.sigmoid(rnd(B, T, H, N))
    S0 = rnd(B, H, N, N)
    y1, s1 = wkv_loop(r, w, k, v, -kk, kk * ia, S0)
    y2, s2 = wkv_chunked(r, w, k, v, -kk, kk * ia, S0)
    d = max((y1 - y2).abs().max().item(), (s1 - s2).abs().max().item())
    scale = y1.abs().max().item()
    print(f'chunked vs loop WKV (T={T}, nonzero S0): max|d| = {d:.3e} (|y| max {scale:.2f})')
    return d <= 1e-4 * max(1.0, scale)


def main():
    ap = argparse.ArgumentParser()
    # The kits the C++ tests read: tests/data/conformance of this checkout (a copy of shared/conformance).
    ap.add_argument('--kits', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                                   'tests', 'data', 'conformance'))
    args = ap.parse_args()
    torch.set_num_threads(1)
    ok = check_chunk_vs_loop()
    for k in KITS:
        ok = check_kit(os.path.join(args.kits, k)) and ok
    print('ALL PASS' if ok else 'FAILED')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
