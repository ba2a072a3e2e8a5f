#!/usr/bin/env python3
"""Golden midcoder trajectories for internal/midcoder's tests.

Run from the repository root with Debian's Python (python3-torch):

    /usr/bin/python3 testdata/gen/gen_midcoder.py

It runs the notebook's midcoder (michaelttpearce/transcoder-exploration midcoder.py
at f9294c2) in PyTorch, float32, eager: acts = relu((x - b_dec) @ W_enc + b_enc); mid = acts @ W_mid
+ b_mid; out = act(mid @ W_in + b_in) @ W_out + b_out; loss = MSELoss(out, y); loss_norm = loss /
mean(y^2); AdamW(lr, weight_decay) with torch's defaults; CosineAnnealingLR(T_max = epochs) stepped
once per epoch; epochs = train_tokens // (T * B * steps_per_epoch) + 1; per step: loss -> record
-> zero_grad -> backward -> step. Inputs are the committed fixtures: x, y of layer 1 for the six
rows of testdata/tokens/tiny-int64.npy (testdata/golden/cache_hooks.safetensors), the layer-1
tiny transcoder (.pt) and the processed layer-1 MLP weights (testdata/golden/gpt2_processed.
safetensors). Batches take rows cyclically in cache order (row k of the run is row k mod 6), as
`ctxdep fit --cache` does when a run needs more rows than the cache holds.

Writes testdata/golden/midcoder.safetensors: for each case c, `c.W_mid` [64,16], `c.b_mid` [16]
after the fit, `c.history` [epochs, 3] (loss, loss_norm, lr per epoch), `c.step_loss` [steps],
and `c.W_mid_init` [64,16] when the case starts from a non-zero W_mid. The cases and their settings
are in the metadata (`cases`, JSON).
"""
import json, math, os, sys
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from gen_fixtures import read_safetensors, write_safetensors  # noqa: E402

torch.set_num_threads(1)
cache, _ = read_safetensors(os.path.join(ROOT, "golden", "cache_hooks.safetensors"))
P, _ = read_safetensors(os.path.join(ROOT, "golden", "gpt2_processed.safetensors"))
X, Y = cache["x.1"].float(), cache["y.1"].float()  # [6, 16, 16]
W_in, b_in = P["blocks.1.mlp.W_in"].float(), P["blocks.1.mlp.b_in"].float()
W_out, b_out = P["blocks.1.mlp.W_out"].float(), P["blocks.1.mlp.b_out"].float()
tc = torch.load(os.path.join(ROOT, "tiny-transcoders",
                             "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"),
                map_location="cpu")["state_dict"]
R, T, C = X.shape
F = tc["W_enc"].shape[1]


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


CASES = [
    dict(name="relu", act="relu", batch_size=2, steps_per_epoch=2, train_tokens=100, lr=1e-3, weight_decay=1e-3, init="zeros"),
    dict(name="gelu", act="gelu_new", batch_size=2, steps_per_epoch=2, train_tokens=100, lr=1e-3, weight_decay=1e-3, init="zeros"),
    dict(name="relu3", act="relu", batch_size=4, steps_per_epoch=1, train_tokens=150, lr=0.05, weight_decay=0.1, init="random"),
]


def run(c):
    W_mid = torch.nn.Parameter(torch.zeros(F, C))
    init = None
    if c["init"] == "random":
        init = torch.from_numpy(np.random.default_rng(7).uniform(-0.1, 0.1, size=(F, C)).astype(np.float32))
        with torch.no_grad():
            W_mid.copy_(init)
    b_mid = torch.nn.Parameter(torch.zeros(C))
    act = torch.relu if c["act"] == "relu" else gelu_new
    B, S = c["batch_size"], c["steps_per_epoch"]
    epochs = c["train_tokens"] // (T * B * S) + 1
    opt = torch.optim.AdamW([W_mid, b_mid], lr=c["lr"], weight_decay=c["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    hist, steps, k = [], [], 0
    for e in range(epochs):
        ls, lns = [], []
        for s in range(S):
            rows = [(k + i) % R for i in range(B)]
            k += B
            x, y = X[rows], Y[rows]
            acts = torch.relu((x - tc["b_dec"]) @ tc["W_enc"] + tc["b_enc"])
            out = act((acts @ W_mid + b_mid) @ W_in + b_in) @ W_out + b_out
            loss = torch.nn.functional.mse_loss(out, y)
            loss_norm = loss / (y ** 2).mean()
            ls.append(loss.item()); lns.append(loss_norm.item()); steps.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        hist.append([sum(ls) / len(ls), sum(lns) / len(lns), sched.get_last_lr()[0]])
    out = {f"{c['name']}.W_mid": W_mid.detach().clone(), f"{c['name']}.b_mid": b_mid.detach().clone(),
           f"{c['name']}.history": torch.tensor(hist, dtype=torch.float32),
           f"{c['name']}.step_loss": torch.tensor(steps, dtype=torch.float32)}
    if init is not None:
        out[f"{c['name']}.W_mid_init"] = init
    print(c["name"], "epochs", epochs, "history", hist, file=sys.stderr)
    return out


tensors = {}
for c in CASES:
    tensors.update(run(c))
write_safetensors(os.path.join(ROOT, "golden", "midcoder.safetensors"), tensors,
                  {"fixture": "ctxdep-midcoder-golden", "version": "1", "generator": "testdata/gen/gen_midcoder.py",
                   "torch": torch.__version__, "cases": json.dumps(CASES)})
