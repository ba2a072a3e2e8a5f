#!/usr/bin/env python3
"""Write the torch.save fixtures of internal/torchfile and the values torch reports for them.

Run from the repository root with Debian's Python, which has python3-torch (torch 1.13):

    /usr/bin/python3 testdata/gen/gen_torchfile.py

It writes, all small (a few KB each):

  testdata/torchfile/*.pt          files written by the real torch.save (except the two noted)
  testdata/torchfile/expected.json what torch.load(path, map_location="cpu") returns for each,
                                   encoded as a typed tree (format below)
  internal/torchfile/testdata/fuzz/FuzzLoadBytes/*   seed corpus for FuzzLoadBytes (Go's
                                   "go test fuzz v1" format): some fixtures whole, some prefixes

Fixtures (name: container, what it covers):

  zip_dtypes.pt / legacy_dtypes.pt   dict of float32, float16 (±0, subnormals, ±Inf, NaN, max),
                                     bfloat16 (same kinds), float64 (values that round, overflow
                                     and underflow in float32), int64 extremes, int32, int16, int8,
                                     uint8, bool
  zip_views.pt / legacy_views.pt     views of ONE storage: transpose, slice with storage offset,
                                     row, column, step slice, 0-d element, empty, 3-d permute,
                                     plus an expand (stride 0) and a transposed float16 tensor
  transcoder.pt / transcoder_legacy.pt  {"cfg": dataclass sae_training.config.
                                     LanguageModelSAERunnerConfig, "state_dict": OrderedDict of
                                     W_enc, b_enc, W_dec, b_dec, b_dec_out with _metadata};
                                     storages tagged "cuda:0" (see fake_cuda_location below)
  sparsity.pt                        a bare float32 tensor at top level
  checkpoint.pt                      {"epoch", "model_state_dict": nn.Linear state dict, ...}
  misc_proto2.pt / misc_proto4.pt    python values (ints incl. > 2**63, floats, str, bytes,
  misc_legacy_proto4.pt              None, bools, lists, tuples, nested dicts, a set, dtypes,
                                     torch.device, nn.Parameter); protocol 4 via
                                     torch.save(..., pickle_protocol=4) (FRAME, MEMOIZE,
                                     STACK_GLOBAL, SHORT_BINUNICODE, EMPTY_SET/ADDITEMS)
  legacy_storage_views.pt            HAND-WRITTEN legacy container whose persistent ids carry
                                     view_metadata (modern torch never writes views, but
                                     torch.load still reads them): see write_legacy_views
  disallowed.pt                      torch.save of an object whose __reduce__ names os.system
                                     (pickled as posix.system) with a harmless argument; it is
                                     never loaded here, Go must refuse it

Device tags: we have no GPU. torch.save asks torch.serialization.location_tag(storage) for each
storage's tag and writes whatever it returns into the persistent id; fake_cuda_location
temporarily replaces that module-level function with one returning "cuda:0", which is exactly
the string a CUDA save writes. torch.load(..., map_location="cpu") then reads the file normally.

Determinism: values come from numpy.random.default_rng with fixed seeds; torch 1.13's zip writer
is deterministic. The legacy writer names storages by heap address (str(storage._cdata)), so
canonicalize_legacy rewrites those keys to fixed strings of the same length (keeping every pickle
length field and FRAME valid), re-pickles the sorted key list and reorders the storage blocks;
torch.load of the result is checked to equal torch.load of the original. Re-running leaves the
files byte-identical.

expected.json format: {"torch": version, "files": {name: entry}}, entry either
{"container": "zip"|"legacy", "location": tag of every storage, "value": V} or
{"error": substring the Go error must contain}. V is a typed tree:
  {"t":"none"} {"t":"bool","v":b} {"t":"int","v":"decimal"} {"t":"float","v":"repr"}
  {"t":"str","v":s} {"t":"bytes","v":"hex"} {"t":"list"|"tuple","v":[V...]}
  {"t":"dict","class":"dict"|"collections.OrderedDict","items":[[V,V]...],"attrs":V|null}
  {"t":"global","module":m,"name":n}  {"t":"object","module":m,"name":n,"args":[V...],"state":V}
  {"t":"tensor","dtype":d,"shape":[..],"stride":[..],"offset":n,"requires_grad":b,
   "storage":k (tensors with equal k share one storage view), "f32":[float32 bit patterns of
   t.float() in row-major order], "i64":["decimal",...] (integer and bool tensors only)}
"""

