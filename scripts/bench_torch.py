#!/usr/bin/env python3
"""PyTorch baseline for `make bench`: the TransformerLens-processed GPT-2 small
forward to block 8 (LNPre, fused QKV, causal softmax, gelu_new) and the
transcoder encoder 768 -> 24576 with ReLU and compaction to sparse indices,
B=32, T=128, random weights (N(0, 0.02^2)), float32, torch.no_grad, eager.

Run with Debian's python3-torch: /usr/bin/python3 scripts/bench_torch.py
It prints tokens/s for the forward alone and for forward+encode (median of
--reps runs after one warm-up), and which BLAS torch uses.

--device cuda runs the same on a GPU (scripts/gpu-check.sh: TF32 off, as
ctxdep's default; --tf32 turns it on), --midcoder adds the notebook's
midcoder step and whole step, and PyTorch's sparse formulations of the same
step (the gather by embedding_bag, the W_mid gradient scattered by
embedding_bag's own backward or by index_add_; the best is printed, after a
check that their gradients match the dense step's), and --notebook-fit the
notebook's whole fit from token ids (2 epochs x 10 steps x 64 rows x 128
tokens, cosine schedule). --evaluate times the notebook's evaluation loop as
TransformerLens runs it (run_with_hooks once per variant: clean, transcoder,
one midcoder, zero ablation; the whole 12-block forward, unembedding and
cross-entropy each time), in cached tokens per second.
"""
import argparse, math, statistics, time
import torch

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=5)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--midcoder", action="store_true", help="also time the dense midcoder step and the notebook's whole step")
p.add_argument("--batch", type=int, default=32)
p.add_argument("--device", default="cpu")
p.add_argument("--tf32", action="store_true")
p.add_argument("--notebook-fit", action="store_true")
p.add_argument("--evaluate", action="store_true", help="also time the evaluation loop: 4 spliced variants, a full forward each")
p.add_argument("--pinv", action="store_true", help="also time the notebook's pinv baseline: W_dec @ pinv(W_in @ W_out), float32")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)
if dev.type != "cpu":
    torch.set_default_device(dev)  # torch 2.x; the CPU is the default anyway
torch.backends.cuda.matmul.allow_tf32 = a.tf32
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
B, T, C, H, D, N, V, L, F = a.batch, 128, 768, 12, 64, 3072, 50257, 8, 24576
g = lambda *s: torch.randn(*s) * 0.02
W_E, W_pos = g(V, C), g(1024, C)
blocks = [dict(Wqkv=g(C, 3 * C), bqkv=g(3 * C), WO=g(C, C), bO=g(C), Win=g(C, N), bin=g(N), Wout=g(N, C), bout=g(C)) for _ in range(L + 1)]
W_enc, b_enc, b_dec = torch.randn(C, F) / math.sqrt(C), torch.full((F,), -2.65), torch.zeros(C)
mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)


def lnpre(x):
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attention(resid, b):
    """resid plus block b's attention output: resid_mid."""
    qkv = lnpre(resid) @ b["Wqkv"] + b["bqkv"]
    q, k, v = [t.view(B, T, H, D).transpose(1, 2) for t in qkv.split(C, -1)]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    s = s.masked_fill(mask, float("-inf")).softmax(-1)
    return resid + (s @ v).transpose(1, 2).reshape(B, T, C) @ b["WO"] + b["bO"]


def forward(tok):
    resid = W_E[tok] + W_pos[:T]
    for l, b in enumerate(blocks):
        resid = attention(resid, b)
        x2 = lnpre(resid)
        y = gelu_new(x2 @ b["Win"] + b["bin"]) @ b["Wout"] + b["bout"]
        if l == L:
            return x2, y
        resid = resid + y


def encode(x):
    acts = torch.relu((x - b_dec) @ W_enc + b_enc)
    return acts.nonzero(), acts[acts > 0]


