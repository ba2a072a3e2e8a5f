#!/usr/bin/env python3
"""Golden pinv baselines for internal/analysis (issue 5).

Run from the repository root with Debian's Python (python3-torch):

    /usr/bin/python3 testdata/gen/gen_pinv.py

The notebook's baseline is W_mid = W_dec @ torch.linalg.pinv(W_in @ W_out) with the processed
block-L MLP weights and the layer-L transcoder's decoder. torch.linalg.pinv's default cut-off
drops singular values <= rtol * sigma_max with rtol = max(m, n) * eps(float32) for float32 input.
Processed W_in / W_out are centred, so W_in @ W_out has an exact null direction (the all-ones
vector) and the cut-off decides the result.

Writes testdata/golden/pinv.safetensors:
  layer1.W_mid_f32   [64, 16]  the notebook's computation in float32 on the layer-1 fixtures
  layer1.W_mid_f64   [64, 16]  the same in float64 (inputs upcast), with the float32 rtol
  layer1.sigma       [16]      singular values of W_in @ W_out (float64, descending)
  rank2.A            [5, 4]    a hand-made rank-2 matrix (float32)
  rank2.pinv         [4, 5]    torch.linalg.pinv in float64 with rtol = 5 * eps(float32)
metadata: layer1.rank and rank2.rank (the number of singular values kept).
"""
import os, sys
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from gen_fixtures import read_safetensors, write_safetensors  # noqa: E402

P, _ = read_safetensors(os.path.join(ROOT, "golden", "gpt2_processed.safetensors"))
W_in, W_out = P["blocks.1.mlp.W_in"].float(), P["blocks.1.mlp.W_out"].float()
tc = torch.load(os.path.join(ROOT, "tiny-transcoders",
                             "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"),
                map_location="cpu")["state_dict"]
W_dec = tc["W_dec"].float()
eps32 = torch.finfo(torch.float32).eps

M32 = W_in @ W_out
W_mid_f32 = W_dec @ torch.linalg.pinv(M32)
M64 = W_in.double() @ W_out.double()
rtol = max(M64.shape) * eps32
W_mid_f64 = W_dec.double() @ torch.linalg.pinv(M64, rtol=rtol)
sigma = torch.linalg.svdvals(M64)
rank1 = int((sigma > rtol * sigma[0]).sum())

A = torch.tensor([[1, 2, 3, 4], [2, 4, 6, 8], [0, 1, 0, 1], [1, 3, 3, 5], [3, 6, 9, 12]], dtype=torch.float64)
sA = torch.linalg.svdvals(A)
rank2 = int((sA > 5 * eps32 * sA[0]).sum())
pinvA = torch.linalg.pinv(A, rtol=5 * eps32)
print("layer 1: sigma", sigma.tolist(), "rank", rank1, "| rank2 sigma", sA.tolist(), "rank", rank2, file=sys.stderr)
write_safetensors(os.path.join(ROOT, "golden", "pinv.safetensors"), {
    "layer1.W_mid_f32": W_mid_f32, "layer1.W_mid_f64": W_mid_f64.float(), "layer1.sigma": sigma.float(),
    "rank2.A": A.float(), "rank2.pinv": pinvA.float()},
    {"fixture": "ctxdep-pinv-golden", "version": "1", "generator": "testdata/gen/gen_pinv.py",
     "torch": torch.__version__, "layer1.rank": str(rank1), "rank2.rank": str(rank2)})
