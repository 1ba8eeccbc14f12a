"""RWKV-7 ("x070") in plain PyTorch, with the official checkpoint names and shapes.

Parameter names/shapes are exactly those of an official RWKV-LM .pth (see
/work/shared/spec/rwkv.md section 1.2), so `model.state_dict()` can be written to a
safetensors file that any RWKV-7 loader (and retain's engine) reads without renaming.

Math follows spec section 3.1/3.2 (and the conformance kit's README conventions):
  * token shift on the LayerNorm outputs, x_* coefficients multiply the delta;
  * decay w = exp(-0.606531 * sigmoid(w0 + tanh(xw @ w1) @ w2)), in fp32;
  * per head state S [N(value), N(key)]:
        S = S * w[None, :] + (S @ (-kk)) (kk * a)^T + v k^T ;  y = S @ r
  * GroupNorm(H) with eps 64e-5, bonus term with modified k and v, value residual.

Two WKV implementations:
  * `wkv_loop`: the per-token recurrence (reference; also used for 1-token steps);
  * `wkv_chunked`: the chunked form of spec section 3.4 option B (chunk 16), exact up to
    fp32 rounding (verified against the loop by check_conformance.py), much faster for
    training. Sequences that are not a multiple of the chunk are padded at the end with
    tokens that leave the state unchanged (w=1, k=v=a=b=r=0).

State (per layer): (att_x [B,C], wkv [B,H,N,N] fp32 value-major, ffn_x [B,C]).
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DECAY_SCALE = 0.606531  # exp(-0.5), the literal used by the reference


# ----------------------------------------------------------------------------------------
# WKV kernels. Inputs r,w(decay in (0,1)),k,v,a,b are [B,T,H,N]; S0 is [B,H,N,N] or None.
# Returns y [B,T,H,N] and final state [B,H,N,N].
# ----------------------------------------------------------------------------------------
def wkv_loop(r, w, k, v, a, b, S0=None):
    B, T, H, N = r.shape
    S = torch.zeros(B, H, N, N, dtype=torch.float32, device=r.device) if S0 is None else S0
    ys = []
    for t in range(T):
        rt, wt, kt, vt, at, bt = (z[:, t] for z in (r, w, k, v, a, b))  # [B,H,N]
        sa = torch.einsum('bhij,bhj->bhi', S, at)  # S_{t-1} a
        S = S * wt[:, :, None, :] + sa[:, :, :, None] * bt[:, :, None, :] + vt[:, :, :, None] * kt[:, :, None, :]
        ys.append(torch.einsum('bhij,bhj->bhi', S, rt))
    return torch.stack(ys, dim=1), S


def _unit_lower_inverse(A, n):
    """(I - A)^-1 for strictly lower-triangular (nilpotent) A [..., n, n], n a power of 2:
    (I + A)(I + A^2)(I + A^4)...  (exact since A^n = 0)."""
    I = torch.eye(n, dtype=A.dtype, device=A.device)
    M = I + A
    P = A
    m = 2
    while m < n:
        P = P @ P
        M = M @ (I + P)  # factors commute (powers of A)
        m *= 2
    return M


def wkv_chunked(r, w, k, v, a, b, S0=None, chunk=16):
    B, T, H, N = r.shape
    n = chunk
    pad = (-T) % n
    if pad:
        zpad = lambda z, val=0.0: F.pad(z, (0, 0, 0, 0, 0, pad), value=val)
        r, k, v, a, b = (zpad(z) for z in (r, k, v, a, b))
        w = zpad(w, 1.0)
    Tp = T + pad
    nc = Tp // n
    # -> [B,H,nc,n,N]
    rs = lambda z: z.reshape(B, nc, n, H, N).permute(0, 3, 1, 2, 4)
    r, w, k, v, a, b = (rs(z) for z in (r, w, k, v, a, b))
    g = torch.log(w)                      # log-decay in [-0.6066, 0]
    G = torch.cumsum(g, dim=3)            # inclusive prefix within chunk
    Gx = G - g                            # exclusive prefix
    eG, eGx, enG = torch.exp(G), torch.exp(Gx), torch.exp(-G)
    GN = G[:, :, :, -1:, :]               # [B,H,nc,1,N] total chunk log-decay
    eGn_minus = torch.exp(GN - G)         # e^{G_n - G_s}
    kd, bd = k * enG, b * enG             # k_s e^{-G_s}, b_s e^{-G_s}
    ad, rd = a * eGx, r * eG              # a_t e^{Ghat_t}, r_t e^{G_t}
    tr = lambda z: z.transpose(-1, -2)
    strict = torch.tril(torch.ones(n, n, dtype=torch.bool, device=r.device), -1)
    incl = torch.tril(torch.ones(n, n, dtype=torch.bool, device=r.device), 0)
    A_ak = (ad @ tr(kd)).masked_fill(~strict, 0.0)
    A_ab = (ad @ tr(bd)).masked_fill(~strict, 0.0)
    A_rk = (rd @ tr(kd)).masked_fill(~incl, 0.0)
    A_rb = (rd @ tr(bd)).masked_fill(~incl, 0.0)
    M = _unit_lower_inverse(A_ab, n)
    P = M @ (A_ak @ v)                    # [n, Nv]   U = P + Q S0^T
    Q = M @ ad                            # [n, Nk]
    Y0 = A_rk @ v + A_rb @ P              # Y = Y0 + Ry S0^T
    Ry = A_rb @ Q + rd
    Kt, Bt = k * eGn_minus, b * eGn_minus
    Tm = torch.diag_embed(eG[:, :, :, -1, :]) + tr(Q) @ Bt   # S_n = S0 @ Tm + D
    D = tr(v) @ Kt + tr(P) @ Bt
    S = torch.zeros(B, H, N, N, dtype=torch.float32, device=r.device) if S0 is None else S0
    starts = []
    # unbind (not Tm[:, :, c]): its backward is one stack instead of nc full-size zero+add
    for Tm_c, D_c in zip(Tm.unbind(2), D.unbind(2)):
        starts.append(S)
        S = torch.baddbmm(D_c.reshape(B * H, N, N), S.reshape(B * H, N, N), Tm_c.reshape(B * H, N, N)).view(B, H, N, N)
    Sst = torch.stack(starts, dim=2)      # [B,H,nc,Nv,Nk]
    Y = Y0 + Ry @ tr(Sst)                 # [B,H,nc,n,Nv]
    Y = Y.permute(0, 2, 3, 1, 4).reshape(B, Tp, H, N)[:, :T]
    return Y, S


# ----------------------------------------------------------------------------------------
class TimeMix(nn.Module):
    def __init__(self, C, H, N, Dw, Da, Dv, Dg, layer_id, n_layer):
        super().__init__()
        self.C, self.H, self.N, self.layer_id = C, H, N, layer_id
        z = lambda *s: nn.Parameter(torch.zeros(*s))
        for nm in ('x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g', 'w0'):
            setattr(self, nm, z(1, 1, C))
        self.w1, self.w2 = z(C, Dw), z(Dw, C)
        self.a0, self.a1, self.a2 = z(1, 1, C), z(C, Da), z(Da, C)
        self.v0, self.v1, self.v2 = z(1, 1, C), z(C, Dv), z(Dv, C)
        self.g1, self.g2 = z(C, Dg), z(Dg, C)
        self.k_k, self.k_a = z(1, 1, C), z(1, 1, C)
        self.r_k = z(H, N)
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)

    def forward(self, xa, prev, v_first, S0, mode):
        """xa: ln1 output [B,T,C]; prev: previous token's ln1 output [B,C] (zeros at start)."""
        B, T, C = xa.shape
        H, N = self.H, self.N
        xprev = torch.cat([prev[:, None, :], xa[:, :-1]], dim=1)
        d = xprev - xa
        xr, xw, xk = xa + d * self.x_r, xa + d * self.x_w, xa + d * self.x_k
        xv, xq, xg = xa + d * self.x_v, xa + d * self.x_a, xa + d * self.x_g
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        z = self.w0 + torch.tanh(xw @ self.w1) @ self.w2
        w = torch.exp(-DECAY_SCALE * torch.sigmoid(z.float()))
        ia = torch.sigmoid(self.a0 + (xq @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0, eps=1e-12).view(B, T, C)
        k = k * (1 + (ia - 1) * self.k_a)
        if self.layer_id == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        sh = lambda t: t.reshape(B, T, H, N)
        fn = wkv_loop if (mode == 'loop' or T == 1) else wkv_chunked
        y, S = fn(sh(r), sh(w), sh(k), sh(v), sh(-kk), sh(kk * ia), S0)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        y = y + ((sh(r) * sh(k) * self.r_k).sum(dim=-1, keepdim=True) * sh(v)).view(B, T, C)
        return self.output(y * g), xa[:, -1], v_first, S


class ChannelMix(nn.Module):
    def __init__(self, C, Fd):
        super().__init__()
        self.x_k = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, Fd, bias=False)
        self.value = nn.Linear(Fd, C, bias=False)

    def forward(self, xf, prev):
        xprev = torch.cat([prev[:, None, :], xf[:, :-1]], dim=1)
        xk = xf + (xprev - xf) * self.x_k
        return self.value(torch.relu(self.key(xk)) ** 2), xf[:, -1]