import collections
import dataclasses
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import types

import numpy as np
import torch
from torch import nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "testdata", "torchfile")
FUZZ = os.path.join(ROOT, "internal", "torchfile", "testdata", "fuzz", "FuzzLoadBytes")

# --- sae_training.config.LanguageModelSAERunnerConfig, importable under that exact name -------
# A small stand-in with the fields the Go side reads; pickle looks classes up in
# sys.modules by __module__ and __qualname__, so registering the module is all it takes.
_pkg = types.ModuleType("sae_training")
_cfgmod = types.ModuleType("sae_training.config")
_pkg.config = _cfgmod
sys.modules.setdefault("sae_training", _pkg)
sys.modules.setdefault("sae_training.config", _cfgmod)


@dataclasses.dataclass
class LanguageModelSAERunnerConfig:
    model_name: str = "gpt2-small"
    hook_point: str = "blocks.8.ln2.hook_normalized"
    hook_point_layer: int = 8
    hook_point_head_index: object = None
    d_in: int = 4
    d_out: object = 4
    expansion_factor: int = 2
    is_transcoder: bool = True
    out_hook_point: object = "blocks.8.hook_mlp_out"
    device: object = "cpu"
    dtype: object = torch.float32
    l1_coefficient: float = 0.00014
    lr: float = 0.0004
    total_training_tokens: int = 300_000_000
    use_ghost_grads: object = (False,)  # upstream's stray-comma default, a tuple

    def __post_init__(self):
        self.d_sae = self.d_in * self.expansion_factor
        self.device = torch.device(self.device)
        self.run_name = f"{self.d_sae}-L1-{self.l1_coefficient}-LR-{self.lr}-Tokens-{self.total_training_tokens:3.3e}"


LanguageModelSAERunnerConfig.__module__ = "sae_training.config"
_cfgmod.LanguageModelSAERunnerConfig = LanguageModelSAERunnerConfig


class Evil:
    """Pickles as a call of os.system (posix.system); loading it would run `true`."""

    def __reduce__(self):
        return (os.system, ("true",))


class fake_cuda_location:
    """Within the block, torch.save tags every storage "cuda:0" (see the module docstring)."""

    def __enter__(self):
        self.saved = torch.serialization.location_tag
        torch.serialization.location_tag = lambda storage: "cuda:0"

    def __exit__(self, *exc):
        torch.serialization.location_tag = self.saved


# --- objects ---------------------------------------------------------------------------------


def f16_from_bits(bits):
    return torch.from_numpy(np.array(bits, dtype=np.uint16).view(np.float16).copy())


def bf16_from_bits(bits):
    # bfloat16 is the top half of a float32: build the float32 and truncate exactly.
    f = np.array([b << 16 for b in bits], dtype=np.uint32).view(np.float32)
    return torch.from_numpy(f.copy()).to(torch.bfloat16)


