#!/usr/bin/env python3
"""Generate ctxdep's committed PyTorch fixtures (tiny GPT-2, tiny transcoders, golden values).

Run from the repository root with Debian's Python (it has python3-torch / python3-numpy):

    /usr/bin/python3 testdata/gen/gen_fixtures.py

What it writes and what every tensor means is documented in testdata/gen/README.md. The
computations follow the released transcoders' .pt files and encoder, TransformerLens's
convert_gpt2_weights, its default weight processing and forward pass, and the HF checkpoint layout.

Golden values are computed twice, independently, in float64 from the float32 fixture weights:
  (a) the unprocessed Hugging Face forward pass, translated to TransformerLens hook values with the
      consequences of TransformerLens's weight processing;
  (b) the TransformerLens weight processing followed by the TL forward (LNPre, no affine).
The script asserts that (a) and (b) agree and stores (b) cast to float32.

Deterministic: every random number comes from numpy Generators with fixed seeds, and every file is
byte-identical across runs (checked with --check-determinism, which runs the whole generation
twice into temporary folders and compares). Legacy torch containers name storages by memory
address; we rewrite those keys to fixed pseudo-addresses (see canonicalize_legacy).
"""

import argparse
import collections
import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import shutil
import struct
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of testdata/gen/sae_training
# The stub package `sae_training` lives next to this script; pickles must reference
# `sae_training.config.LanguageModelSAERunnerConfig` exactly as the released checkpoints do.
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from sae_training.config import LanguageModelSAERunnerConfig  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Fixture dimensions

VOCAB = 50257  # real GPT-2 vocabulary
BOS = 50256  # <|endoftext|> = bos = eos = pad
D_MODEL = 16
N_HEAD = 2
D_HEAD = D_MODEL // N_HEAD
N_LAYER = 3
N_CTX = 32
D_MLP = 4 * D_MODEL  # n_inner null -> 4 * n_embd
LN_EPS = 1e-5  # GPT-2 layer_norm_epsilon (conventions)

D_SAE = 64
EXPANSION = D_SAE // D_MODEL

GOLDEN_BATCH, GOLDEN_T = 2, 16
CACHE_ROWS, CACHE_T = 6, 16

# Largest |(a) - (b)| tolerated between the two independent float64 reference paths.
PATH_ATOL = 1e-5

SEED_GPT2 = 20240601
SEED_TOKENS = 20240602
SEED_TRANSCODER = 20240603
SEED_CACHE_TOKENS = 20240604
SEED_SPARSITY = 20240605
SEED_LEGACY_KEYS = 20240606

FIXTURE_VERSION = "1"
GENERATOR = "testdata/gen/gen_fixtures.py"


# ---------------------------------------------------------------------------------------------
# safetensors (written by hand: the `safetensors` Python package is not installed)

ST_DTYPE = {
    torch.float64: ("F64", "<f8"),
    torch.float32: ("F32", "<f4"),
    torch.float16: ("F16", "<f2"),
    torch.int64: ("I64", "<i8"),
    torch.int32: ("I32", "<i4"),
    torch.uint8: ("U8", "u1"),
}
ST_NP = {code: np.dtype(npd) for code, npd in ST_DTYPE.values()}


