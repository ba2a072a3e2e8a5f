#!/usr/bin/env python3
"""Golden connections between two layers' transcoders for `ctxdep connections`
(internal/analysis/connections.go).

Run from the repository root (numpy only: Debian's python3-numpy):

    CTXDEP_WRITE_CONNECTIONS_INPUTS=1 go test ./cmd/ctxdep -run TestConnectionsGolden   # once: the inputs
    /usr/bin/python3 testdata/gen/connections_golden.py

Input: testdata/golden/connections/inputs.safetensors, exported by that Go test from the layer set
of layers 1 and 2 of the tiny fixtures (tiny-gpt2, tiny-transcoders, tokens/tiny-int64.npy: 96
tokens; C = 16, 64 features per layer):
  acts_src [96, 64]  layer 1's transcoder acts (dense, float32)
  acts_tgt [96, 64]  layer 2's
  scale    [96]      blocks.2.ln2.hook_scale
  W_dec    [64, 16]  layer 1's decoder
  W_enc    [16, 64]  layer 2's encoder
metadata top_k (5).

Everything below runs in float64 on those float32 values, by the definitions, with no blocking:
  V[i, j]    = (W_dec[i] - mean(W_dec[i])) . W_enc[:, j]
  A[t, i, j] = acts_src[t, i] * V[i, j] / scale[t]
  Abar[i, j] = mean of A[t, i, j] over the t with acts_tgt[t, j] > 0; count[j] = their number
  top_v[j]    the k sources of largest |V[:, j]|, larger first, ties to the lower index
  top_abar[j] the k sources of largest |Abar[:, j]| among those with Abar != 0, same order;
              unused slots index -1 and NaN values; none for a target that never fires
  spearman[j] Spearman correlation of V[:, j] and Abar[:, j] over the union of both lists'
              sources: Pearson correlation of average ranks (ties share their mean rank);
              NaN when the union has < 2 sources or a view's ranks are constant
  share_topk_v[j] = sum over top_v[j] of |Abar| / sum over all sources of |Abar|; NaN if 0
  abs_abar_sum[j] = sum over all sources of |Abar|
NaN for the statistics and Abar of a target that never fires.

Writes testdata/golden/connections/expected.safetensors with the tensors of
connections.safetensors: count I64 [64]; spearman, share_topk_v, abs_abar_sum F32 [64];
top_v.index I32 [64, k], top_v.v, top_v.abar F32 [64, k]; the same for top_abar.

A float32 implementation must pick the same sources: the script asserts that within each list,
and between the last source listed and the best one left out, magnitudes differ by more than
1e-5 relative (a float32 GEMM of 16 terms rounds V by ~1e-7), and that the values whose ranks
the correlation uses differ by as much unless they are equal (the exact zeros of Abar). It prints
the smallest such gap.
"""
import json, os, struct, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
G = os.path.join(ROOT, "golden", "connections")

DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DT[t["dtype"]]).reshape(t["shape"])
    return out, meta


def write_safetensors(path, tensors, meta):
    header, off, blobs = {}, 0, []
    for name, (dt, arr) in tensors:
        b = np.ascontiguousarray(arr, dtype=DT[dt]).astype("<" + np.dtype(DT[dt]).str[1:]).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def average_ranks(x):
    x = np.asarray(x)
    r = np.empty(len(x))
    for i in range(len(x)):
        r[i] = np.sum(x < x[i]) + (np.sum(x == x[i]) + 1) / 2
    return r