def dtypes_obj():
    rng = np.random.default_rng(1)
    f16_bits = [0x0000, 0x8000, 0x3C00, 0xC100, 0x7BFF, 0x0400, 0x0001, 0x03FF, 0x8001,
                0x7C00, 0xFC00, 0x7E00, 0x3555, 0x0200]
    bf16_bits = [0x0000, 0x8000, 0x3F80, 0xC020, 0x7F7F, 0x0080, 0x0001, 0x007F, 0x8001,
                 0x7F80, 0xFF80, 0x7FC0, 0x3EAB, 0x4049]
    return {
        "f32": torch.from_numpy(np.concatenate([
            np.array([0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38], dtype=np.float32),
            rng.standard_normal(15).astype(np.float32)])).reshape(4, 6),
        "f16": f16_from_bits(f16_bits).reshape(2, 7),
        "bf16": bf16_from_bits(bf16_bits),
        "f64": torch.tensor([0.1, 1.0 / 3, 1e300, -1e300, 1e-50, -0.0, float("nan"), 2.0 ** -149,
                             2.0 ** -150, 16777217.0, 3.4028235677973366e38], dtype=torch.float64),
        "i64": torch.tensor([-(2 ** 63), 2 ** 63 - 1, 0, -1, 2 ** 53 + 1, 16777217], dtype=torch.int64),
        "i32": torch.tensor([[-(2 ** 31), 2 ** 31 - 1], [7, -7]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 128], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
    }


def views_obj():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3
    cube = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    h = torch.arange(12, dtype=torch.float32).reshape(3, 4).half() / 8
    return {
        "base": base,
        "t": base.t(),                 # stride (1, 6)
        "slice": base[1:3, 2:5],       # offset 8, stride (6, 1)
        "row": base[2],                # offset 12
        "col": base[:, 3],             # offset 3, stride (6,)
        "step": base[:, ::2],          # stride (6, 2)
        "scalar": base[1, 1],          # 0-d, offset 7
        "empty": base[:0],             # shape (0, 6)
        "perm": cube.permute(2, 0, 1),  # 3-d, stride (1, 12, 4)
        "expand": torch.tensor([1.0, 2.0, 3.0]).expand(4, 3),  # stride (0, 1)
        "half_t": h.t(),
    }


class TinyTranscoder(nn.Module):
    """Parameters in the order of the released transcoders' state_dict, with HookPoint-like children for _metadata."""

    def __init__(self, d_in, d_sae, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        t = lambda *s: torch.from_numpy(rng.standard_normal(s).astype(np.float32))  # noqa: E731
        self.W_enc = nn.Parameter(t(d_in, d_sae))
        self.b_enc = nn.Parameter(t(d_sae))
        self.W_dec = nn.Parameter(t(d_sae, d_in))
        self.b_dec = nn.Parameter(t(d_in))
        self.b_dec_out = nn.Parameter(t(d_in))
        self.hook_sae_in = nn.Identity()
        self.hook_hidden_post = nn.Identity()


def transcoder_obj():
    cfg = LanguageModelSAERunnerConfig(device="cuda")
    sd = TinyTranscoder(cfg.d_in, cfg.d_sae, seed=2).state_dict()
    return {"cfg": cfg, "state_dict": sd}


def checkpoint_obj():
    torch.manual_seed(3)
    lin = nn.Linear(3, 2)
    return {"epoch": 3, "model_state_dict": lin.state_dict(), "optimizer": {"lr": 0.1, "betas": (0.9, 0.999)}}


def misc_obj():
    return {
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31 - 1, 2 ** 31, 2 ** 63 - 1,
                 -(2 ** 63)],
        "big": 2 ** 70,
        "neg_big": -(2 ** 65) - 3,
        "floats": [0.0, -0.0, 1.5, 1e-310, float("inf"), float("-inf"), 3.141592653589793],
        "str": "héllo ☃",
        "empty_str": "",
        "bytes": b"\x00\x01\xfe\xff",
        "empty_bytes": b"",
        "none": None,
        "true": True,
        "false": False,
        "tuple": (1, "a", None, (2, 3)),
        "empty_tuple": (),
        "nested": {"a": [1, {"b": [2.5, "c"]}], 7: "int key", None: "none key"},
        "set": {42},
        "dtypes": [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool],
        "devices": [torch.device("cpu"), torch.device("cuda"), torch.device("cuda", 1)],
        "param": nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 4.0]])),
        "frozen_param": nn.Parameter(torch.tensor([3.0]), requires_grad=False),
        "shared": [torch.tensor([9.0, 8.0])] * 2,
    }


# --- writers ---------------------------------------------------------------------------------


