#!/usr/bin/python3
"""Writes internal/owt/testdata/rng_vectors.json: numpy RNG and Hugging Face
streaming-shuffle vectors for the Go tests of internal/owt.

Run from the repository root:

    /usr/bin/python3 testdata/gen/gen_owt_rng.py

Needs numpy only (generated with numpy 1.24.2, Python 3.11.2, Debian 12). The
output is deterministic: re-running must leave `git status` clean.

`datasets` is not installed here, so the two pieces of huggingface/datasets
2.20.0 the shuffle consists of are copied below verbatim in substance:
`_shuffle_gen_kwargs` (src/datasets/utils/sharding.py) and
`BufferShuffledExamplesIterable._iter_random_indices` / `__iter__`
(src/datasets/iterable_dataset.py). Every consumer takes copy.deepcopy of the
fresh generator, as `ShuffledDataSourcesExamplesIterable.__iter__` and
`BufferShuffledExamplesIterable.__iter__` do.

Long output sequences are stored as a SHA-256 of their little-endian int64
encoding plus the first and last 64 values; short ones in full.
"""

import copy
import hashlib
import json
import os
import sys

import numpy as np

OUT = os.path.join("internal", "owt", "testdata", "rng_vectors.json")
VERSION = 1


def hex64(v):
    return "0x%016x" % int(v)


def seed_vectors():
    out = []
    for seed in [0, 1, 42, 2357, 2**32 - 1, 2**32, 2**63 + 12345, 2**64 - 1]:
        ss = np.random.SeedSequence(seed)
        words = ss.generate_state(4, np.uint64)
        bg = np.random.PCG64(seed)
        st = bg.state["state"]
        raw = bg.random_raw(8)
        g = np.random.default_rng(seed)
        # dtype uint64 with high = 2**32 takes numpy's rng == 0xFFFFFFFF
        # branch: plain next_uint32 draws.
        n32 = g.integers(0, 2**32, size=9, dtype=np.uint64)
        out.append({
            "seed": str(seed),
            "generate_state": [hex64(w) for w in words],
            "state": str(st["state"]),
            "inc": str(st["inc"]),
            "next64": [hex64(v) for v in raw],
            "next32": [int(v) for v in n32],
        })
    return out


def integer_vectors():
    out = []
    ns = [1, 2, 3, 7, 10, 1000, 10000, 2**31, 2**32 - 1, 2**32, 2**32 + 1,
          10**12, 2**40 + 3, 2**63 - 1, 2**63, 2**64 - 1, 2**64]
    for seed in [42, 7]:
        for n in ns:
            g = np.random.default_rng(seed)
            dtype = np.int64 if n <= 2**63 - 1 else np.uint64
            # Two calls of 5: the saved 32-bit half carries across calls.
            v = list(g.integers(0, n, size=5, dtype=dtype)) + list(g.integers(0, n, size=5, dtype=dtype))
            # A raw draw after, to pin how many words were consumed.
            after = g.bit_generator.random_raw()
            out.append({"seed": seed, "n": str(n), "values": [str(int(x)) for x in v],
                        "next64_after": hex64(after)})
    # The reference stream: seed 42, blocks of 1000 from integers(0, 10000).
    g = np.random.default_rng(42)
    blocks = np.concatenate([g.integers(0, 10000, size=1000) for _ in range(3)])
    out_stream = {"seed": 42, "n": 10000, "first": [int(x) for x in blocks[:20]],
                  "at1000": [int(x) for x in blocks[1000:1005]],
                  "sha256": digest(blocks), "count": len(blocks)}
    return out, out_stream


def shuffle_vectors():
    out = []
    for seed in [0, 1, 42, 2357]:
        for n in [0, 1, 2, 3, 5, 21, 80, 93, 1000]:
            perm = list(range(n))
            g = np.random.default_rng(seed)
            g.shuffle(perm)
            after = g.bit_generator.random_raw()
            out.append({"seed": seed, "n": n, "perm": perm if n <= 100 else None,
                        "sha256": digest(perm), "next64_after": hex64(after)})
    return out