class Block(nn.Module):
    def __init__(self, cfg, layer_id):
        super().__init__()
        C = cfg['n_embd']
        self.layer_id = layer_id
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C, eps=cfg.get('layer_norm_eps', 1e-5))
        self.ln1 = nn.LayerNorm(C, eps=cfg.get('layer_norm_eps', 1e-5))
        self.ln2 = nn.LayerNorm(C, eps=cfg.get('layer_norm_eps', 1e-5))
        self.att = TimeMix(C, cfg['n_head'], cfg['head_size'], cfg['d_decay_lora'], cfg['d_aaa_lora'],
                           cfg['d_mv_lora'], cfg['d_gate_lora'], layer_id, cfg['n_layer'])
        self.ffn = ChannelMix(C, cfg['dim_ffn'])


class RWKV7(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        C, V = cfg['n_embd'], cfg['vocab_size']
        assert cfg['n_head'] * cfg['head_size'] == C
        self.emb = nn.Embedding(V, C)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg['n_layer'])])
        self.ln_out = nn.LayerNorm(C, eps=cfg.get('layer_norm_eps', 1e-5))
        self.head = nn.Linear(C, V, bias=False)

    # -- state ------------------------------------------------------------------------
    def empty_state(self, B, device='cpu'):
        C, H, N = self.cfg['n_embd'], self.cfg['n_head'], self.cfg['head_size']
        return [(torch.zeros(B, C, device=device), torch.zeros(B, H, N, N, device=device),
                 torch.zeros(B, C, device=device)) for _ in self.blocks]

    def forward(self, idx, state=None, mode='chunk'):
        """idx [B,T] int64 -> (logits [B,T,V], new state). state None = empty state."""
        B, T = idx.shape
        if state is None:
            state = self.empty_state(B, idx.device)
        x = self.emb(idx)
        v_first = None
        new_state = []
        for i, blk in enumerate(self.blocks):
            if i == 0:
                x = blk.ln0(x)
            att_x, S, ffn_x = state[i]
            dx, att_x, v_first, S = blk.att(blk.ln1(x), att_x, v_first, S, mode)
            x = x + dx
            dx, ffn_x = blk.ffn(blk.ln2(x), ffn_x)
            x = x + dx
            new_state.append((att_x, S, ffn_x))
        return self.head(self.ln_out(x)), new_state

    @torch.no_grad()
    def step(self, token, state):
        """One recurrent step: token [B] int64, state -> (logits [B,V], new state)."""
        logits, state = self.forward(token[:, None], state, mode='loop')
        return logits[:, 0], state

    # -- init (RWKV-LM x070 recipe, simplified) ---------------------------------------
    @torch.no_grad()
    def init_weights(self):
        cfg = self.cfg
        C, L, H, N, V = cfg['n_embd'], cfg['n_layer'], cfg['n_head'], cfg['head_size'], cfg['vocab_size']
        self.emb.weight.uniform_(-1e-4, 1e-4)
        ddd = (torch.arange(C, dtype=torch.float32) / C).view(1, 1, C)
        n = torch.arange(C, dtype=torch.float32)
        linear = n / (C - 1) - 0.5
        zigzag = ((n % N) - ((N - 1) / 2)) / ((N - 1) / 2)
        zigzag = zigzag * zigzag.abs()

        def ortho(t, scale):
            gain = math.sqrt(t.shape[0] / t.shape[1]) if t.shape[0] > t.shape[1] else 1.0
            nn.init.orthogonal_(t, gain=gain * scale)

        for i, blk in enumerate(self.blocks):
            r01 = i / max(L - 1, 1)
            r10 = 1.0 - i / L
            for m in (blk.ln1, blk.ln2) + ((blk.ln0,) if i == 0 else ()):
                m.weight.fill_(1.0); m.bias.zero_()
            a = blk.att
            a.x_r.copy_(1.0 - ddd ** (0.2 * r10)); a.x_w.copy_(1.0 - ddd ** (0.9 * r10))
            a.x_k.copy_(1.0 - ddd ** (0.7 * r10)); a.x_v.copy_(1.0 - ddd ** (0.7 * r10))
            a.x_a.copy_(1.0 - ddd ** (0.9 * r10)); a.x_g.copy_(1.0 - ddd ** (0.2 * r10))
            www = -6 + 6 * (n / (C - 1)) ** (1 + 1 * r01 ** 0.3)
            a.w0.copy_((www + 0.5 + zigzag * 2.5).view(1, 1, C))
            a.w1.zero_(); ortho(a.w2, 0.1)
            a.a0.copy_((-0.19 + zigzag * 0.3 + linear * 0.4).view(1, 1, C)); a.a1.zero_(); ortho(a.a2, 0.1)
            a.v0.copy_((0.73 - linear * 0.4).view(1, 1, C)); a.v1.zero_(); ortho(a.v2, 0.1)
            a.g1.zero_(); ortho(a.g2, 0.1)
            a.k_k.copy_((0.71 - linear * 0.1).view(1, 1, C)); a.k_a.fill_(1.02); a.r_k.fill_(-0.04)
            s = C ** -0.5
            a.receptance.weight.uniform_(-0.5 * s, 0.5 * s)
            a.key.weight.uniform_(-0.05 * s, 0.05 * s)
            a.value.weight.uniform_(-0.5 * s, 0.5 * s)
            a.output.weight.zero_()
            a.ln_x.weight.fill_(((1 + i) / L) ** 0.7); a.ln_x.bias.zero_()
            f = blk.ffn
            f.x_k.copy_(1.0 - ddd ** (r10 ** 4))
            f.key.weight.uniform_(-0.5 * s, 0.5 * s)
            f.value.weight.zero_()
        self.ln_out.weight.fill_(1.0); self.ln_out.bias.zero_()
        ortho(self.head.weight, 0.5 * math.sqrt(V / C) if V > C else 0.5)