def save(obj, name, legacy=False, protocol=2, cuda=False):
    path = os.path.join(OUT, name)
    # Saving to the path (not a buffer) makes the zip folder the file stem, as in real files.
    if cuda:
        with fake_cuda_location():
            torch.save(obj, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    with open(path, "rb") as f:
        raw = f.read()
    if legacy:
        canon = canonicalize_legacy(raw)
        assert_same(torch.load(io.BytesIO(raw), map_location="cpu"), torch.load(io.BytesIO(canon), map_location="cpu"))
        raw = canon
    with open(path, "wb") as f:
        f.write(raw)
    return path


def canonicalize_legacy(raw):
    """Replace heap-address storage keys by fixed keys of the same length (see docstring)."""
    f = io.BytesIO(raw)
    seg = []
    for _ in range(5):  # magic, protocol, sys_info, object, key list
        start = f.tell()
        for _op in pickletools.genops(f):
            pass
        seg.append((start, f.tell()))
    obj_start, obj_end = seg[3]
    pids = []

    class Rec(pickle.Unpickler):
        def persistent_load(self, pid):
            pids.append(pid)
            return pid[1](pid[4])  # a fresh typed storage of the right size

    Rec(io.BytesIO(raw[obj_start:obj_end])).load()
    info = collections.OrderedDict()
    for pid in pids:
        info.setdefault(pid[2], (pid[1], pid[4]))
    old_keys = pickle.loads(raw[seg[4][0]:seg[4][1]])
    assert sorted(info) == old_keys
    new_key = {}
    for i, old in enumerate(info):
        new = str(10 ** (len(old) - 1) + 7 * (len(info) - i))  # reverse order: sorted ≠ first use
        assert len(new) == len(old)
        new_key[old] = new
    blobs, pos = {}, seg[4][1]
    for old in old_keys:
        (count,) = struct.unpack("<q", raw[pos:pos + 8])
        stype, numel = info[old]
        assert count == numel
        n = 8 + count * torch._utils._element_size(stype.dtype)
        blobs[old] = raw[pos:pos + n]
        pos += n
    assert pos == len(raw)
    body = raw[obj_start:obj_end]
    for old, new in new_key.items():
        for prefix in (b"X" + struct.pack("<I", len(old)), b"\x8c" + bytes([len(old)])):
            body = body.replace(prefix + old.encode(), prefix + new.encode())
        assert new.encode() in body
    proto = raw[seg[4][0] + 1] if raw[seg[4][0]] == 0x80 else 2
    new_sorted = sorted(new_key.values())
    inverse = {v: k for k, v in new_key.items()}
    return (raw[:obj_start] + body + pickle.dumps(new_sorted, protocol=proto)
            + b"".join(blobs[inverse[k]] for k in new_sorted))


def write_legacy_views(name):
    """A legacy container whose persistent ids carry view_metadata, written by hand.

    Root storage "100" holds 12 float32 values 0..11 (times 0.25). Views: "101" = elements [2, 10),
    "102" = elements [6, 12). Tensors: "a" on the whole root, "b" = view 101 with offset 1, shape
    (2, 3), stride (1, 2); "c" = view 101 again (shares b's storage), offset 0, shape (4,);
    "d" = view 102, shape (2, 3), stride (3, 1). torch.load reads it; expected values come from
    that.
    """

    class FakeStorage:
        def __init__(self, key, view):
            self.key, self.view = key, view

    class FakeTensor:
        def __init__(self, st, offset, size, stride):
            self.args = (st, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, self.args)

    root = FakeStorage("100", None)
    v1, v2 = FakeStorage("100", ("101", 2, 8)), FakeStorage("100", ("102", 6, 6))
    obj = {
        "a": FakeTensor(root, 0, (12,), (1,)),
        "b": FakeTensor(v1, 1, (2, 3), (1, 2)),
        "c": FakeTensor(v1, 0, (4,), (1,)),
        "d": FakeTensor(v2, 0, (2, 3), (3, 1)),
    }

    def persistent_id(o):
        if isinstance(o, FakeStorage):
            return ("storage", torch.FloatStorage, o.key, "cpu", 12, o.view)
        return None

    buf = io.BytesIO()
    for v in (0x1950A86A20F9469CFC6C, 1001,
              dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))):
        pickle.dump(v, buf, protocol=2)
    p = pickle.Pickler(buf, protocol=2)
    p.persistent_id = persistent_id
    p.dump(obj)
    pickle.dump(["100"], buf, protocol=2)
    buf.write(struct.pack("<q", 12))
    buf.write((np.arange(12, dtype=np.float32) * 0.25).astype("<f4").tobytes())
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


# --- expected values -------------------------------------------------------------------------


