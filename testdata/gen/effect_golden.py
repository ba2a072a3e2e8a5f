#!/usr/bin/env python3
"""Golden effect-consistency statistics for internal/analysis (effect.go).

Run from the repository root with Debian's Python (python3-torch):

    /usr/bin/python3 testdata/gen/effect_golden.py

Inputs are committed fixtures, all layer 1 of the tiny model (C = 16, N = 64, F = 64):
  acts   = testdata/golden/transcoder.safetensors acts.1 [32, 64] (32 tokens, float32)
  W_in, b_in, W_out = testdata/golden/gpt2_processed.safetensors blocks.1.mlp.*
  W_mid, b_mid (fit) = testdata/golden/midcoder.safetensors relu3.W_mid, relu3.b_mid
  W_mid (pinv)       = testdata/golden/pinv.safetensors layer1.W_mid_f64
  W_dec              = the layer-1 tiny transcoder (.pt)
The inputs are float32; everything below runs in float64 on them, token by token and feature by
feature (no batching, no GEMM over pairs), for both activations:

  mid(t) = acts(t) @ W_mid + b_mid;  pre(t) = mid(t) @ W_in + b_in
  phi'   = 1[pre > 0] (relu) or d/dx of gelu_new's tanh formula, by torch.autograd (gelu_new)
  e_t(f) = (phi'(pre(t)) * (W_mid[f] @ W_in)) @ W_out   for every t with acts_f(t) > 0
  effect_consistency[f] = |sum_t e_t(f)| / sum_t |e_t(f)|
  cos_effect_dec[f]     = cos(sum_t e_t(f), W_dec[f])
  cos_effect_pinv[f]    = cos(sum_t e_t(f), sum_t e^pinv_t(f)), e^pinv with W_mid_pinv[f] in the
                          drive and the same phi'(pre(t)) (the fitted midcoder's pre)
  mean_effect_norm[f]   = sum_t |e_t(f)| / count[f]
NaN where f never fires (or a vector is zero).

Writes testdata/golden/effect/effect.safetensors: for c in (relu, gelu_new), `c.effect_consistency`,
`c.cos_effect_dec`, `c.cos_effect_pinv`, `c.mean_effect_norm`, `c.count` [64] (float32), and
`c.min_abs_pre` [1]: the smallest |pre| over all tokens and neurons, which must stay well above
float32 rounding for a float32 implementation to gate the same ReLU neurons: |pre| <= 4.3 here, a
16-term float32 dot product rounds it by ~1e-6 at most, and the smallest |pre| is 6.9e-5 (asserted
> 2e-5).
"""
import math, os, sys
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from gen_fixtures import read_safetensors, write_safetensors  # noqa: E402

torch.set_num_threads(1)
G = os.path.join(ROOT, "golden")
TC, _ = read_safetensors(os.path.join(G, "transcoder.safetensors"))
P, _ = read_safetensors(os.path.join(G, "gpt2_processed.safetensors"))
MC, _ = read_safetensors(os.path.join(G, "midcoder.safetensors"))
PV, _ = read_safetensors(os.path.join(G, "pinv.safetensors"))
tc = torch.load(os.path.join(ROOT, "tiny-transcoders",
                             "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"),
                map_location="cpu")["state_dict"]

d = torch.float64
acts = TC["acts.1"].float().to(d)
W_in, b_in = P["blocks.1.mlp.W_in"].float().to(d), P["blocks.1.mlp.b_in"].float().to(d)
W_out = P["blocks.1.mlp.W_out"].float().to(d)
W_mid, b_mid = MC["relu3.W_mid"].float().to(d), MC["relu3.b_mid"].float().to(d)
W_pinv = PV["layer1.W_mid_f64"].float().to(d)
W_dec = tc["W_dec"].float().to(d)
M, F = acts.shape
C, N = W_in.shape


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def deriv(pre, act):
    if act == "relu":
        return (pre > 0).to(d)
    x = pre.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(gelu_new(x).sum(), x)
    return g.detach()


def cos(a, b):
    na, nb = a.norm().item(), b.norm().item()
    return float("nan") if na == 0 or nb == 0 else (a @ b).item() / (na * nb)


out = {}
pre_all = torch.stack([(acts[t] @ W_mid + b_mid) @ W_in + b_in for t in range(M)])
min_abs_pre = pre_all.abs().min().item()
assert min_abs_pre > 2e-5, min_abs_pre
for act in ("relu", "gelu_new"):
    ec, cd, cp, mn, cnt = [], [], [], [], []
    for f in range(F):
        drive, drive_p = W_mid[f] @ W_in, W_pinv[f] @ W_in
        s, sp, norms, k = torch.zeros(C, dtype=d), torch.zeros(C, dtype=d), 0.0, 0
        for t in range(M):
            if not acts[t, f] > 0:
                continue
            mid = acts[t] @ W_mid + b_mid
            g = deriv(mid @ W_in + b_in, act)
            e = (g * drive) @ W_out
            s += e
            sp += (g * drive_p) @ W_out
            norms += e.norm().item()
            k += 1
        nan = float("nan")
        cnt.append(k)
        ec.append(s.norm().item() / norms if k and norms > 0 else nan)
        mn.append(norms / k if k else nan)
        cd.append(cos(s, W_dec[f]) if k else nan)
        cp.append(cos(s, sp) if k else nan)
    live = [f for f in range(F) if cnt[f]]
    print(f"{act}: {len(live)} of {F} features fire; effect_consistency in "
          f"[{min(ec[f] for f in live):.4f}, {max(ec[f] for f in live):.4f}]; cos_dec in "
          f"[{min(cd[f] for f in live):.4f}, {max(cd[f] for f in live):.4f}]; cos_pinv in "
          f"[{min(cp[f] for f in live):.4f}, {max(cp[f] for f in live):.4f}]; min |pre| {min_abs_pre:.3g}",
          file=sys.stderr)
    for name, v in (("effect_consistency", ec), ("cos_effect_dec", cd), ("cos_effect_pinv", cp),
                    ("mean_effect_norm", mn), ("count", cnt)):
        out[f"{act}.{name}"] = torch.tensor(v, dtype=torch.float32)
    out[f"{act}.min_abs_pre"] = torch.tensor([min_abs_pre], dtype=torch.float32)

os.makedirs(os.path.join(G, "effect"), exist_ok=True)
write_safetensors(os.path.join(G, "effect", "effect.safetensors"), out,
                  {"fixture": "ctxdep-effect-golden", "version": "1", "generator": "testdata/gen/effect_golden.py",
                   "torch": torch.__version__,
                   "inputs": "transcoder.safetensors acts.1; gpt2_processed.safetensors blocks.1.mlp; "
                             "midcoder.safetensors relu3; pinv.safetensors layer1.W_mid_f64; tiny transcoder layer 1 W_dec"})