def config_from_state_dict(sd, base=None):
    """Infer the architecture from official tensor names/shapes (never compute LoRA ranks)."""
    V, C = sd['emb.weight'].shape
    H, N = sd['blocks.0.att.r_k'].shape
    L = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('blocks.'))
    vkey = 'blocks.1.att.v1' if L > 1 else 'blocks.0.att.v1'
    cfg = dict(base or {})
    cfg.update(n_embd=C, vocab_size=V, n_head=H, head_size=N, n_layer=L,
               dim_ffn=sd['blocks.0.ffn.key.weight'].shape[0],
               d_decay_lora=sd['blocks.0.att.w1'].shape[1], d_aaa_lora=sd['blocks.0.att.a1'].shape[1],
               d_mv_lora=sd[vkey].shape[1], d_gate_lora=sd['blocks.0.att.g1'].shape[1])
    return cfg


# ----------------------------------------------------------------------------------------
# Minimal safetensors reader/writer (no dependency on the safetensors package).
# ----------------------------------------------------------------------------------------
_NP = {'F32': np.float32, 'F64': np.float64, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32,
       'U8': np.uint8, 'I8': np.int8}


def load_safetensors(path):
    """-> dict name -> float32/int torch tensor (BF16 upcast exactly to F32)."""
    with open(path, 'rb') as f:
        data = f.read()
    (hlen,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        s, e = info['data_offsets']
        raw = data[base + s:base + e]
        if info['dtype'] == 'BF16':
            u = np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP[info['dtype']]).newbyteorder('<')).copy()
        out[name] = torch.from_numpy(arr.reshape(info['shape']).copy())
    return out


def bf16_round(t):
    """Round f32 -> bf16 (round-to-nearest-even, as torch does) and back to f32."""
    return t.detach().float().to(torch.bfloat16).float()


def save_safetensors(path, tensors, dtype='BF16', metadata=None):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if dtype == 'BF16':
            raw = t.float().to(torch.bfloat16).view(torch.int16).numpy().astype('<i2').tobytes()
        elif dtype == 'F32':
            raw = t.float().numpy().astype('<f4').tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(',', ':')).encode()
    hb += b' ' * ((-len(hb)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    return 8 + len(hb) + off