def spearman(x, y):
    if len(x) < 2:
        return np.nan
    rx, ry = average_ranks(x), average_ranks(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    sxx, syy = np.sum(dx * dx), np.sum(dy * dy)
    if sxx == 0 or syy == 0:
        return np.nan
    return np.sum(dx * dy) / np.sqrt(sxx * syy)


def top(mag, k, nonzero):
    # Stable sort on -|x|: equal magnitudes keep ascending index order.
    idx = np.array([i for i in range(len(mag)) if not nonzero or mag[i] != 0], dtype=np.int64)
    order = idx[np.argsort(-mag[idx], kind="stable")]
    return order[:k]


def main():
    I, meta = read_safetensors(os.path.join(G, "inputs.safetensors"))
    k = int(meta["top_k"])
    acts_s = I["acts_src"].astype(np.float64)
    acts_t = I["acts_tgt"].astype(np.float64)
    scale = I["scale"].astype(np.float64)
    W_dec = I["W_dec"].astype(np.float64)
    W_enc = I["W_enc"].astype(np.float64)
    T, Fs = acts_s.shape
    Ft = acts_t.shape[1]
    assert np.all(scale > 0)

    Wc = W_dec - W_dec.mean(axis=1, keepdims=True)
    V = Wc @ W_enc  # [Fs, Ft]
    A = acts_s[:, :, None] * V[None, :, :] / scale[:, None, None]  # [T, Fs, Ft]
    fires = acts_t > 0  # [T, Ft]
    count = fires.sum(axis=0).astype(np.int64)

    nan = np.nan
    out = {n: np.full((Ft, k), nan) for n in ("top_v.v", "top_v.abar", "top_abar.v", "top_abar.abar")}
    out["top_v.index"] = np.full((Ft, k), -1, dtype=np.int64)
    out["top_abar.index"] = np.full((Ft, k), -1, dtype=np.int64)
    sp, share, abs_sum = np.full(Ft, nan), np.full(Ft, nan), np.full(Ft, nan)
    min_gap = np.inf

    def check_gaps(mag, listed, nonzero):
        nonlocal min_gap
        m = [mag[i] for i in listed]
        rest = [mag[i] for i in range(len(mag)) if i not in set(listed) and (not nonzero or mag[i] != 0)]
        if rest:
            m.append(max(rest))
        for a, b in zip(m, m[1:]):
            gap = (a - b) / max(a, 1e-30)
            min_gap = min(min_gap, gap)
            assert gap > 1e-5, (a, b)

    for j in range(Ft):
        v = V[:, j]
        tv = top(np.abs(v), k, False)
        check_gaps(np.abs(v), list(tv), False)
        out["top_v.index"][j, :len(tv)] = tv
        out["top_v.v"][j, :len(tv)] = v[tv]
        if count[j] == 0:
            continue
        ab = A[fires[:, j], :, j].mean(axis=0)  # [Fs]
        ta = top(np.abs(ab), k, True)
        check_gaps(np.abs(ab), list(ta), True)
        out["top_v.abar"][j, :len(tv)] = ab[tv]
        out["top_abar.index"][j, :len(ta)] = ta
        out["top_abar.v"][j, :len(ta)] = v[ta]
        out["top_abar.abar"][j, :len(ta)] = ab[ta]
        tot = np.abs(ab).sum()
        abs_sum[j] = tot
        if tot > 0:
            share[j] = np.abs(ab[tv]).sum() / tot
        u = sorted(set(tv.tolist()) | set(ta.tolist()))
        for vals in (v[u], ab[u]):
            for a in range(len(u)):
                for b in range(a + 1, len(u)):
                    if vals[a] != vals[b]:
                        gap = abs(vals[a] - vals[b]) / max(abs(vals[a]), abs(vals[b]))
                        min_gap = min(min_gap, gap)
                        assert gap > 1e-5, (j, vals[a], vals[b])
        sp[j] = spearman(v[u], ab[u])

    tensors = [
        ("count", ("I64", count)),
        ("spearman", ("F32", sp)),
        ("share_topk_v", ("F32", share)),
        ("abs_abar_sum", ("F32", abs_sum)),
        ("top_v.index", ("I32", out["top_v.index"])),
        ("top_v.v", ("F32", out["top_v.v"])),
        ("top_v.abar", ("F32", out["top_v.abar"])),
        ("top_abar.index", ("I32", out["top_abar.index"])),
        ("top_abar.v", ("F32", out["top_abar.v"])),
        ("top_abar.abar", ("F32", out["top_abar.abar"])),
    ]
    path = os.path.join(G, "expected.safetensors")
    write_safetensors(path, tensors, {"top_k": str(k), "made_by": "testdata/gen/connections_golden.py (numpy %s)" % np.__version__})
    firing = int((count > 0).sum())
    print("wrote %s: %d tokens, %d sources, %d targets (%d fire), k %d; smallest relative gap %.3g; "
          "spearman median %.3f, share median %.3f" % (path, T, Fs, Ft, firing, k, min_gap,
                                                          np.nanmedian(sp), np.nanmedian(share)), file=sys.stderr)


if __name__ == "__main__":
    main()