def median_time(fn, reps):
    """The median seconds of reps calls of fn, after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench(fn):
    tok = torch.randint(0, V, (B, T))
    with torch.no_grad():
        return B * T / median_time(lambda: fn(tok), a.reps)


W_in, b_in, W_out, b_out = blocks[L]["Win"], blocks[L]["bin"], blocks[L]["Wout"], blocks[L]["bout"]


def mid_step(acts, y, W_mid, b_mid, opt):
    """The notebook's midcoder step: ReLU MLP from dense acts @ W_mid + b_mid, MSE, backward,
    AdamW. Returns the loss (computed before the update)."""
    out = torch.relu((acts @ W_mid + b_mid) @ W_in + b_in) @ W_out + b_out
    loss = torch.nn.functional.mse_loss(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def mlp_loss(mid, y):
    """The frozen ReLU MLP on mid and the MSE against y, as mid_step."""
    out = torch.relu(mid @ W_in + b_in) @ W_out + b_out
    return torch.nn.functional.mse_loss(out, y)


def sparse_grads_autograd(csr, y, W_mid, b_mid):
    """Sparse formulation 1: mid = embedding_bag(W_mid, acts) + b_mid, every
    gradient by autograd (embedding_bag's backward scatters W_mid's gradient
    into a dense (F, C) tensor)."""
    idx, offsets, vals = csr
    mid = torch.nn.functional.embedding_bag(idx, W_mid, offsets, mode="sum", per_sample_weights=vals) + b_mid
    loss = mlp_loss(mid, y)
    W_mid.grad = b_mid.grad = None
    loss.backward()
    return loss


def sparse_grads_index_add(csr, y, W_mid, b_mid, chunk=512):
    """Sparse formulation 2: the gather by embedding_bag without autograd,
    autograd through the MLP to d mid, then W_mid's gradient scattered by
    index_add_ of the active entries' weighted d mid rows (chunk rows at a
    time, to bound the (nnz, C) temporary) and b_mid's as d mid's column sums."""
    idx, offsets, vals = csr
    with torch.no_grad():
        mid = torch.nn.functional.embedding_bag(idx, W_mid, offsets, mode="sum", per_sample_weights=vals) + b_mid
    mid.requires_grad_(True)
    loss = mlp_loss(mid, y)
    loss.backward()
    dmid = mid.grad
    with torch.no_grad():
        gW = torch.zeros_like(W_mid)
        rows = torch.repeat_interleave(torch.arange(len(offsets)), torch.diff(offsets, append=torch.tensor([len(idx)])))
        M = len(offsets)
        for r0 in range(0, M, chunk):
            a, b = offsets[r0].item(), (offsets[r0 + chunk].item() if r0 + chunk < M else len(idx))
            gW.index_add_(0, idx[a:b], dmid[rows[a:b]] * vals[a:b, None])
        W_mid.grad, b_mid.grad = gW, dmid.sum(0)
    return loss


def sparse_step(grads):
    """A sparse midcoder step: grads(...) sets W_mid's and b_mid's gradients, then AdamW."""
    def step(csr, y, W_mid, b_mid, opt):
        loss = grads(csr, y, W_mid, b_mid)
        opt.step()
        return loss
    return step


def check_sparse_grads(forms, m=96, f=512, l0=20):
    """Each sparse formulation's gradients equal the dense step's on a small case."""
    g = torch.Generator().manual_seed(7)
    idx = torch.stack([torch.randperm(f, generator=g)[:l0] for _ in range(m)])
    vals = torch.rand(m, l0, generator=g) + 0.1
    dense = torch.zeros(m, f).scatter_(1, idx, vals)
    csr = (idx.reshape(-1), torch.arange(0, m * l0, l0), vals.reshape(-1))
    y = torch.randn(m, C, generator=g)
    W0 = torch.randn(f, C, generator=g) * 0.05
    W_mid, b_mid = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(torch.randn(C, generator=g) * 0.01)
    loss = mlp_loss(dense @ W_mid + b_mid, y)
    loss.backward()
    ref = (W_mid.grad.clone(), b_mid.grad.clone())
    for name, fn in forms.items():
        fn(csr, y, W_mid, b_mid)
        for got, want in zip((W_mid.grad, b_mid.grad), ref):
            err = (got - want).abs().max().item()
            if not err <= 1e-5 * want.abs().max().item():
                raise SystemExit(f"sparse midcoder step ({name}): gradient differs from the dense step's by {err:g}")


print("torch", torch.__version__, "threads", torch.get_num_threads(), "device", dev)
if dev.type == "cuda":
    print("gpu:", torch.cuda.get_device_name(), "tf32:", a.tf32)
else:
    cfg = torch.__config__.show()
    core = "?"
    try:  # Debian's libblas.so.3 is OpenBLAS where update-alternatives points it there
        import ctypes
        corename = ctypes.CDLL("libblas.so.3").openblas_get_corename
        corename.restype = ctypes.c_char_p
        core = corename().decode()
    except (OSError, AttributeError):
        pass
    print("blas:", cfg[cfg.find("BLAS_INFO="):].split(",")[0], "(Debian's torch: the system libblas.so.3, see update-alternatives)",
          "openblas kernel", core)
if a.pinv:
    # The notebook's baseline as it computes it: float32 throughout.
    W_dec = torch.randn(F, C) * 0.05
    Wi, Wo = torch.randn(C, N) * 0.05, torch.randn(N, C) * 0.05
    Wo -= Wo.mean(dim=1, keepdim=True)
    print(f"pinv baseline (W_dec @ pinv(W_in @ W_out), F {F}): {median_time(lambda: W_dec @ torch.linalg.pinv(Wi @ Wo), a.reps):.3f} s")
print(f"forward to block 8:  {bench(forward):8.0f} tokens/s")
print(f"forward + encode:    {bench(lambda t: encode(forward(t)[0].reshape(-1, C))):8.0f} tokens/s")

if a.midcoder:
    # The notebook's midcoder step as PyTorch runs it: dense acts @ W_mid, ReLU MLP,
    # MSE, backward, AdamW. Acts: ~100 random active features per token, as in the Go benchmark.
    W_mid = torch.nn.Parameter(torch.empty(F, C).uniform_(-math.sqrt(6 / C), math.sqrt(6 / C)))
    b_mid = torch.nn.Parameter(torch.zeros(C))
    opt = torch.optim.AdamW([W_mid, b_mid], lr=1e-3, weight_decay=1e-3)
    M = B * T
    idx = torch.randint(0, F, (M, 100))
    acts = torch.zeros(M, F).scatter_(1, idx, torch.rand(M, 100) + 0.1)
    y = torch.randn(M, C)

    print(f"midcoder step (dense, from cached acts): {M / median_time(lambda: mid_step(acts, y, W_mid, b_mid, opt), a.reps):8.0f} tokens/s")

    # The same step from the sparse acts (the same entries, as CSR), each
    # formulation checked against the dense gradients first.
    forms = {"embedding_bag, autograd": sparse_grads_autograd, "embedding_bag + index_add_": sparse_grads_index_add}
    check_sparse_grads(forms)
    nz = acts.nonzero()  # row-major: duplicate random indices were dropped by scatter_
    counts = torch.bincount(nz[:, 0], minlength=M)
    csr = (nz[:, 1].contiguous(), torch.cumsum(counts, 0) - counts, acts[nz[:, 0], nz[:, 1]])
    del nz
    best = None
    for name, fn in forms.items():
        tps = M / median_time(lambda: sparse_step(fn)(csr, y, W_mid, b_mid, opt), a.reps)
        print(f"  sparse step ({name}): {tps:8.0f} tokens/s")
        if best is None or tps > best[1]:
            best = (name, tps)
    print(f"midcoder step (sparse, best: {best[0]}): {best[1]:8.0f} tokens/s")

    def whole():
        tok = torch.randint(0, V, (B, T))
        with torch.no_grad():
            x, yy = forward(tok)
            ac = torch.relu((x.reshape(-1, C) - b_dec) @ W_enc + b_enc)
        mid_step(ac, yy.reshape(-1, C), W_mid, b_mid, opt)

    print(f"whole step (forward, encode, midcoder step): {M / median_time(whole, a.reps):8.0f} tokens/s")

if a.notebook_fit:
    # The notebook's fit from token ids: per step forward to block 8 (no grad), dense
    # encode, midcoder step; CosineAnnealingLR stepped per epoch; losses read once per epoch.
    toks = torch.randint(0, V, (20, B, T))

    def notebook_fit():
        W_mid = torch.nn.Parameter(torch.empty(F, C).uniform_(-math.sqrt(6 / C), math.sqrt(6 / C)))
        b_mid = torch.nn.Parameter(torch.zeros(C))
        opt = torch.optim.AdamW([W_mid, b_mid], lr=1e-3, weight_decay=1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2, eta_min=0)
        sync()
        t0 = time.perf_counter()
        for e in range(2):
            losses = []
            for s in range(10):
                with torch.no_grad():
                    x, yy = forward(toks[e * 10 + s])
                    ac = torch.relu((x.reshape(-1, C) - b_dec) @ W_enc + b_enc)
                losses.append(mid_step(ac, yy.reshape(-1, C), W_mid, b_mid, opt).detach())
            torch.stack(losses).mean().item()
            sched.step()
        W_mid.detach().cpu()
        sync()
        return time.perf_counter() - t0

    notebook_fit()
    ts = sorted(notebook_fit() for _ in range(a.reps))
    med = ts[len(ts) // 2]
    print(f"notebook fit (163,840 tokens from token ids): {med:.3f} s = {20 * B * T / med:8.0f} tokens/s")

if a.evaluate:
    # blocks 9..11, the unembedding, a decoder and a midcoder for the splices at block L.
    blocks += [dict(Wqkv=g(C, 3 * C), bqkv=g(3 * C), WO=g(C, C), bO=g(C), Win=g(C, N), bin=g(N), Wout=g(N, C), bout=g(C)) for _ in range(11 - L)]
    W_U, b_U = g(C, V), torch.zeros(V)
    W_dec, b_dec_out = g(F, C), torch.zeros(C)
    W_mid_e, b_mid_e = g(F, C), torch.zeros(C)

    def transcoder_acts(x):
        return torch.relu((x - b_dec) @ W_enc + b_enc)

    def mlp_out(x, l):
        b = blocks[l]
        return gelu_new(x @ b["Win"] + b["bin"]) @ b["Wout"] + b["bout"]

    variants = {
        "clean": lambda x, y: y,
        "transcoder": lambda x, y: transcoder_acts(x) @ W_dec + b_dec_out,
        "midcoder": lambda x, y: torch.relu((transcoder_acts(x) @ W_mid_e + b_mid_e) @ W_in + b_in) @ W_out + b_out,
        "zero": lambda x, y: torch.zeros_like(y),
    }

    def ce_with(tok, replace):
        resid = W_E[tok] + W_pos[:T]
        for l, b in enumerate(blocks):
            resid = attention(resid, b)
            x2 = lnpre(resid)
            y = mlp_out(x2, l)
            if l == L:
                y = replace(x2, y)  # the hook on blocks.L.hook_mlp_out
            resid = resid + y
        logits = lnpre(resid) @ W_U + b_U
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), tok[:, 1:].reshape(-1), reduction="sum")

    def evaluate(tok):
        return [ce_with(tok, f).item() for f in variants.values()]

    print(f"evaluation loop (4 variants, a full forward each): {bench(evaluate):8.0f} tokens/s")
