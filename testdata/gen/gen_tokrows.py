#!/usr/bin/env python3
"""Generate the golden token rows for internal/tokrows (testdata/tokrows/).

Run from the repository root with Debian's Python, python3-regex and python3-numpy (no pip):

    apt-get install -y python3-regex python3-numpy
    /usr/bin/python3 testdata/gen/gen_tokrows.py

It implements the `tokenize_and_concatenate` copy in michaelttpearce/
transcoder-exploration utils.py (TransformerLens <= 2.x), line for line in numpy:
datasets' `map(batched=True)` with its default batch of 1000 documents (the last batch smaller),
`full_text = eos.join(texts)`, 20 chunks of `(len(full_text) - 1) // 20 + 1` code points, each
chunk tokenized on its own and right-padded with the pad id 50256 (`padding=True`), flattened,
every 50256 removed, cut to a multiple of seq_len = max_length - 1, reshaped, and a column of BOS
50256 prepended. The tokenizer is the independent GPT-2 BPE of gen_bpe.py (same directory).

The corpus is synthetic and deterministic: corpus(n) below builds n short documents from a word
list with a 64-bit LCG (internal/tokrows/main_test.go implements the same recipe, and checks its
documents against docs_sha256), with empty documents, whitespace-only documents, a literal
"<|endoftext|>" inside some documents and a few long ones. 2500 documents make three batches
(1000, 1000, 500), so batch boundaries (and the per-batch remainders they discard) are exercised.

Outputs (small, committed):
  testdata/tokrows/corpus128.npy   rows for the 2500-document corpus, max_length 128 ('<u2')
  testdata/tokrows/corpus16.npy    rows for its first 1200 documents, max_length 16 ('<u2')
  testdata/tokrows/golden.json     what the .npy files hold, per-run statistics, and small edge
                                   cases with their documents and rows inline
"""

import hashlib
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import gen_bpe  # noqa: E402

EOT = "<|endoftext|>"
PAD = BOS = 50256
BATCH_DOCS = 1000  # datasets Dataset.map(batched=True) default batch_size
NUM_CHUNKS = 20    # utils.py tokenize_function

WORDS = [
    "the", "model", "reads", "a", "token", "and", "writes", "its", "feature", "to", "residual",
    "stream", "café", "naïve", "über", "東京", "数据", "мир", "λόγος", "👍", "don't", "it's",
    "we'll", "42", "3.14", "1999", "(see", "note)", "—", "x", "attention", "layer",
]
MASK = 2**64 - 1


def lcg(x):
    return (x * 6364136223846793005 + 1442695040888963407) & MASK


def corpus(n):
    docs = []
    for i in range(n):
        x = lcg(i + 1)

        def draw(m):
            nonlocal x
            x = lcg(x)
            return (x >> 33) % m

        if i % 97 == 0:
            docs.append("")
            continue
        if i % 131 == 5:
            docs.append(" \n\t  ")
            continue
        n_words = 1 + draw(5)
        if i % 149 == 3:
            n_words = 60 + draw(40)
        doc = " ".join(WORDS[draw(len(WORDS))] for _ in range(n_words))
        if i % 211 == 7:
            doc = doc + EOT + WORDS[draw(len(WORDS))]
        doc += [".", "!", "?", ".\n", "\n\n", ""][draw(6)]
        docs.append(doc)
    return docs


def docs_sha256(docs):
    h = hashlib.sha256()
    for d in docs:
        b = d.encode("utf-8")
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()