class Encoder:
    """Encodes what torch.load returned; storage ids are numbered per file."""

    def __init__(self):
        self.storages = {}

    def enc(self, v):
        if v is None:
            return {"t": "none"}
        if isinstance(v, bool):
            return {"t": "bool", "v": v}
        if isinstance(v, int):
            return {"t": "int", "v": str(v)}
        if isinstance(v, float):
            return {"t": "float", "v": repr(v)}
        if isinstance(v, str):
            return {"t": "str", "v": v}
        if isinstance(v, bytes):
            return {"t": "bytes", "v": v.hex()}
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if isinstance(v, list):
            return {"t": "list", "v": [self.enc(x) for x in v]}
        if isinstance(v, tuple):
            return {"t": "tuple", "v": [self.enc(x) for x in v]}
        if isinstance(v, dict):
            cls = "dict" if type(v) is dict else type(v).__module__ + "." + type(v).__qualname__
            attrs = vars(v) if type(v) is not dict and vars(v) else None
            return {"t": "dict", "class": cls, "items": [[self.enc(k), self.enc(x)] for k, x in v.items()],
                    "attrs": self.enc(dict(sorted(attrs.items()))) if attrs else None}
        if isinstance(v, torch.dtype):
            return {"t": "global", "module": "torch", "name": str(v)[len("torch."):]}
        if isinstance(v, torch.device):
            return {"t": "object", "module": "torch", "name": "device",
                    "args": [self.enc(a) for a in v.__reduce__()[1]], "state": {"t": "none"}}
        if isinstance(v, set):
            return {"t": "object", "module": "builtins", "name": "set",
                    "args": [self.enc(sorted(v))], "state": {"t": "none"}}
        if dataclasses.is_dataclass(v):
            return {"t": "object", "module": type(v).__module__, "name": type(v).__qualname__,
                    "args": [], "state": self.enc(dict(vars(v)))}
        raise TypeError(f"cannot encode {type(v)}")

    def tensor(self, t):
        st = t.storage()
        sid = self.storages.setdefault((st.data_ptr(), st.nbytes()), len(self.storages))
        flat = t.detach().float().contiguous().reshape(-1)
        e = {"t": "tensor", "dtype": str(t.dtype)[len("torch."):], "shape": list(t.shape),
             "stride": list(t.stride()), "offset": t.storage_offset(), "requires_grad": t.requires_grad,
             "storage": sid, "f32": [int(b) for b in flat.numpy().view(np.uint32)]}
        if not t.dtype.is_floating_point:
            e["i64"] = [str(x) for x in t.detach().to(torch.int64).reshape(-1).tolist()]
        return e


def assert_same(a, b):
    assert json.dumps(Encoder().enc(a)) == json.dumps(Encoder().enc(b))


def go_quote(b):
    out = []
    for c in b:
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return '"' + "".join(out) + '"'


def write_seed(name, data):
    with open(os.path.join(FUZZ, name), "w") as f:
        f.write("go test fuzz v1\n[]byte(" + go_quote(data) + ")\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(FUZZ, exist_ok=True)
    files = {}

    def record(path, container, location="cpu"):
        name = os.path.basename(path)
        files[name] = {"container": container, "location": location,
                       "value": Encoder().enc(torch.load(path, map_location="cpu"))}

    record(save(dtypes_obj(), "zip_dtypes.pt"), "zip")
    record(save(dtypes_obj(), "legacy_dtypes.pt", legacy=True), "legacy")
    record(save(views_obj(), "zip_views.pt"), "zip")
    record(save(views_obj(), "legacy_views.pt", legacy=True), "legacy")
    record(save(transcoder_obj(), "transcoder.pt", cuda=True), "zip", "cuda:0")
    record(save(transcoder_obj(), "transcoder_legacy.pt", legacy=True, cuda=True), "legacy", "cuda:0")
    record(save(torch.from_numpy(np.linspace(-10, 0, 16, dtype=np.float32)), "sparsity.pt"), "zip")
    record(save(checkpoint_obj(), "checkpoint.pt"), "zip")
    record(save(misc_obj(), "misc_proto2.pt"), "zip")
    record(save(misc_obj(), "misc_proto4.pt", protocol=4), "zip")
    record(save(misc_obj(), "misc_legacy_proto4.pt", legacy=True, protocol=4), "legacy")
    record(write_legacy_views("legacy_storage_views.pt"), "legacy")
    save({"weights": torch.zeros(2), "x": Evil()}, "disallowed.pt")
    files["disallowed.pt"] = {"error": 'pickle names class "posix.system", which is not on the allow-list'}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"generator": "testdata/gen/gen_torchfile.py", "torch": torch.__version__,
                   "files": files}, f, indent=1, sort_keys=True)
        f.write("\n")

    for name in ("legacy_dtypes.pt", "legacy_storage_views.pt", "misc_legacy_proto4.pt",
                 "transcoder.pt", "misc_proto4.pt", "disallowed.pt"):
        with open(os.path.join(OUT, name), "rb") as fh:
            data = fh.read()
        stem = name[:-3]
        write_seed(stem, data)
        if name.startswith(("legacy", "misc_legacy")):
            for cut in (len(data) // 3, len(data) // 2, len(data) - 9):
                write_seed(f"{stem}_prefix{cut}", data[:cut])
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, name)):8d}  testdata/torchfile/{name}", file=sys.stderr)


if __name__ == "__main__":
    main()
