#!/usr/bin/env python3
"""Golden numbers for `ctxdep evaluate --midcoder` and `ctxdep pinv-baseline --cache`.

Run from the repository root with Debian's Python (python3-torch, python3-numpy):

    PATH=/usr/bin:$PATH python3 testdata/gen/gen_eval_golden.py

Checked by cmd/ctxdep/evaluate_golden_test.go (TestEvaluatePinvGolden), which runs the CLI on the
same inputs and compares its --json output with what this script writes. Nothing here calls or
reads ctxdep's Go code or its outputs; the computations follow docs/method.md.

Inputs (committed fixtures, layer 1, as scripts/demo.sh runs it):
  testdata/tiny-gpt2/model.safetensors       HF GPT-2 weights (read with gen_fixtures' own reader)
  testdata/tiny-transcoders/..blocks.1..pt   the layer-1 transcoder pickle (torch.load)
  testdata/tokens/tiny-int64.npy             6 rows x 16 tokens

Everything runs in float64 on the float32 file weights upcast to float64:
  * The model's hooks and cross-entropies, two independent ways, asserted to agree (< 1e-9):
    (a) the unprocessed HF forward (gen_fixtures.hf_forward), translated to TransformerLens hook
        values (x = resid_mid normalised without affine, y = MLP output minus its d_model mean);
        a splice R is added to the HF residual in place of the MLP output (it differs from TL's
        residual by a per-position constant that the next LayerNorm removes);
    (b) TransformerLens's convert_gpt2_weights + default weight processing + LNPre forward
        (gen_fixtures.hf_to_tl_weights / process_tl / tl_forward), R written at hook_mlp_out.
    The stored numbers are path (b)'s.
  * acts = ReLU((x - b_dec) @ W_enc + b_enc), recon = acts @ W_dec + b_dec_out, on each token's x.
  * A midcoder: mid = acts @ W_mid + b_mid, out = act(mid @ W_in + b_in) @ W_out + b_out with the
    processed block-1 MLP weights, act relu or gelu_new (tanh form).
  * mse = mean over all tokens and the 16 outputs of (recon - y)^2, nmse = mse / mean(y^2), with y
    the clean hook_mlp_out; ce = mean next-token cross-entropy (nats) over the 6 x 15 predictions
    with blocks.1.hook_mlp_out replaced by recon / out / zeros.
  * pinv: M = W_in @ W_out [16, 16], rtol = max(16, 16) * eps(float32), sigma = svdvals(M),
    cutoff = rtol * sigma_max, W_mid = W_dec @ torch.linalg.pinv(M, rtol=rtol), b_mid = 0;
    loss = mean((out - y)^2) over the cache's tokens, loss_norm = loss / mean(y^2), for the
    midcoder forward through relu (pinv-baseline's default --act) and gelu_new.

The midcoders' weights are made here: W_mid [64, 16] = 0.4 * N(0, 1), b_mid [16] = 0.1 * N(0, 1)
from numpy default_rng(SEED + k) (k = 0 relu, 1 gelu_new), rounded to float32 and saved as .npy;
the golden numbers use the float32-rounded values. The scale puts mid(t) at a norm comparable to
x's, so the spliced cross-entropies differ from clean, transcoder and zero ablation.

Writes testdata/golden/evaluate/: expected.json and {relu,gelu_new}.{W_mid,b_mid}.npy.

Reproducibility: the seeds are fixed and torch runs one thread, so a rerun on the same machine
with the same BLAS kernel writes the same bytes (the .npy files do not depend on the kernel).
Debian's torch runs its float64 matrix products and LAPACK calls in OpenBLAS, whose kernel depends
on the CPU and on OPENBLAS_CORETYPE, so a rerun elsewhere (or with other torch, numpy or OpenBLAS
versions) need not leave git status clean: on one AVX-512 machine, OpenBLAS's own kernel
(Cooperlake) and the Haswell kernel gave values that the test compares differing by up to 3.2e-15
relative, the round-off singular value sigma[15] (not compared) by 70%, and the diagnostics by up
to 1e-8 relative. Such differences are far below the test's tolerances (1.5e-7 and up); they are
not a change of the reference. The committed files were written with Debian's python3-torch 1.13
under OPENBLAS_CORETYPE=Haswell, and with those a rerun as

    OPENBLAS_CORETYPE=Haswell PATH=/usr/bin:$PATH python3 testdata/gen/gen_eval_golden.py

reproduced every file byte for byte (checked on an AVX-512 AMD EPYC; the Haswell kernel needs
AVX2).
"""
import collections
import io
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # testdata/
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)  # gen_fixtures, and the sae_training stub the transcoder pickles name

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gen_fixtures as gf  # noqa: E402

