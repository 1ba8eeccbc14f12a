#!/usr/bin/env python3
"""Train a small byte-level RWKV-7 on the King James Bible (Debian package bible-kjv),
reproducibly on CPU, and write it in the official RWKV-7 checkpoint layout (BF16 safetensors).

  python3 tools/train/train_rwkv7.py                      # the shipped model (see README.md)
  python3 tools/train/train_rwkv7.py --smoke --out DIR    # < 60 s pipeline test

Outputs (in --out): model.safetensors (BF16, official names), config.json, heldout.txt,
eval.json, loss_curve.json, train_meta.json. A human-readable log and an f32 checkpoint
go to --log-dir.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import hashlib


def _threads_from_argv():
    for i, x in enumerate(sys.argv):
        if x == '--threads' and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if x.startswith('--threads='):
            return x.split('=', 1)[1]
    return '1'


# BLAS threads must be fixed before torch loads (OpenBLAS, if installed, reads this once).
os.environ.setdefault('OPENBLAS_NUM_THREADS', _threads_from_argv())
os.environ.setdefault('OMP_NUM_THREADS', _threads_from_argv())

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from rwkv7 import RWKV7, bf16_round, save_safetensors, load_safetensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIBLE_RANGE = 'Gen1:1-Rev22:21'
N_VERSES = 31102


# ----------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------
def extract_kjv():
    """KJV text from Debian's bible-kjv (program /usr/bin/bible) + bible-kjv-text
    (/usr/lib/bible.data). `bible -f` turns pretty-printing off: one verse per line,
    "Ge1:1 In the beginning ...". We strip the reference, keeping one verse per line."""
    exe = shutil.which('bible') or '/usr/bin/bible'
    env = {'PATH': '/usr/bin:/bin', 'LC_ALL': 'C'}
    out = subprocess.run([exe, '-f', BIBLE_RANGE], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, check=True).stdout
    lines = out.decode('ascii').split('\n')
    assert lines[-1] == '', 'expected trailing newline'
    lines = lines[:-1]
    assert len(lines) == N_VERSES, f'expected {N_VERSES} verses, got {len(lines)}'
    ref = re.compile(r'^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ ')
    verses = []
    for ln in lines:
        m = ref.match(ln)
        assert m, ln[:40]
        verses.append(ln[m.end():].strip())
    return ('\n'.join(verses) + '\n').encode('ascii')


def smoke_fallback_text():
    base = (b'In the beginning God created the heaven and the earth.\n'
            b'And the earth was without form, and void; and darkness was upon the face of the deep.\n'
            b'And God said, Let there be light: and there was light.\n')
    return base * 400


def split_corpus(data, heldout_frac):
    """Hold out the final `heldout_frac` of the bytes, starting at a line boundary."""
    cut = int(len(data) * (1.0 - heldout_frac))
    cut = data.index(b'\n', cut) + 1
    return data[:cut], data[cut:]


def heldout_excerpt(held, nbytes):
    ex = held[:nbytes]
    return ex[:ex.rindex(b'\n') + 1]


# ----------------------------------------------------------------------------------------
# Eval helpers (f32 math; model weights already bf16-rounded by the caller)
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def seq_loss(model, data, piece=4096):
    """Mean CE (nats/byte) of predicting data[i+1] from data[0..i], one sequence from an
    empty state, processed in pieces with the recurrent state carried between them."""
    ids = torch.tensor(list(data), dtype=torch.long)
    state, tot, cnt = None, 0.0, 0
    for s in range(0, len(ids) - 1, piece):
        x = ids[s:min(s + piece, len(ids) - 1)][None]
        y = ids[s + 1:s + 1 + x.shape[1]][None]
        logits, state = model(x, state, mode='chunk')
        tot += F.cross_entropy(logits[0].float(), y[0], reduction='sum').item()
        cnt += y.shape[1]
    return tot / cnt


@torch.no_grad()
def greedy(model, prompt, max_tokens):
    ids = torch.tensor([list(prompt)], dtype=torch.long)
    logits, state = model(ids, None, mode='chunk')
    last = logits[0, -1]
    out = []
    for _ in range(max_tokens):
        tok = int(np.argmax(last.numpy()))  # first max on ties
        out.append(tok)
        last, state = model.step(torch.tensor([tok]), state)
        last = last[0]
    return bytes(out)


# ----------------------------------------------------------------------------------------
def lr_at(step, total, peak, warmup, final_frac):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def build_config(a):
    C = a.n_embd
    return {
        'architecture': 'rwkv7', 'n_embd': C, 'd_model': C, 'n_layer': a.n_layer, 'vocab_size': 256,
        'dim_ffn': a.dim_ffn, 'head_size': a.head_size, 'n_head': C // a.head_size,
        'd_decay_lora': a.d_decay_lora, 'd_aaa_lora': a.d_aaa_lora, 'd_mv_lora': a.d_mv_lora,
        'd_gate_lora': a.d_gate_lora, 'layer_norm_eps': 1e-5, 'ln_x_eps': 0.00064, 'version': 'x070',
        'dtype': 'bfloat16', 'tokenizer': {'type': 'byte'},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=os.path.join(REPO, 'models', 'rwkv7-kjv-byte'))
    ap.add_argument('--log-dir', default=None, help='default: tools/train/runs/<basename of --out>')
    ap.add_argument('--smoke', action='store_true', help='tiny model, 5 steps, tiny data slice')
    ap.add_argument('--probe', type=int, default=0, help='time this many steps, then exit')
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--n-layer', type=int, default=4)
    ap.add_argument('--n-embd', type=int, default=192)
    ap.add_argument('--head-size', type=int, default=32)
    ap.add_argument('--dim-ffn', type=int, default=672)
    ap.add_argument('--d-decay-lora', type=int, default=32)
    ap.add_argument('--d-aaa-lora', type=int, default=32)
    ap.add_argument('--d-mv-lora', type=int, default=16)
    ap.add_argument('--d-gate-lora', type=int, default=32)
    ap.add_argument('--steps', type=int, default=700)
    ap.add_argument('--batch', type=int, default=16, help='parallel streams')
    ap.add_argument('--ctx', type=int, default=256, help='BPTT segment length (bytes)')
    ap.add_argument('--episode-segments', type=int, default=8,
                    help='a stream reads this many consecutive segments (state carried) before jumping')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--lr-final-frac', type=float, default=0.05)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--weight-decay', type=float, default=0.1)
    ap.add_argument('--grad-clip', type=float, default=1.0)
    ap.add_argument('--heldout-frac', type=float, default=0.05)
    ap.add_argument('--heldout-excerpt-bytes', type=int, default=4096)
    ap.add_argument('--log-every', type=int, default=25)
    ap.add_argument('--val-every', type=int, default=100)
    ap.add_argument('--prompt', default='And God said')
    ap.add_argument('--gen-tokens', type=int, default=200)
    a = ap.parse_args()

    if a.smoke:
        a.n_layer, a.n_embd, a.head_size, a.dim_ffn = 2, 32, 16, 128
        a.d_decay_lora = a.d_aaa_lora = a.d_mv_lora = a.d_gate_lora = 8
        a.steps, a.batch, a.ctx, a.episode_segments, a.warmup = 5, 2, 32, 2, 2
        a.log_every, a.val_every, a.heldout_excerpt_bytes, a.gen_tokens = 1, 5, 512, 32
        if a.out == ap.get_default('out'):
            ap.error('--smoke needs an explicit --out (it never writes into models/)')
    out_abs = os.path.abspath(a.out)
    if a.smoke and out_abs.startswith(os.path.join(REPO, 'models') + os.sep):
        ap.error('--smoke must not write into models/')
    log_dir = a.log_dir or (a.out if a.smoke else os.path.join(HERE, 'runs', os.path.basename(out_abs)))
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    logf = open(os.path.join(log_dir, 'train.log'), 'a')

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + '\n'); logf.flush()

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.use_deterministic_algorithms(True)

    # ---- data
    t0 = time.time()
    try:
        data = extract_kjv()
        corpus_src = 'bible-kjv (bible -f %s), references stripped' % BIBLE_RANGE
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        if not a.smoke:
            raise SystemExit(f'cannot run `bible` ({e}); install Debian package bible-kjv')
        log(f'WARNING: `bible` unavailable ({e}); smoke test uses a built-in text')
        data, corpus_src = smoke_fallback_text(), 'built-in smoke text'
    sha = hashlib.sha256(data).hexdigest()
    train, held = split_corpus(data, a.heldout_frac)
    if a.smoke:
        train = train[:65536]
    excerpt = heldout_excerpt(held, a.heldout_excerpt_bytes)
    log(f'corpus: {corpus_src}: {len(data)} bytes sha256 {sha}; train {len(train)} held-out {len(held)} '
        f'(excerpt {len(excerpt)}) [{time.time() - t0:.2f}s]')
    train_t = torch.tensor(np.frombuffer(train, dtype=np.uint8).astype(np.int64))

    # ---- model
    cfg = build_config(a)
    model = RWKV7(cfg)
    model.init_weights()
    n_params = sum(p.numel() for p in model.parameters())
    log(f'config: {json.dumps(cfg)}')
    log(f'params: {n_params} ({n_params * 2} bytes as bf16)')

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        big = n.endswith('.weight') and p.dim() == 2 and not n.startswith('emb')
        (decay if big else no_decay).append(p)
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': a.weight_decay},
                             {'params': no_decay, 'weight_decay': 0.0}],
                            lr=a.lr, betas=(0.9, 0.99), eps=1e-8)

    # ---- deterministic streams: each of `batch` streams reads `episode_segments` consecutive
    # ctx-byte segments (recurrent state carried, gradients truncated at segment boundaries),
    # then restarts from a fresh random position with an empty state. Reset phases staggered.
    gen = torch.Generator().manual_seed(a.seed)
    B, T, E = a.batch, a.ctx, a.episode_segments
    span = E * T + 1
    pos = torch.zeros(B, dtype=torch.long)
    phase = torch.arange(B) % E
    state = None
    curve, val_curve = [], []
    t_train = time.time()
    ema = None
    for step in range(a.steps):
        reset = ((step + phase) % E == 0) | (step == 0)
        nr = int(reset.sum())
        if nr:
            pos[reset] = torch.randint(0, len(train_t) - span, (nr,), generator=gen)
        if state is not None:
            keep = (~reset).float()
            state = [(ax * keep[:, None], S * keep[:, None, None, None], fx * keep[:, None])
                     for ax, S, fx in state]
        idx = pos[:, None] + torch.arange(T + 1)[None]
        seq = train_t[idx]
        x, y = seq[:, :-1], seq[:, 1:]
        pos += T
        lr = lr_at(step, a.steps, a.lr, a.warmup, a.lr_final_frac)
        for gparam in opt.param_groups:
            gparam['lr'] = lr
        logits, state = model(x, state, mode='chunk')
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip).item()
        opt.step()
        state = [tuple(s.detach() for s in st) for st in state]
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if a.probe and step + 1 == a.probe:
            dt = time.time() - t_train
            log(f'probe: {a.probe} steps in {dt:.1f}s = {dt / a.probe:.3f} s/step, '
                f'{a.probe * B * T / dt:.0f} tok/s; loss {lv:.4f}')
            return
        if (step + 1) % a.log_every == 0 or step == 0:
            el = time.time() - t_train
            curve.append({'step': step + 1, 'tokens': (step + 1) * B * T, 'loss': round(lv, 5),
                          'loss_ema': round(ema, 5), 'lr': lr, 'grad_norm': round(gn, 4), 'elapsed_s': round(el, 1)})
            eta = el / (step + 1) * (a.steps - step - 1)
            log(f'step {step + 1}/{a.steps} loss {lv:.4f} ema {ema:.4f} lr {lr:.2e} gn {gn:.2f} '
                f'{el:.0f}s eta {eta:.0f}s')
        if (step + 1) % a.val_every == 0 or step + 1 == a.steps:
            model.eval()
            vl = seq_loss(model, excerpt)
            model.train()
            val_curve.append({'step': step + 1, 'heldout_excerpt_loss_f32': round(vl, 5)})
            log(f'  val (held-out excerpt, f32 weights) {vl:.4f} nats/byte')
            if not a.smoke:
                torch.save({'step': step + 1, 'model': model.state_dict(), 'cfg': cfg},
                           os.path.join(log_dir, 'ckpt_f32.pt'))
    train_wall = time.time() - t_train
    final_train_loss = sum(c['loss'] for c in curve[-4:]) / max(1, len(curve[-4:]))
    log(f'training done: {a.steps} steps, {a.steps * B * T} tokens, {train_wall:.0f}s')

    # ---- export BF16 (official layout) + config
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    nbytes = save_safetensors(os.path.join(a.out, 'model.safetensors'), sd, 'BF16')
    with open(os.path.join(a.out, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
        f.write('\n')

    # ---- eval with exactly what an engine sees: reload the BF16 file, upcast to f32
    ev = RWKV7(cfg)
    ev.load_state_dict(load_safetensors(os.path.join(a.out, 'model.safetensors')))
    ev.eval()
    for k, v in model.state_dict().items():  # sanity: file == bf16 rounding of the weights
        assert torch.equal(ev.state_dict()[k], bf16_round(v)), k
    with open(os.path.join(a.out, 'heldout.txt'), 'wb') as f:
        f.write(excerpt)
    t1 = time.time()
    ex_loss = seq_loss(ev, excerpt, piece=len(excerpt))
    full_loss = seq_loss(ev, held[:16384] if a.smoke else held)  # smoke: a slice, for speed
    ex_loss_f32w = seq_loss(model.eval(), excerpt, piece=len(excerpt))
    gen_bytes = greedy(ev, a.prompt.encode('utf-8'), a.gen_tokens)
    text = gen_bytes.decode('utf-8', errors='replace')
    log(f'eval [{time.time() - t1:.0f}s]: held-out excerpt {ex_loss:.4f} nats/byte '
        f'({ex_loss / math.log(2):.4f} bits/byte; f32 weights {ex_loss_f32w:.4f}); '
        f'full held-out {full_loss:.4f} nats/byte')
    log(f'greedy {a.prompt!r} -> {text!r}')
    evj = {
        'heldout_file': 'heldout.txt', 'heldout_bytes': len(excerpt),
        'heldout_loss_nats_per_byte': ex_loss,
        'heldout_loss_bits_per_byte': ex_loss / math.log(2),
        'heldout_full_split_bytes': len(held),
        'heldout_full_split_loss_nats_per_byte': full_loss,
        'weights': 'model.safetensors (BF16) upcast to f32; all math f32; one sequence from empty state',
        'greedy': {'prompt': a.prompt, 'max_tokens': a.gen_tokens, 'text': text, 'text_hex': gen_bytes.hex()},
    }
    with open(os.path.join(a.out, 'eval.json'), 'w') as f:
        json.dump(evj, f, indent=2)
        f.write('\n')
    with open(os.path.join(a.out, 'loss_curve.json'), 'w') as f:
        json.dump({'train': curve, 'val': val_curve}, f, indent=1)
        f.write('\n')
    meta = {
        'corpus': corpus_src, 'corpus_bytes': len(data), 'corpus_sha256': sha,
        'train_bytes': len(train), 'heldout_bytes': len(held), 'params': n_params,
        'safetensors_bytes': nbytes, 'seed': a.seed, 'threads': a.threads, 'steps': a.steps,
        'batch': B, 'ctx': T, 'episode_segments': E, 'tokens_seen': a.steps * B * T,
        'lr': a.lr, 'lr_final_frac': a.lr_final_frac, 'warmup': a.warmup, 'weight_decay': a.weight_decay,
        'grad_clip': a.grad_clip, 'optimizer': 'AdamW(betas=(0.9,0.99), eps=1e-8)',
        'train_wall_s': round(train_wall, 1), 'final_train_loss_last4logs': final_train_loss,
        'heldout_excerpt_loss_f32_weights': ex_loss_f32w,
        'torch': torch.__version__, 'numpy': np.__version__, 'python': sys.version.split()[0],
        'command': ' '.join(sys.argv),
    }
    with open(os.path.join(a.out, 'train_meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    log(f'wrote {a.out}: model.safetensors ({nbytes} bytes), config.json, eval.json, heldout.txt, '
        f'loss_curve.json, train_meta.json; total {time.time() - t0:.0f}s')


if __name__ == '__main__':
    main()