# --- huggingface/datasets 2.20.0 -------------------------------------------

def _shuffle_gen_kwargs(rng, gen_kwargs):
    list_sizes = {len(value) for value in gen_kwargs.values() if isinstance(value, list)}
    indices_per_size = {}
    for size in list_sizes:
        indices_per_size[size] = list(range(size))
        rng.shuffle(indices_per_size[size])
    shuffled_kwargs = dict(gen_kwargs)
    for key, value in shuffled_kwargs.items():
        if isinstance(value, list):
            shuffled_kwargs[key] = [value[i] for i in indices_per_size[len(value)]]
    return shuffled_kwargs


def _iter_random_indices(rng, buffer_size, random_batch_size=1000):
    while True:
        yield from (int(i) for i in rng.integers(0, buffer_size, size=random_batch_size))


def buffer_shuffle(generator, buffer_size, ex_iterable):
    rng = copy.deepcopy(generator)
    indices_iterator = _iter_random_indices(rng, buffer_size)
    mem_buffer = []
    for x in ex_iterable:
        if len(mem_buffer) == buffer_size:
            i = next(indices_iterator)
            yield mem_buffer[i]
            mem_buffer[i] = x
        else:
            mem_buffer.append(x)
    rng.shuffle(mem_buffer)
    yield from mem_buffer


def hf_stream(seed, buffer_size, shard_sizes):
    """Documents are integers: shard k's j-th document is k*1_000_000 + j."""
    generator = np.random.default_rng(seed)
    shards = [list(range(k * 1_000_000, k * 1_000_000 + n)) for k, n in enumerate(shard_sizes)]
    kwargs = _shuffle_gen_kwargs(copy.deepcopy(generator), {"shards": shards})

    def source():
        for shard in kwargs["shards"]:
            yield from shard

    return list(buffer_shuffle(generator, buffer_size, source()))


def digest(seq):
    h = hashlib.sha256()
    for v in seq:
        h.update(int(v).to_bytes(8, "little", signed=True))
    return h.hexdigest()


def stream_vectors():
    cases = [
        # name, seed, buffer, shard sizes
        ("spec 25000 docs buffer 10000", 42, 10000, [25000]),
        ("shorter than buffer", 42, 10, [5]),
        ("exactly buffer", 42, 10, [10]),
        ("buffer 1", 42, 1, [7, 3, 5]),
        ("one block consumed", 42, 10, [1010]),
        ("one block and one", 42, 10, [1011]),
        ("two blocks consumed", 3, 10, [2010]),
        ("odd buffer small", 0, 7, [50]),
        ("odd buffer small seed 1", 1, 7, [50]),
        ("21 shards buffer 1000", 42, 1000, [300 + 17 * k for k in range(21)]),
        ("80 shards buffer 10000", 2357, 10000, [150 + (k * 37) % 101 for k in range(80)]),
        ("empty shards", 5, 4, [0, 3, 0, 0, 6, 0]),
    ]
    out = []
    for name, seed, buf, sizes in cases:
        seq = hf_stream(seed, buf, sizes)
        out.append({"name": name, "seed": seed, "buffer": buf, "shard_sizes": sizes,
                    "count": len(seq), "sha256": digest(seq),
                    "head": seq[:64], "tail": seq[-64:],
                    "full": seq if len(seq) <= 200 else None})
    return out


def main():
    ints, stream = integer_vectors()
    doc = {
        "fixture": "owt-rng-vectors",
        "version": VERSION,
        "generator": "testdata/gen/gen_owt_rng.py",
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "seeds": seed_vectors(),
        "integers": ints,
        "integers_stream": stream,
        "shuffle": shuffle_vectors(),
        "hf_stream": stream_vectors(),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
