#!/usr/bin/env python3
"""Write a GPT-2-small-shaped checkpoint and transcoder with random weights,
in the real file formats, for size, speed and memory checks of ctxdep where
the real downloads are not available:

  OUT/gpt2/config.json, OUT/gpt2/model.safetensors   (HF layout, 12 layers, 768, vocab 50257, with mask buffers)
  OUT/transcoders/final_sparse_autoencoder_gpt2-small_blocks.8.ln2.hook_normalized_24576.pt (+ _log_feature_sparsity.pt)
  OUT/tokens.npy                                      (int64 [rows, 128], BOS first)

Run with Debian's python3-torch: /usr/bin/python3 scripts/make_random_gpt2.py OUT [--rows 256]
Values are random (N(0, 0.02^2) weights); only shapes and formats are real.
"""
import argparse, json, math, os, struct, sys
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--rows", type=int, default=256)
a = p.parse_args()
torch.manual_seed(0)
C, N, V, L, P, F = 768, 3072, 50257, 12, 1024, 24576
os.makedirs(os.path.join(a.out, "gpt2"), exist_ok=True)
os.makedirs(os.path.join(a.out, "transcoders"), exist_ok=True)
g = lambda *s: (torch.randn(*s) * 0.02).contiguous()
sd = {"wte.weight": g(V, C), "wpe.weight": g(P, C), "ln_f.weight": 1 + g(C), "ln_f.bias": g(C)}
for l in range(L):
    h = f"h.{l}."
    sd.update({h + "ln_1.weight": 1 + g(C), h + "ln_1.bias": g(C), h + "attn.c_attn.weight": g(C, 3 * C),
               h + "attn.c_attn.bias": g(3 * C), h + "attn.c_proj.weight": g(C, C), h + "attn.c_proj.bias": g(C),
               h + "ln_2.weight": 1 + g(C), h + "ln_2.bias": g(C), h + "mlp.c_fc.weight": g(C, N),
               h + "mlp.c_fc.bias": g(N), h + "mlp.c_proj.weight": g(N, C), h + "mlp.c_proj.bias": g(C),
               h + "attn.bias": torch.tril(torch.ones(1, 1, P, P))})

# safetensors: 8-byte header length, JSON header, raw little-endian data.
names = sorted(sd)
header, off = {"__metadata__": {"format": "pt"}}, 0
for n in names:
    nb = sd[n].numel() * 4
    header[n] = {"dtype": "F32", "shape": list(sd[n].shape), "data_offsets": [off, off + nb]}
    off += nb
hj = json.dumps(header, separators=(",", ":")).encode()
hj += b" " * (-len(hj) % 8)
with open(os.path.join(a.out, "gpt2", "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hj)) + hj)
    for n in names:
        f.write(sd[n].numpy().astype("<f4").tobytes())
json.dump({"model_type": "gpt2", "n_embd": C, "n_head": 12, "n_layer": L, "n_positions": P, "n_ctx": P,
           "vocab_size": V, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "n_inner": None},
          open(os.path.join(a.out, "gpt2", "config.json"), "w"), indent=2)

# Transcoder: a dict {"cfg": <a plain dict here>, "state_dict": OrderedDict}; ~100 features fire per token.
from collections import OrderedDict
tc = OrderedDict(W_enc=torch.randn(C, F) / math.sqrt(C), b_enc=torch.full((F,), -2.65),
                 W_dec=torch.nn.functional.normalize(torch.randn(F, C), dim=1), b_dec=torch.zeros(C), b_dec_out=torch.zeros(C))
stem = os.path.join(a.out, "transcoders", f"final_sparse_autoencoder_gpt2-small_blocks.8.ln2.hook_normalized_{F}")
torch.save({"cfg": {"d_in": C, "d_sae": F, "hook_point": "blocks.8.ln2.hook_normalized"}, "state_dict": tc}, stem + ".pt")
torch.save(torch.rand(F) * -6, stem + "_log_feature_sparsity.pt")

rng = np.random.default_rng(0)
tok = rng.integers(0, V - 1, size=(a.rows, 128), dtype=np.int64)
tok[:, 0] = 50256
np.save(os.path.join(a.out, "tokens.npy"), tok)
print("wrote", a.out, file=sys.stderr)