def atomic_write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def safetensors_bytes(tensors, metadata=None):
    """Serialise an ordered {name: tensor} mapping; tensors are laid out in the given order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, t in tensors.items():
        code, npd = ST_DTYPE[t.dtype]
        b = t.detach().cpu().contiguous().numpy().astype(npd, copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)  # pad so that the data start is 8-byte aligned
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_safetensors(path, tensors, metadata=None):
    atomic_write(path, safetensors_bytes(tensors, metadata))


def read_safetensors(path):
    """Independent reader used for the read-back checks: returns ({name: tensor}, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    pos = 0
    for b, e, k in spans:
        assert b == pos, f"safetensors {path}: gap or overlap before {k}"
        pos = e
    assert pos == len(data), f"safetensors {path}: trailing bytes"
    out = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=ST_NP[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(arr.copy())
    return out, meta


# ---------------------------------------------------------------------------------------------
# torch.save helpers


class _location(object):
    """Temporarily make torch.save tag every storage with `tag` (e.g. "cuda:0" without a GPU).

    torch.serialization._save/_legacy_save look `location_tag` up as a module global at call time,
    so patching the module attribute is enough.
    """

    def __init__(self, tag):
        self.tag = tag

    def __enter__(self):
        self.orig = torch.serialization.location_tag
        if self.tag is not None:
            # A fresh string per call, like torch's _cuda_tag ('cuda:' + str(index)), so each
            # persistent id spells the tag out instead of referring back to the pickle memo.
            torch.serialization.location_tag = lambda storage: (self.tag + ".")[:-1]

    def __exit__(self, *exc):
        torch.serialization.location_tag = self.orig
        return False


def save_zip(obj, path, location=None):
    """torch.save, default (zip) container. Saved under the final basename so that the archive's
    top-level folder is what torch derives from the file name; then moved into place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        tmp = os.path.join(tmpdir, os.path.basename(path))
        with _location(location):
            torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


STORAGE_ELEMENT_SIZE = {
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "DoubleStorage": 8,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "ByteStorage": 1,
    "CharStorage": 1,
    "BoolStorage": 1,
}


class _PidRecorder(pickle.Unpickler):
    """Unpickles a torch object pickle without building tensors, recording the persistent ids."""

    def __init__(self, f):
        super().__init__(f)
        self.pids = []

    def persistent_load(self, pid):
        self.pids.append(pid)
        return None

    def find_class(self, module, name):
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter")):
            return lambda *a, **k: None
        return super().find_class(module, name)


def canonicalize_legacy(raw, seed):
    """Make a legacy-container torch.save output reproducible.

    The legacy writer names each storage str(storage._cdata), a heap address, and writes the
    storages sorted by that key, so the bytes change from run to run. We rewrite every key to a
    fixed 15-digit pseudo-address (a seeded permutation, so that key order differs from the order
    of first appearance, as in real files), re-pickle the sorted key list and reorder the storage
    records to match. The result is exactly what torch would have written had the storages lived at
    those addresses. Returns (bytes, {old_key: new_key}).
    """
    f = io.BytesIO(raw)
    magic = pickle.load(f)
    assert magic == 0x1950A86A20F9469CFC6C, "not a legacy torch file"
    assert pickle.load(f) == 1001
    pickle.load(f)  # sys_info
    main_start = f.tell()
    rec = _PidRecorder(f)
    rec.load()
    main_end = f.tell()
    keys_list = pickle.load(f)
    records_start = f.tell()

    # storage type and numel per key, in order of first appearance
    info = collections.OrderedDict()
    for pid in rec.pids:
        assert pid[0] == "storage"
        key = pid[2]
        info.setdefault(key, (pid[1].__name__, pid[4]))
    assert sorted(info) == sorted(keys_list)

    rng = np.random.default_rng(seed)
    slots = rng.permutation(len(info))
    new_key = {old: str(140_000_000_000_000 + 0x10000 * (int(s) + 1)) for old, s in zip(info, slots)}

    # storage records, in the original (sorted-old-key) order
    blobs = {}
    pos = records_start
    for key in keys_list:
        (count,) = struct.unpack("<q", raw[pos : pos + 8])
        tname, numel = info[key]
        assert count == numel, (key, count, numel)
        nbytes = 8 + count * STORAGE_ELEMENT_SIZE[tname]
        blobs[key] = raw[pos : pos + nbytes]
        pos += nbytes
    assert pos == len(raw), "unexpected trailing bytes in legacy file"

    # rewrite the key strings inside the object pickle (protocol 2: BINUNICODE ops)
    main = raw[main_start:main_end]
    ops = list(pickletools.genops(main))
    out = bytearray()
    for i, (op, arg, p) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(main)
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8") and arg in new_key:
            b = new_key[arg].encode()
            out += b"X" + struct.pack("<I", len(b)) + b
        else:
            out += main[p:end]
    new_list = sorted(new_key.values())
    inverse = {v: k for k, v in new_key.items()}
    result = raw[:main_start] + bytes(out) + pickle.dumps(new_list, protocol=2)
    result += b"".join(blobs[inverse[k]] for k in new_list)
    return result, new_key


def save_legacy(obj, path, location=None, seed=SEED_LEGACY_KEYS):
    buf = io.BytesIO()
    with _location(location):
        torch.save(obj, buf, _use_new_zipfile_serialization=False)
    data, _ = canonicalize_legacy(buf.getvalue(), seed)
    atomic_write(path, data)


def object_pickle_ops(path):
    """Returns the pickletools ops of the object pickle of a torch file (zip or legacy)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            data = z.read(name)
        return list(pickletools.genops(data))
    f = io.BytesIO(raw)
    for _ in range(3):
        pickle.load(f)
    start = f.tell()
    _PidRecorder(f).load()
    return list(pickletools.genops(raw[start : f.tell()]))


def pickle_protocol_of(ops):
    return ops[0][1] if ops and ops[0][0].name == "PROTO" else None


# ---------------------------------------------------------------------------------------------
# Tiny GPT-2 weights (HF layout)


def make_gpt2_weights():
    """Random but 'alive' weights: every LayerNorm gain differs from 1 and every bias is nonzero,
    so each step of the TL weight processing changes the numbers."""
    rng = np.random.default_rng(SEED_GPT2)

    def normal(shape, std, mean=0.0):
        return torch.from_numpy((mean + std * rng.standard_normal(shape)).astype(np.float32))

    w = collections.OrderedDict()
    w["wte.weight"] = normal((VOCAB, D_MODEL), 0.3)
    w["wpe.weight"] = normal((N_CTX, D_MODEL), 0.2)
    mask = torch.tril(torch.ones(N_CTX, N_CTX, dtype=torch.float32)).view(1, 1, N_CTX, N_CTX)
    for l in range(N_LAYER):
        p = f"h.{l}."
        w[p + "ln_1.weight"] = normal((D_MODEL,), 0.2, 1.0)
        w[p + "ln_1.bias"] = normal((D_MODEL,), 0.1)
        w[p + "attn.bias"] = mask.clone()
        w[p + "attn.masked_bias"] = torch.tensor(-1e4, dtype=torch.float32)
        w[p + "attn.c_attn.weight"] = normal((D_MODEL, 3 * D_MODEL), 0.3)
        w[p + "attn.c_attn.bias"] = normal((3 * D_MODEL,), 0.1)
        w[p + "attn.c_proj.weight"] = normal((D_MODEL, D_MODEL), 0.3)
        w[p + "attn.c_proj.bias"] = normal((D_MODEL,), 0.1)
        w[p + "ln_2.weight"] = normal((D_MODEL,), 0.2, 1.0)
        w[p + "ln_2.bias"] = normal((D_MODEL,), 0.1)
        w[p + "mlp.c_fc.weight"] = normal((D_MODEL, D_MLP), 0.3)
        w[p + "mlp.c_fc.bias"] = normal((D_MLP,), 0.1)
        w[p + "mlp.c_proj.weight"] = normal((D_MLP, D_MODEL), 0.3)
        w[p + "mlp.c_proj.bias"] = normal((D_MODEL,), 0.1)
    w["ln_f.weight"] = normal((D_MODEL,), 0.2, 1.0)
    w["ln_f.bias"] = normal((D_MODEL,), 0.1)
    for k, t in w.items():
        if not k.endswith("attn.bias"):
            assert bool((t != 0).all()), k
    return w


def gpt2_config():
    # Keys of a config.json written by a recent transformers save_pretrained for GPT-2.
    return collections.OrderedDict(
        [
            ("_name_or_path", "ctxdep-tiny-gpt2"),
            ("activation_function", "gelu_new"),
            ("architectures", ["GPT2LMHeadModel"]),
            ("attn_pdrop", 0.1),
            ("bos_token_id", BOS),
            ("embd_pdrop", 0.1),
            ("eos_token_id", BOS),
            ("initializer_range", 0.02),
            ("layer_norm_epsilon", LN_EPS),
            ("model_type", "gpt2"),
            ("n_ctx", N_CTX),
            ("n_embd", D_MODEL),
            ("n_head", N_HEAD),
            ("n_inner", None),
            ("n_layer", N_LAYER),
            ("n_positions", N_CTX),
            ("reorder_and_upcast_attn", False),
            ("resid_pdrop", 0.1),
            ("scale_attn_by_inverse_layer_idx", False),
            ("scale_attn_weights", True),
            ("summary_activation", None),
            ("summary_first_dropout", 0.1),
            ("summary_proj_to_labels", True),
            ("summary_type", "cls_index"),
            ("summary_use_proj", True),
            ("task_specific_params", {"text-generation": {"do_sample": True, "max_length": 50}}),
            ("torch_dtype", "float32"),
            ("transformers_version", "4.41.2"),
            ("use_cache", True),
            ("vocab_size", VOCAB),
        ]
    )


def module_metadata(paths):
    """The `_metadata` attribute nn.Module.state_dict() attaches (every module here is version 1)."""
    md = collections.OrderedDict()
    for p in paths:
        md[p] = {"version": 1}
    return md


def gpt2_module_paths(prefix):
    paths = [""] + ([prefix.rstrip(".")] if prefix else [])
    paths += [prefix + "wte", prefix + "wpe", prefix + "drop", prefix + "h"]
    for l in range(N_LAYER):
        b = f"{prefix}h.{l}"
        paths += [b, b + ".ln_1", b + ".attn", b + ".attn.c_attn", b + ".attn.c_proj", b + ".attn.attn_dropout",
                  b + ".attn.resid_dropout", b + ".ln_2", b + ".mlp", b + ".mlp.c_fc", b + ".mlp.c_proj",
                  b + ".mlp.act", b + ".mlp.dropout"]
    paths.append(prefix + "ln_f")
    return paths


def write_gpt2_fixtures(root, w):
    cfg_json = json.dumps(gpt2_config(), indent=2) + "\n"

    # 1. safetensors, HF file layout: unprefixed, no lm_head, sorted by name like the safetensors lib.
    d = os.path.join(root, "tiny-gpt2")
    atomic_write(os.path.join(d, "config.json"), cfg_json.encode())
    write_safetensors(os.path.join(d, "model.safetensors"),
                      collections.OrderedDict((k, w[k]) for k in sorted(w)), {"format": "pt"})

    # 2. legacy torch container (like the 2019 pytorch_model.bin), unprefixed names.
    d = os.path.join(root, "tiny-gpt2-bin-legacy")
    atomic_write(os.path.join(d, "config.json"), cfg_json.encode())
    sd = collections.OrderedDict((k, t.clone()) for k, t in w.items())
    sd._metadata = module_metadata(gpt2_module_paths(""))
    save_legacy(sd, os.path.join(d, "pytorch_model.bin"))

    # 3. zip container, GPT2LMHeadModel.state_dict() names: transformer. prefix and tied lm_head.
    d = os.path.join(root, "tiny-gpt2-bin-zip")
    atomic_write(os.path.join(d, "config.json"), cfg_json.encode())
    sd = collections.OrderedDict(("transformer." + k, t.clone()) for k, t in w.items())
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: same storage, saved once
    sd._metadata = module_metadata(gpt2_module_paths("transformer.") + ["lm_head"])
    save_zip(sd, os.path.join(d, "pytorch_model.bin"))


# ---------------------------------------------------------------------------------------------
# Reference computations (float64)


def gelu_new(x):
    # TL utils.gelu_new / HF NewGELUActivation: tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def layer_norm(x, g, b):
    c = x - x.mean(-1, keepdim=True)
    return c / torch.sqrt((c * c).mean(-1, keepdim=True) + LN_EPS) * g + b


def ln_pre(x):
    c = x - x.mean(-1, keepdim=True)
    return c / torch.sqrt((c * c).mean(-1, keepdim=True) + LN_EPS)


def causal_softmax(scores):
    T = scores.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def hf_forward(w, tok, mlp_replace=None):
    """(a) Unprocessed HF GPT2LMHeadModel forward. `mlp_replace[l]`, if given, is added to the
    residual instead of block l's MLP output. Returns raw HF activations and HF logits."""
    B, T = tok.shape
    h = w["wte.weight"][tok] + w["wpe.weight"][:T]
    acts = {}
    for l in range(N_LAYER):
        p = f"h.{l}."
        a = layer_norm(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (t.reshape(B, T, N_HEAD, D_HEAD).transpose(1, 2) for t in qkv.split(D_MODEL, dim=-1))
        pattern = causal_softmax(q @ k.transpose(-1, -2) / math.sqrt(D_HEAD))
        z = (pattern @ v).transpose(1, 2).reshape(B, T, D_MODEL)
        attn = z @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        mid = h + attn
        m = layer_norm(mid, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        mlp = gelu_new(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"]
        mlp = mlp + w[p + "mlp.c_proj.bias"]
        post = mid + (mlp_replace[l] if mlp_replace is not None and l in mlp_replace else mlp)
        acts[l] = dict(attn=attn, mid=mid, mlp=mlp, post=post)
        h = post
    logits = layer_norm(h, w["ln_f.weight"], w["ln_f.bias"]) @ w["wte.weight"].T
    return acts, logits


def hf_to_tl_hooks(acts, logits):
    """The processing's consequences: TL residual = HF residual minus its d_model mean, etc."""
    def centre(x):
        return x - x.mean(-1, keepdim=True)

    hooks = {}
    for l, a in acts.items():
        hooks[f"x.{l}"] = ln_pre(a["mid"])
        hooks[f"y.{l}"] = centre(a["mlp"])
        hooks[f"resid_mid.{l}"] = centre(a["mid"])
        hooks[f"attn_out.{l}"] = centre(a["attn"])
        hooks[f"resid_post.{l}"] = centre(a["post"])
    return hooks, logits - logits.mean(-1, keepdim=True)


def hf_to_tl_weights(w):
    """TransformerLens's convert_gpt2_weights."""
    t = collections.OrderedDict()
    t["embed.W_E"] = w["wte.weight"].clone()
    t["pos_embed.W_pos"] = w["wpe.weight"].clone()
    for l in range(N_LAYER):
        p, b = f"h.{l}.", f"blocks.{l}."
        t[b + "ln1.w"], t[b + "ln1.b"] = w[p + "ln_1.weight"], w[p + "ln_1.bias"]
        Wq, Wk, Wv = w[p + "attn.c_attn.weight"].split(D_MODEL, dim=1)
        bias = w[p + "attn.c_attn.bias"].reshape(3, N_HEAD, D_HEAD)
        for i, (X, Wx) in enumerate(zip("QKV", (Wq, Wk, Wv))):
            t[b + f"attn.W_{X}"] = Wx.reshape(D_MODEL, N_HEAD, D_HEAD).permute(1, 0, 2).contiguous()
            t[b + f"attn.b_{X}"] = bias[i].clone()
        t[b + "attn.W_O"] = w[p + "attn.c_proj.weight"].reshape(N_HEAD, D_HEAD, D_MODEL).clone()
        t[b + "attn.b_O"] = w[p + "attn.c_proj.bias"].clone()
        t[b + "ln2.w"], t[b + "ln2.b"] = w[p + "ln_2.weight"], w[p + "ln_2.bias"]
        t[b + "mlp.W_in"] = w[p + "mlp.c_fc.weight"].clone()
        t[b + "mlp.b_in"] = w[p + "mlp.c_fc.bias"].clone()
        t[b + "mlp.W_out"] = w[p + "mlp.c_proj.weight"].clone()
        t[b + "mlp.b_out"] = w[p + "mlp.c_proj.bias"].clone()
    t["ln_final.w"], t["ln_final.b"] = w["ln_f.weight"], w["ln_f.bias"]
    t["unembed.W_U"] = w["wte.weight"].T.clone()
    t["unembed.b_U"] = torch.zeros(VOCAB, dtype=w["wte.weight"].dtype)
    return t


def process_tl(t):
    """The weight processing, in the order TL applies it: fold_layer_norm, center_writing_weights,
    center_unembed, fold_value_biases."""
    t = collections.OrderedDict((k, v.clone()) for k, v in t.items())
    # 1. fold_layer_norm
    for l in range(N_LAYER):
        b = f"blocks.{l}."
        g1, b1 = t.pop(b + "ln1.w"), t.pop(b + "ln1.b")
        for X in "QKV":
            W = t[b + f"attn.W_{X}"]
            t[b + f"attn.b_{X}"] = t[b + f"attn.b_{X}"] + torch.einsum("imh,m->ih", W, b1)
            W = W * g1[None, :, None]
            t[b + f"attn.W_{X}"] = W - W.mean(1, keepdim=True)
        g2, b2 = t.pop(b + "ln2.w"), t.pop(b + "ln2.b")
        W = t[b + "mlp.W_in"]
        t[b + "mlp.b_in"] = t[b + "mlp.b_in"] + b2 @ W
        W = W * g2[:, None]
        t[b + "mlp.W_in"] = W - W.mean(0, keepdim=True)
    gf, bf = t.pop("ln_final.w"), t.pop("ln_final.b")
    W = t["unembed.W_U"]
    t["unembed.b_U"] = t["unembed.b_U"] + bf @ W
    W = W * gf[:, None]
    t["unembed.W_U"] = W - W.mean(0, keepdim=True)
    # 2. center_writing_weights
    t["embed.W_E"] = t["embed.W_E"] - t["embed.W_E"].mean(-1, keepdim=True)
    t["pos_embed.W_pos"] = t["pos_embed.W_pos"] - t["pos_embed.W_pos"].mean(-1, keepdim=True)
    for l in range(N_LAYER):
        b = f"blocks.{l}."
        for k in ("attn.W_O", "attn.b_O", "mlp.W_out", "mlp.b_out"):
            t[b + k] = t[b + k] - t[b + k].mean(-1, keepdim=True)
    # 3. center_unembed
    t["unembed.W_U"] = t["unembed.W_U"] - t["unembed.W_U"].mean(-1, keepdim=True)
    t["unembed.b_U"] = t["unembed.b_U"] - t["unembed.b_U"].mean()
    # 4. fold_value_biases
    for l in range(N_LAYER):
        b = f"blocks.{l}."
        t[b + "attn.b_O"] = t[b + "attn.b_O"] + torch.einsum("ih,ihm->m", t[b + "attn.b_V"], t[b + "attn.W_O"])
        t[b + "attn.b_V"] = torch.zeros_like(t[b + "attn.b_V"])
    return t


def check_processed(P):
    """Invariants the weight processing promises for the processed weights (all exact in real arithmetic)."""
    tol = 1e-12
    assert float(P["embed.W_E"].mean(-1).abs().max()) < tol
    assert float(P["pos_embed.W_pos"].mean(-1).abs().max()) < tol
    assert float(P["unembed.W_U"].mean(0).abs().max()) < tol
    assert float(P["unembed.W_U"].mean(-1).abs().max()) < tol
    assert abs(float(P["unembed.b_U"].mean())) < tol
    for l in range(N_LAYER):
        b = f"blocks.{l}."
        for X in "QKV":
            assert float(P[b + f"attn.W_{X}"].mean(1).abs().max()) < tol
        assert not bool(P[b + "attn.b_V"].any())
        assert float(P[b + "attn.W_O"].mean(-1).abs().max()) < tol
        assert float(P[b + "mlp.W_in"].mean(0).abs().max()) < tol
        assert float(P[b + "mlp.W_out"].mean(-1).abs().max()) < tol
        assert abs(float(P[b + "mlp.b_out"].mean())) < tol
        assert abs(float(P[b + "attn.b_O"].mean())) < tol


def tl_forward(P, tok, mlp_replace=None):
    """(b) Forward of the processed TL model with LNPre. `mlp_replace[l]` replaces
    the value at blocks.l.hook_mlp_out. Returns (hooks, logits)."""
    B, T = tok.shape
    resid = P["embed.W_E"][tok] + P["pos_embed.W_pos"][:T]
    hooks = {}
    for l in range(N_LAYER):
        b = f"blocks.{l}."
        xh = ln_pre(resid)
        q, k, v = (torch.einsum("bpm,imh->bpih", xh, P[b + f"attn.W_{X}"]) + P[b + f"attn.b_{X}"] for X in "QKV")
        scores = torch.einsum("bpih,bsih->bips", q, k) / math.sqrt(D_HEAD)
        pattern = causal_softmax(scores)
        z = torch.einsum("bips,bsih->bpih", pattern, v)
        attn_out = torch.einsum("bpih,ihm->bpm", z, P[b + "attn.W_O"]) + P[b + "attn.b_O"]
        resid_mid = resid + attn_out
        x2 = ln_pre(resid_mid)
        mlp_out = gelu_new(x2 @ P[b + "mlp.W_in"] + P[b + "mlp.b_in"]) @ P[b + "mlp.W_out"] + P[b + "mlp.b_out"]
        hooks[f"x.{l}"], hooks[f"y.{l}"] = x2, mlp_out
        if mlp_replace is not None and l in mlp_replace:
            mlp_out = mlp_replace[l]
        resid = resid_mid + mlp_out
        hooks[f"resid_mid.{l}"], hooks[f"attn_out.{l}"], hooks[f"resid_post.{l}"] = resid_mid, attn_out, resid
    logits = ln_pre(resid) @ P["unembed.W_U"] + P["unembed.b_U"]
    return hooks, logits


def per_token_ce(logits, tok):
    """-log_softmax(logits[b, p])[tok[b, p+1]], p = 0..T-2, natural log (TL lm_cross_entropy_loss)."""
    lp = torch.log_softmax(logits[:, :-1], dim=-1)
    return -lp.gather(-1, tok[:, 1:, None].long())[..., 0]


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max())


# ---------------------------------------------------------------------------------------------
# Transcoders


class HookPoint(nn.Module):
    """Parameter-free stand-in for transformer_lens.hook_points.HookPoint."""

    def forward(self, x):
        return x


class SparseAutoencoder(nn.Module):
    """Only what shapes the state_dict of transcoder_circuits' SparseAutoencoder: parameters in
    registration order W_enc, b_enc, W_dec, b_dec, b_dec_out, then four HookPoint children."""

    def __init__(self, W_enc, b_enc, W_dec, b_dec, b_dec_out):
        super().__init__()
        self.W_enc = nn.Parameter(W_enc.clone())
        self.b_enc = nn.Parameter(b_enc.clone())
        self.W_dec = nn.Parameter(W_dec.clone())
        self.b_dec = nn.Parameter(b_dec.clone())
        self.b_dec_out = nn.Parameter(b_dec_out.clone())
        self.hook_sae_in = HookPoint()
        self.hook_hidden_pre = HookPoint()
        self.hook_hidden_post = HookPoint()
        self.hook_sae_out = HookPoint()


def transcoder_cfg(layer, dtype=torch.float32):
    # Values of transcoder_circuits' train_transcoder.py example, scaled to the tiny model; fields
    # not passed there keep the class defaults, so use_ghost_grads is the tuple (False,).
    return LanguageModelSAERunnerConfig(
        hook_point=f"blocks.{layer}.ln2.hook_normalized",
        hook_point_layer=layer,
        d_in=D_MODEL,
        dataset_path="Skylion007/openwebtext",
        is_dataset_tokenized=False,
        model_name="gpt2-small",
        is_transcoder=True,
        out_hook_point=f"blocks.{layer}.hook_mlp_out",
        out_hook_point_layer=layer,
        d_out=D_MODEL,
        expansion_factor=EXPANSION,
        b_dec_init_method="mean",
        lr=0.0004,
        l1_coefficient=0.00014,
        lr_scheduler_name="constantwithwarmup",
        train_batch_size=4096,
        context_size=128,
        lr_warm_up_steps=5000,
        n_batches_in_buffer=128,
        total_training_tokens=1_000_000 * 60,
        store_batch_size=32,
        feature_sampling_method=None,
        feature_sampling_window=1000,
        resample_batches=1028,
        dead_feature_window=5000,
        dead_feature_threshold=1e-8,
        log_to_wandb=False,
        use_tqdm=True,
        device="cuda",
        seed=42,
        n_checkpoints=3,
        checkpoint_path="gpt2-small-transcoders",
        dtype=dtype,
    )


def make_transcoder_weights(layer):
    rng = np.random.default_rng(SEED_TRANSCODER + layer)

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    W_enc = normal((D_MODEL, D_SAE), 0.3)
    b_enc = normal((D_SAE,), 0.1, -0.8)  # slightly negative: 10-40% of features fire
    W_dec = rng.standard_normal((D_SAE, D_MODEL))
    W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
    b_dec = normal((D_MODEL,), 0.1)
    b_dec_out = normal((D_MODEL,), 0.1)
    names = ("W_enc", "b_enc", "W_dec", "b_dec", "b_dec_out")
    return collections.OrderedDict((n, torch.from_numpy(a)) for n, a in zip(names, (W_enc, b_enc, W_dec, b_dec, b_dec_out)))


def transcoder_forward(p, x):
    """The transcoder's encode/decode in float64 from the given (float32 or float16) weights."""
    p = {k: v.double() for k, v in p.items()}
    hidden_pre = (x.double() - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    acts = torch.relu(hidden_pre)
    recon = acts @ p["W_dec"] + p["b_dec_out"]
    return hidden_pre, acts, recon


def transcoder_name(layer):
    return f"final_sparse_autoencoder_gpt2-small_blocks.{layer}.ln2.hook_normalized_{D_SAE}"


def log_feature_sparsity(acts, layer):
    """log10(freq + 1e-10) per feature. Frequencies are the firing rates on the
    golden x; a few features are then made dead or dead-ish so that the notebook's
    `> -4` liveness test has work to do, including the exact boundary value -4."""
    freq = (acts > 0).double().mean(0)
    v = torch.log10(freq + 1e-10)
    rng = np.random.default_rng(SEED_SPARSITY + layer)
    idx = rng.choice(D_SAE, size=8, replace=False)
    v[idx[0]] = -10.0  # log10(1e-10): never fired
    v[idx[1]] = -4.0  # boundary: not live (the test is strictly > -4)
    v[idx[2]] = -3.9999  # just live
    for j, i in enumerate(idx[3:]):
        v[i] = -4.0 - 0.5 * (j + 1)  # -4.5 .. -6.5
    return v.float()


# ---------------------------------------------------------------------------------------------
# Tokens


def golden_tokens():
    rng = np.random.default_rng(SEED_TOKENS)
    r0 = [BOS, 0, 50255, 15496, 11, 995, 50000, 1, 49999] + list(rng.integers(0, VOCAB, 7))
    r1 = [15496, 995, 0, 50256, 50255, 40000] + list(rng.integers(25000, VOCAB, 5)) + list(rng.integers(0, VOCAB, 5))
    tok = torch.tensor([r0, r1], dtype=torch.int64)
    assert tok.shape == (GOLDEN_BATCH, GOLDEN_T)
    return tok


def cache_tokens():
    rng = np.random.default_rng(SEED_CACHE_TOKENS)
    tok = rng.integers(0, VOCAB, size=(CACHE_ROWS, CACHE_T), dtype=np.int64)
    tok[:, 0] = BOS
    return tok


# ---------------------------------------------------------------------------------------------


def generate(root, report):
    """Writes every fixture under `root` (the testdata directory). Returns nothing; appends
    human-readable findings to `report`."""
    w32 = make_gpt2_weights()
    write_gpt2_fixtures(root, w32)
    w = collections.OrderedDict((k, v.double()) for k, v in w32.items())

    # ---- processed TL weights
    P = process_tl(hf_to_tl_weights(w))
    check_processed(P)
    P32 = collections.OrderedDict((k, v.float()) for k, v in P.items())
    proc = collections.OrderedDict()
    for l in range(N_LAYER):
        b = f"blocks.{l}."
        for k in ("attn.W_Q", "attn.b_Q", "attn.W_K", "attn.b_K", "attn.W_V", "attn.b_V", "attn.W_O", "attn.b_O",
                  "mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out"):
            proc[b + k] = P32[b + k]
    proc["pos_embed.W_pos"] = P32["pos_embed.W_pos"]
    proc["embed.W_E_head"] = P32["embed.W_E"][:256].clone()
    proc["embed.W_E_last"] = P32["embed.W_E"][-1:].clone()
    proc["unembed.W_U_head"] = P32["unembed.W_U"][:, :256].clone()
    proc["unembed.W_U_last"] = P32["unembed.W_U"][:, -1:].clone()
    proc["unembed.b_U"] = P32["unembed.b_U"]
    meta = {"fixture": "ctxdep-gpt2-processed", "version": FIXTURE_VERSION, "generator": GENERATOR,
            "source": "testdata/tiny-gpt2/model.safetensors processed as TransformerLens in float64"}
    write_safetensors(os.path.join(root, "golden", "gpt2_processed.safetensors"), proc, meta)

    # ---- golden forward on the golden tokens
    tok = golden_tokens()
    acts_a, logits_hf = hf_forward(w, tok)
    hooks_a, logits_a = hf_to_tl_hooks(acts_a, logits_hf)
    hooks_b, logits_b = tl_forward(P, tok)
    diffs = {}
    for k in hooks_b:
        diffs[k] = maxdiff(hooks_a[k], hooks_b[k])
    diffs["logits"] = maxdiff(logits_a, logits_b)
    ce_a, ce_b = per_token_ce(logits_hf, tok), per_token_ce(logits_b, tok)
    diffs["ce"] = maxdiff(ce_a, ce_b)
    diffs["lse"] = maxdiff(torch.logsumexp(logits_a, -1), torch.logsumexp(logits_b, -1))

    golden = collections.OrderedDict()
    golden["tokens"] = tok.to(torch.int32)
    for l in range(N_LAYER):
        for k in ("x", "y", "resid_mid", "attn_out", "resid_post"):
            golden[f"{k}.{l}"] = hooks_b[f"{k}.{l}"].float()
    golden["ce"] = ce_b.float()
    golden["loss"] = ce_b.mean().reshape(1).float()
    golden["logits_head"] = logits_b[:, :, :64].float().contiguous()
    golden["logits_tail"] = logits_b[:, :, -64:].float().contiguous()
    golden["lse"] = torch.logsumexp(logits_b, -1).float()

    # ---- transcoders (need golden x)
    tc_golden = collections.OrderedDict()
    tc_weights = {}
    fire = {}
    for L in range(N_LAYER):
        p = make_transcoder_weights(L)
        tc_weights[L] = p
        x = golden[f"x.{L}"].reshape(-1, D_MODEL)
        hp, ac, rc = transcoder_forward(p, x)
        tc_golden[f"hidden_pre.{L}"] = hp.float()
        tc_golden[f"acts.{L}"] = ac.float()
        tc_golden[f"recon.{L}"] = rc.float()
        fire[L] = float((ac > 0).double().mean())
        assert 0.10 <= fire[L] <= 0.40, f"layer {L}: firing fraction {fire[L]:.3f} outside [0.1, 0.4]"
        rownorm = p["W_dec"].double().norm(dim=1)
        assert float((rownorm - 1).abs().max()) < 1e-6

    # ---- ablation / splice CE, both paths
    for l in range(N_LAYER):
        zero = torch.zeros(GOLDEN_BATCH, GOLDEN_T, D_MODEL, dtype=torch.float64)
        splice32 = tc_golden[f"recon.{l}"].reshape(GOLDEN_BATCH, GOLDEN_T, D_MODEL)
        splice = splice32.double()
        for name, rep in (("ce_zero", zero), ("ce_splice", splice)):
            _, lg_hf = hf_forward(w, tok, {l: rep})
            _, lg_tl = tl_forward(P, tok, {l: rep})
            ca, cb = per_token_ce(lg_hf, tok), per_token_ce(lg_tl, tok)
            diffs[f"{name}.{l}"] = maxdiff(ca, cb)
            golden[f"{name}.{l}"] = cb.float()
        golden[f"splice.{l}"] = splice32.contiguous()

    worst = max(diffs.values())
    assert worst < PATH_ATOL, f"reference paths disagree: {diffs}"
    report.append(("path (a) HF vs path (b) TL, float64, max |diff| per tensor", diffs))

    meta = {"fixture": "ctxdep-gpt2-hooks", "version": FIXTURE_VERSION, "generator": GENERATOR,
            "model": "testdata/tiny-gpt2", "precision": "float64 reference, stored as float32"}
    write_safetensors(os.path.join(root, "golden", "gpt2_hooks.safetensors"), golden, meta)

    # ---- float32 reruns, to tell Go tests what float32 arithmetic typically deviates by
    f32 = {}
    acts32, lhf32 = hf_forward(w32, tok)
    h32a, l32a = hf_to_tl_hooks(acts32, lhf32)
    h32b, l32b = tl_forward(P32, tok)
    for tag, hooks, lg, raw in (("a_f32", h32a, l32a, lhf32), ("b_f32", h32b, l32b, l32b)):
        f32[tag] = {
            "x": max(maxdiff(hooks[f"x.{l}"], hooks_b[f"x.{l}"]) for l in range(N_LAYER)),
            "y": max(maxdiff(hooks[f"y.{l}"], hooks_b[f"y.{l}"]) for l in range(N_LAYER)),
            "resid_post": max(maxdiff(hooks[f"resid_post.{l}"], hooks_b[f"resid_post.{l}"]) for l in range(N_LAYER)),
            "logits": maxdiff(lg, logits_b),
            "ce": maxdiff(per_token_ce(raw, tok), ce_b),
        }
    # float64 forward through the float32-rounded processed weights
    h64r, l64r = tl_forward(collections.OrderedDict((k, v.double()) for k, v in P32.items()), tok)
    f32["b_f64_rounded_weights"] = {
        "x": max(maxdiff(h64r[f"x.{l}"], hooks_b[f"x.{l}"]) for l in range(N_LAYER)),
        "y": max(maxdiff(h64r[f"y.{l}"], hooks_b[f"y.{l}"]) for l in range(N_LAYER)),
        "logits": maxdiff(l64r, logits_b),
    }
    report.append(("float32 computations vs float64 golden, max |diff|", f32))

    # ---- transcoder files
    tdir = os.path.join(root, "tiny-transcoders")
    for L in range(N_LAYER):
        p = tc_weights[L]
        sae = SparseAutoencoder(**p)
        obj = {"cfg": transcoder_cfg(L), "state_dict": sae.state_dict()}
        save_zip(obj, os.path.join(tdir, transcoder_name(L) + ".pt"), location="cuda:0")
        spars = log_feature_sparsity(tc_golden[f"acts.{L}"], L)
        save_zip(spars.clone(), os.path.join(tdir, transcoder_name(L) + "_log_feature_sparsity.pt"))
        tc_golden[f"log_feature_sparsity.{L}"] = spars
    p1 = tc_weights[1]
    obj = {"cfg": transcoder_cfg(1), "state_dict": SparseAutoencoder(**p1).state_dict()}
    save_legacy(obj, os.path.join(tdir, "legacy", transcoder_name(1) + ".pt"), location="cuda:0")
    p16 = collections.OrderedDict((k, v.half()) for k, v in p1.items())
    obj = {"cfg": transcoder_cfg(1, dtype=torch.float16), "state_dict": SparseAutoencoder(**p16).state_dict()}
    save_zip(obj, os.path.join(tdir, "fp16", transcoder_name(1) + ".pt"), location="cuda:0")
    _, a16, r16 = transcoder_forward(p16, golden["x.1"].reshape(-1, D_MODEL))
    tc_golden["acts_fp16.1"] = a16.float()
    tc_golden["recon_fp16.1"] = r16.float()
    report.append(("transcoder firing fraction on golden x", fire))

    meta = {"fixture": "ctxdep-transcoder-golden", "version": FIXTURE_VERSION, "generator": GENERATOR,
            "transcoders": "testdata/tiny-transcoders", "precision": "float64 reference, stored as float32"}
    write_safetensors(os.path.join(root, "golden", "transcoder.safetensors"), tc_golden, meta)

    # ---- token files and cache hooks
    ct = cache_tokens()
    os.makedirs(os.path.join(root, "tokens"), exist_ok=True)
    for name, arr in (("tiny-int64.npy", ct), ("tiny-int32.npy", ct.astype(np.int32))):
        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write(os.path.join(root, "tokens", name), buf.getvalue())
    ctok = torch.from_numpy(ct)
    hc_b, _ = tl_forward(P, ctok)
    acts_c, lc = hf_forward(w, ctok)
    hc_a, _ = hf_to_tl_hooks(acts_c, lc)
    cache = collections.OrderedDict()
    cdiff = 0.0
    for l in range(N_LAYER):
        for k in ("x", "y"):
            cdiff = max(cdiff, maxdiff(hc_a[f"{k}.{l}"], hc_b[f"{k}.{l}"]))
            cache[f"{k}.{l}"] = hc_b[f"{k}.{l}"].float()
    assert cdiff < PATH_ATOL
    report.append(("cache hooks: path (a) vs (b), float64, max |diff|", cdiff))
    meta = {"fixture": "ctxdep-cache-hooks", "version": FIXTURE_VERSION, "generator": GENERATOR,
            "tokens": "testdata/tokens/tiny-int64.npy", "model": "testdata/tiny-gpt2"}
    write_safetensors(os.path.join(root, "golden", "cache_hooks.safetensors"), cache, meta)

    return dict(w32=w32, proc=proc, golden=golden, tc_weights=tc_weights, tc_golden=tc_golden,
                cache=cache, ct=ct)


# ---------------------------------------------------------------------------------------------
# Read-back checks


def assert_same(name, got, want):
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, want {want.dtype}"
    assert tuple(got.shape) == tuple(want.shape), f"{name}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    assert torch.equal(got, want), f"{name}: values differ"


def check_state(path, got, want):
    assert list(got.keys()) == list(want.keys()), f"{path}: keys {list(got)[:5]}..."
    for k in want:
        assert_same(f"{path}:{k}", got[k], want[k])


def storage_locations(path):
    """(location, storage type) of every persistent id in the object pickle of a torch file."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            f = io.BytesIO(z.read(name))
    else:
        f = io.BytesIO(raw)
        for _ in range(3):
            pickle.load(f)
    rec = _PidRecorder(f)
    rec.load()
    return [(pid[3], pid[1].__name__) for pid in rec.pids]


def verify(root, g, report):
    w32 = g["w32"]
    # safetensors read-back
    got, meta = read_safetensors(os.path.join(root, "tiny-gpt2", "model.safetensors"))
    assert meta == {"format": "pt"}
    check_state("model.safetensors", collections.OrderedDict((k, got[k]) for k in w32), w32)
    for name, want in (("gpt2_processed", g["proc"]), ("gpt2_hooks", g["golden"]),
                       ("transcoder", g["tc_golden"]), ("cache_hooks", g["cache"])):
        got, _ = read_safetensors(os.path.join(root, "golden", name + ".safetensors"))
        check_state(name, collections.OrderedDict((k, got[k]) for k in want), want)

    # torch pickles
    p = os.path.join(root, "tiny-gpt2-bin-legacy", "pytorch_model.bin")
    check_state(p, torch.load(p, map_location="cpu"), w32)
    p = os.path.join(root, "tiny-gpt2-bin-zip", "pytorch_model.bin")
    sd = torch.load(p, map_location="cpu")
    want = collections.OrderedDict(("transformer." + k, v) for k, v in w32.items())
    want["lm_head.weight"] = w32["wte.weight"]
    check_state(p, sd, want)
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr(), "lm_head not tied"

    infos = {}
    tdir = os.path.join(root, "tiny-transcoders")
    files = [(os.path.join(tdir, transcoder_name(L) + ".pt"), L, torch.float32) for L in range(N_LAYER)]
    files += [(os.path.join(tdir, "legacy", transcoder_name(1) + ".pt"), 1, torch.float32),
              (os.path.join(tdir, "fp16", transcoder_name(1) + ".pt"), 1, torch.float16)]
    for path, L, dt in files:
        obj = torch.load(path, map_location="cpu")
        assert list(obj.keys()) == ["cfg", "state_dict"]
        cfg = obj["cfg"]
        assert type(cfg) is LanguageModelSAERunnerConfig
        assert cfg.hook_point == f"blocks.{L}.ln2.hook_normalized" and cfg.hook_point_layer == L
        assert cfg.out_hook_point == f"blocks.{L}.hook_mlp_out" and cfg.is_transcoder is True
        assert (cfg.d_in, cfg.d_out, cfg.d_sae) == (D_MODEL, D_MODEL, D_SAE)
        assert cfg.device == torch.device("cuda") and cfg.dtype == dt and cfg.use_ghost_grads == (False,)
        assert "sparse_autoencoder_" + cfg.model_name + "_" + cfg.hook_point + "_" + str(cfg.d_sae) in path
        sd = obj["state_dict"]
        assert type(sd) is collections.OrderedDict
        assert list(sd._metadata.keys()) == ["", "hook_sae_in", "hook_hidden_pre", "hook_hidden_post", "hook_sae_out"]
        check_state(path, sd, collections.OrderedDict((k, v.to(dt)) for k, v in g["tc_weights"][L].items()))
        ops = object_pickle_ops(path)
        locs = storage_locations(path)
        assert len(locs) == 5 and all(loc == "cuda:0" for loc, _ in locs), locs
        # the tag is spelled out in the pickle itself (pickletools), once per storage
        tags = [a for (o, a, _) in ops if o.name in ("BINUNICODE", "SHORT_BINUNICODE") and a == "cuda:0"]
        assert len(tags) == 5, tags
        globals_ = [a for (o, a, _) in ops if o.name == "GLOBAL"]
        assert "sae_training.config LanguageModelSAERunnerConfig" in globals_
        infos[os.path.relpath(path, root)] = dict(protocol=pickle_protocol_of(ops), locations=sorted(set(locs)),
                                                   globals=sorted(set(globals_)))
    for L in range(N_LAYER):
        path = os.path.join(tdir, transcoder_name(L) + "_log_feature_sparsity.pt")
        t = torch.load(path, map_location="cpu")
        assert_same(path, t, g["tc_golden"][f"log_feature_sparsity.{L}"])
        assert int((t <= -4).sum()) >= 5
        locs = storage_locations(path)
        assert locs == [("cpu", "FloatStorage")], locs

    for name, dt in (("tiny-int64.npy", np.int64), ("tiny-int32.npy", np.int32)):
        a = np.load(os.path.join(root, "tokens", name))
        assert a.dtype == dt and a.shape == (CACHE_ROWS, CACHE_T) and (a == g["ct"]).all()

    # container facts worth reporting
    facts = {}
    for rel in ("tiny-gpt2-bin-zip/pytorch_model.bin", f"tiny-transcoders/{transcoder_name(0)}.pt"):
        with zipfile.ZipFile(os.path.join(root, rel)) as z:
            facts[rel] = [(i.filename, i.compress_type, i.file_size) for i in z.infolist()]
    report.append(("zip entries (name, compress_type, size)", facts))
    report.append(("transcoder pickles", infos))


def tree_digest(root, rels):
    out = {}
    for rel in rels:
        with open(os.path.join(root, rel), "rb") as f:
            out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def list_files(root):
    out = []
    for d in ("tiny-gpt2", "tiny-gpt2-bin-legacy", "tiny-gpt2-bin-zip", "tiny-transcoders", "golden", "tokens"):
        for dp, _, fns in os.walk(os.path.join(root, d)):
            for fn in fns:
                out.append(os.path.relpath(os.path.join(dp, fn), root))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="testdata directory to write (default: the one holding this script)")
    ap.add_argument("--check-determinism", action="store_true",
                    help="generate twice into temporary folders and compare every byte (writes nothing else)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine; also keeps reductions reproducible

    if args.check_determinism:
        digests = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as d:
                generate(d, [])
                digests.append(tree_digest(d, list_files(d)))
        diff = [k for k in digests[0] if digests[0][k] != digests[1].get(k)]
        print("identical" if not diff and digests[0].keys() == digests[1].keys() else f"DIFFERENT: {diff}")
        return 1 if diff else 0

    root = args.out or os.path.dirname(HERE)
    report = []
    g = generate(root, report)
    verify(root, g, report)
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}, "
          f"pickle protocol {torch.serialization.DEFAULT_PROTOCOL}", file=sys.stderr)
    for title, val in report:
        print(f"== {title}", file=sys.stderr)
        if isinstance(val, dict):
            for k, v in val.items():
                print(f"  {k}: {v}", file=sys.stderr)
        else:
            print(f"  {val}", file=sys.stderr)
    total = 0
    print("== files (bytes, sha256)", file=sys.stderr)
    for rel, h in tree_digest(root, list_files(root)).items():
        n = os.path.getsize(os.path.join(root, rel))
        total += n
        print(f"  {n:>9}  {h[:16]}  {rel}", file=sys.stderr)
    print(f"  {total:>9}  total", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
