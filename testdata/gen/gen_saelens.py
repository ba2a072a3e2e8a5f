#!/usr/bin/env python3
"""The tiny layer-1 transcoder again, as SAELens saves a transcoder (issue 17).

Run from the repository root with Debian's Python (python3-torch):

    /usr/bin/python3 testdata/gen/gen_saelens.py

Reads testdata/tiny-transcoders' layer-1 pickle and its sparsity file and writes
testdata/tiny-transcoders-saelens/layer-1/:
  cfg.json                  architecture "transcoder", d_in 16, d_sae 64, d_out 16, no input
                            normalisation, apply_b_dec_to_input false, hook names under "metadata"
  sae_weights.safetensors   W_enc [16, 64], b_enc [64], W_dec [64, 16], b_dec [16] (float32)
  sparsity.safetensors      sparsity [64]: the pickle's log10 feature frequencies

A SAELens transcoder subtracts nothing from its input and its b_dec is the output bias, while the
sae_training pickle subtracts its b_dec from the input and adds b_dec_out. The same function in
SAELens form folds the input bias into the encoder bias: b_enc - b_dec @ W_enc, computed in
float64 and rounded once; b_dec is the pickle's b_dec_out. internal/transcoder's tests check that
both forms give the same acts on the golden inputs. Deterministic: no randomness.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from gen_fixtures import atomic_write, write_safetensors  # noqa: E402

SRC = os.path.join(ROOT, "tiny-transcoders")
NAME = "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64"
OUT = os.path.join(ROOT, "tiny-transcoders-saelens", "layer-1")

ckpt = torch.load(os.path.join(SRC, NAME + ".pt"), map_location="cpu")
sd, cfg = ckpt["state_dict"], ckpt["cfg"]
W_enc, b_enc, W_dec = sd["W_enc"].float(), sd["b_enc"].float(), sd["W_dec"].float()
b_enc_folded = (b_enc.double() - sd["b_dec"].double() @ W_enc.double()).float()
sparsity = torch.load(os.path.join(SRC, NAME + "_log_feature_sparsity.pt"), map_location="cpu").float()

d_in, d_sae = W_enc.shape
d_out = W_dec.shape[1]
config = {
    "architecture": "transcoder",
    "d_in": d_in,
    "d_sae": d_sae,
    "d_out": d_out,
    "dtype": "float32",
    "device": "cpu",
    "apply_b_dec_to_input": False,
    "normalize_activations": "none",
    "reshape_activations": "none",
    "metadata": {
        "model_name": cfg.model_name,
        "hook_name": cfg.hook_point,
        "hook_name_out": cfg.out_hook_point,
        "generator": "testdata/gen/gen_saelens.py",
    },
}
os.makedirs(OUT, exist_ok=True)
atomic_write(os.path.join(OUT, "cfg.json"), (json.dumps(config, indent=2) + "\n").encode())
write_safetensors(os.path.join(OUT, "sae_weights.safetensors"), {
    "W_enc": W_enc, "b_enc": b_enc_folded, "W_dec": W_dec, "b_dec": sd["b_dec_out"].float()})
write_safetensors(os.path.join(OUT, "sparsity.safetensors"), {"sparsity": sparsity})
print(f"wrote {OUT}: d_in {d_in}, d_sae {d_sae}, d_out {d_out}, hook {cfg.hook_point}", file=sys.stderr)