GENERATOR = "testdata/gen/gen_eval_golden.py"
LAYER = 1
SEED = 20261202
MIDCODERS = (("relu", 0.4, 0.1), ("gelu_new", 0.4, 0.1))  # act, W_mid std, b_mid std
OUT = os.path.join(ROOT, "golden", "evaluate")
D = torch.float64


def rel(p):
    return os.path.relpath(p, os.path.dirname(ROOT))


def act_fn(name):
    return torch.relu if name == "relu" else gf.gelu_new


def load_model():
    cfg = json.load(open(os.path.join(ROOT, "tiny-gpt2", "config.json")))
    assert (cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["vocab_size"]) == \
        (gf.D_MODEL, gf.N_HEAD, gf.N_LAYER, gf.VOCAB), "gen_fixtures' constants do not fit the model"
    w, _ = gf.read_safetensors(os.path.join(ROOT, "tiny-gpt2", "model.safetensors"))
    return collections.OrderedDict((k, v.to(D)) for k, v in w.items())


def load_transcoder():
    path = os.path.join(ROOT, "tiny-transcoders", gf.transcoder_name(LAYER) + ".pt")
    sd = torch.load(path, map_location="cpu")["state_dict"]
    return {k: sd[k].to(D) for k in ("W_enc", "b_enc", "W_dec", "b_dec", "b_dec_out")}


def make_midcoder(k, w_std, b_std):
    rng = np.random.default_rng(SEED + k)
    W = (w_std * rng.standard_normal((gf.D_SAE, gf.D_MODEL))).astype(np.float32)
    b = (b_std * rng.standard_normal((gf.D_MODEL,))).astype(np.float32)
    return W, b