def tokenize_function(texts, enc, seq_len, stats):
    """utils.py tokenize_function, with the HF tokenizer call spelled out."""
    full_text = EOT.join(texts)
    num_chunks = NUM_CHUNKS
    chunk_length = (len(full_text) - 1) // num_chunks + 1
    chunks = [full_text[i * chunk_length:(i + 1) * chunk_length] for i in range(num_chunks)]
    # tokenizer(chunks, return_tensors="np", padding=True)["input_ids"]: right padding with pad id
    encoded = [enc.encode(c) for c in chunks]
    width = max(len(e) for e in encoded)
    input_ids = np.full((num_chunks, width), PAD, dtype=np.int64)
    for i, e in enumerate(encoded):
        input_ids[i, :len(e)] = e
    tokens = input_ids.flatten()
    stats["eot_removed"] += int(sum(e.count(PAD) for e in encoded))
    tokens = tokens[tokens != PAD]
    num_tokens = len(tokens)
    num_batches = num_tokens // seq_len
    tokens = tokens[:seq_len * num_batches]
    tokens = tokens.reshape(num_batches, seq_len)  # einops "(batch seq) -> batch seq"
    prefix = np.full((num_batches, 1), BOS)
    tokens = np.concatenate([prefix, tokens], axis=1)
    stats["documents"] += len(texts)
    stats["batches"] += 1
    stats["tokens"] += num_tokens
    stats["discarded"] += num_tokens - seq_len * num_batches
    stats["rows"] += num_batches
    # How many separators the chunk boundaries cut (their pieces survive as text tokens).
    for k in range(1, num_chunks):
        b = k * chunk_length
        for j in range(max(0, b - len(EOT) + 1), b):
            if full_text.startswith(EOT, j):
                stats["cut_separators"] += 1
    return tokens


def tokenize_and_concatenate(docs, enc, max_length):
    seq_len = max_length - 1
    stats = dict(documents=0, batches=0, tokens=0, discarded=0, rows=0, eot_removed=0, cut_separators=0)
    rows = [tokenize_function(docs[i:i + BATCH_DOCS], enc, seq_len, stats) for i in range(0, len(docs), BATCH_DOCS)]
    rows = np.concatenate(rows, axis=0) if rows else np.zeros((0, max_length), dtype=np.int64)
    return rows, stats


def main():
    enc, _, _ = gen_bpe.new_encoder(gen_bpe.default_ranks_path())
    out = os.path.join(ROOT, "testdata", "tokrows")
    os.makedirs(out, exist_ok=True)

    docs = corpus(2500)
    runs = []
    for name, n_docs, max_length in [("corpus128", 2500, 128), ("corpus16", 1200, 16)]:
        rows, stats = tokenize_and_concatenate(docs[:n_docs], enc, max_length)
        assert rows.shape == (stats["rows"], max_length) and rows.max() < 2**16
        np.save(os.path.join(out, name + ".npy"), rows.astype("<u2"))
        runs.append({"name": name, "file": name + ".npy", "documents": n_docs, "max_length": max_length,
                     "stats": stats})
        print(f"{name}: {rows.shape}, {stats}", file=sys.stderr)

    edge_docs = [
        ("no documents", [], 128),
        ("one empty document", [""], 128),
        ("1001 empty documents", [""] * 1001, 4),
        ("whitespace only", ["  ", "\t", "\n \n"], 2),
        ("separators cut", ["a"] * 30, 4),
        ("code points not bytes", ["👍🏽日本語é" * 7, "ça", "x" * 3], 4),
        ("one long document", [" ".join(WORDS) * 3], 8),
        ("literal separators", [EOT, "a" + EOT + "b", EOT + EOT], 3),
    ]
    edges = []
    for name, ds, max_length in edge_docs:
        rows, stats = tokenize_and_concatenate(ds, enc, max_length)
        edges.append({"name": name, "docs": ds, "max_length": max_length, "rows": rows.tolist(), "stats": stats})

    golden = {
        "about": "tokenize_and_concatenate (michaelttpearce/transcoder-exploration utils.py) "
                 "in numpy with gen_bpe.py's independent GPT-2 BPE; written by testdata/gen/gen_tokrows.py",
        "generator": "testdata/gen/gen_tokrows.py",
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "corpus_docs": len(docs),
        "docs_sha256": docs_sha256(docs),
        "runs": runs,
        "edges": edges,
    }
    with open(os.path.join(out, "golden.json"), "w", encoding="utf-8") as f:
        f.write(gen_bpe.dump_compact(golden))


if __name__ == "__main__":
    main()