def save_npy(path, arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    gf.atomic_write(path, buf.getvalue())


def main():
    torch.set_num_threads(1)
    w = load_model()
    P = gf.process_tl(gf.hf_to_tl_weights(w))
    gf.check_processed(P)
    tc = load_transcoder()
    tok = torch.from_numpy(np.load(os.path.join(ROOT, "tokens", "tiny-int64.npy")))
    B, T = tok.shape
    b = f"blocks.{LAYER}.mlp."
    W_in, b_in, W_out, b_out = P[b + "W_in"], P[b + "b_in"], P[b + "W_out"], P[b + "b_out"]

    worst_path = 0.0  # largest |(a) - (b)| of any hook or per-token CE

    def both(replace=None):
        """Per-token CE [B, T-1] and the layer's TL hooks (x, y), both reference paths."""
        nonlocal worst_path
        rep = None if replace is None else {LAYER: replace}
        acts_a, lg_a = gf.hf_forward(w, tok, rep)
        hooks_a, _ = gf.hf_to_tl_hooks(acts_a, lg_a)
        hooks_b, lg_b = gf.tl_forward(P, tok, rep)
        ce_a, ce_b = gf.per_token_ce(lg_a, tok), gf.per_token_ce(lg_b, tok)
        for k in ("x", "y"):
            worst_path = max(worst_path, gf.maxdiff(hooks_a[f"{k}.{LAYER}"], hooks_b[f"{k}.{LAYER}"]))
        worst_path = max(worst_path, gf.maxdiff(ce_a, ce_b))
        return ce_b, hooks_b[f"x.{LAYER}"], hooks_b[f"y.{LAYER}"]

    ce_clean, x, y = both()
    # A splice depends only on the clean x of its own token (layer 1's x is upstream of the splice).
    hidden_pre, acts, recon = gf.transcoder_forward(tc, x)
    my2 = float((y * y).mean())

    def mse(r):
        return float(((r - y) ** 2).mean())

    ce_tc, _, _ = both(recon)
    ce_zero, _, _ = both(torch.zeros_like(y))
    ev = collections.OrderedDict(
        tokens=B * T, predictions=B * (T - 1),
        ce_clean=float(ce_clean.mean()), ce_transcoder=float(ce_tc.mean()), ce_zero_ablation=float(ce_zero.mean()),
        mse_transcoder=mse(recon), nmse_transcoder=mse(recon) / my2, midcoders=[])
    diag = collections.OrderedDict(
        min_abs_transcoder_hidden_pre=float(hidden_pre.abs().min()),
        transcoder_l0=float((acts > 0).to(D).sum(-1).mean()))

    os.makedirs(OUT, exist_ok=True)
    for k, (name, w_std, b_std) in enumerate(MIDCODERS):
        W32, b32 = make_midcoder(k, w_std, b_std)
        files = {"W_mid": f"{name}.W_mid.npy", "b_mid": f"{name}.b_mid.npy"}
        save_npy(os.path.join(OUT, files["W_mid"]), W32)
        save_npy(os.path.join(OUT, files["b_mid"]), b32)
        W_mid, b_mid = torch.from_numpy(W32).to(D), torch.from_numpy(b32).to(D)
        pre = (acts @ W_mid + b_mid) @ W_in + b_in
        out = act_fn(name)(pre) @ W_out + b_out
        ce_m, _, _ = both(out)
        m = mse(out)
        ev["midcoders"].append(collections.OrderedDict(
            act=name, w_mid=files["W_mid"], b_mid=files["b_mid"], seed=SEED + k, w_std=w_std, b_std=b_std,
            ce=float(ce_m.mean()), mse=m, nmse=m / my2))
        diag[f"{name}.min_abs_pre"] = float(pre.abs().min())
        diag[f"{name}.max_abs_pre"] = float(pre.abs().max())

    # pinv baseline, on the cache built from the same tokens (x and y as above).
    M = W_in @ W_out
    C = M.shape[0]
    rtol = max(M.shape) * float(torch.finfo(torch.float32).eps)
    sigma = torch.linalg.svdvals(M)
    W_pinv = tc["W_dec"] @ torch.linalg.pinv(M, rtol=rtol)
    pv = collections.OrderedDict(
        sigma_max=float(sigma[0]), rtol=rtol, cutoff=rtol * float(sigma[0]),
        rank=int((sigma > rtol * sigma[0]).sum()), sigma=[float(s) for s in sigma])
    for name in ("relu", "gelu_new"):
        pre = acts @ W_pinv @ W_in + b_in
        loss = mse(act_fn(name)(pre) @ W_out + b_out)
        pv[name] = collections.OrderedDict(loss=loss, loss_norm=loss / my2)
        diag[f"pinv.{name}.min_abs_pre"] = float(pre.abs().min())
    # The same baseline through the float32-rounded processed weights (how a float32 loader holds
    # them): how much the cut-off-sensitive pinv moves with rounding of its input.
    P32 = {k: v.float().to(D) for k, v in (("W_in", W_in), ("W_out", W_out))}
    W_pinv32 = tc["W_dec"] @ torch.linalg.pinv(P32["W_in"] @ P32["W_out"], rtol=rtol)
    diag["pinv.W_mid_max_rel_change_from_f32_rounded_weights"] = float(
        (W_pinv32 - W_pinv).abs().max() / W_pinv.abs().max())
    loss32 = mse(torch.relu(acts @ W_pinv32 @ P32["W_in"] + b_in.float().to(D)) @ P32["W_out"] + b_out.float().to(D))
    diag["pinv.relu.loss_rel_change_from_f32_rounded_weights"] = abs(loss32 - pv["relu"]["loss"]) / pv["relu"]["loss"]
    assert C == gf.D_MODEL

    assert worst_path < 1e-9, f"reference paths (a) HF and (b) TL disagree by {worst_path}"
    diag["path_a_vs_b_max_abs_diff"] = worst_path
    # Sanity: the spliced numbers are distinct, non-trivial values.
    ces = [ev["ce_clean"], ev["ce_transcoder"], ev["ce_zero_ablation"]] + [m["ce"] for m in ev["midcoders"]]
    assert min(abs(a - b) for i, a in enumerate(ces) for b in ces[i + 1:]) > 1e-3, ces
    assert diag["min_abs_transcoder_hidden_pre"] > 1e-5

    doc = collections.OrderedDict()
    doc["comment"] = (
        "Golden values for cmd/ctxdep/evaluate_golden_test.go, written by " + GENERATOR + " (run from the "
        "repository root: PATH=/usr/bin:$PATH python3 " + GENERATOR + "). Float64 reference computed "
        "independently of ctxdep's Go code from testdata/tiny-gpt2 (HF forward and TransformerLens-processed "
        "forward, asserted to agree), the layer-1 transcoder pickle in testdata/tiny-transcoders and "
        "testdata/tokens/tiny-int64.npy; midcoder weights are the .npy files next to this file. "
        "See the script's docstring for every definition.")
    doc["generator"] = GENERATOR
    doc["torch"] = torch.__version__
    doc["numpy"] = np.__version__
    doc["layer"] = LAYER
    doc["model"] = "testdata/tiny-gpt2"
    doc["transcoder"] = rel(os.path.join(ROOT, "tiny-transcoders", gf.transcoder_name(LAYER) + ".pt"))
    doc["tokens_file"] = "testdata/tokens/tiny-int64.npy"
    doc["evaluate"] = ev
    doc["pinv_baseline"] = pv
    doc["diagnostics"] = diag
    gf.atomic_write(os.path.join(OUT, "expected.json"), (json.dumps(doc, indent=2) + "\n").encode())
    print(json.dumps(doc, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
