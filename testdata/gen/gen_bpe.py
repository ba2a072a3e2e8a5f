#!/usr/bin/env python3
"""Generate the golden GPT-2 token ids for internal/bpe (testdata/bpe/golden.{txt,json}).

Run from the repository root with Debian's Python and its python3-regex package (no pip):

    apt-get install -y python3-regex
    /usr/bin/python3 testdata/gen/gen_bpe.py            # (re)writes testdata/bpe/golden.txt, golden.json
    /usr/bin/python3 testdata/gen/gen_bpe.py --tokenizer-dir DIR   # also writes vocab.json + merges.txt

The encoder is an independent implementation of GPT-2's byte-level BPE: the algorithm of OpenAI's
gpt-2 `src/encoder.py` (bytes_to_unicode, GPT-2's pre-tokenizer regex run by the `regex`
module, and the classic `bpe()` loop that merges the lowest-ranked *pair* from merges.txt), with the
special token "<|endoftext|>" split out first as Hugging Face's GPT2TokenizerFast does (
§3.3). The Go package uses tiktoken-go instead (ranks of merged byte strings, regexp2).

There is no vocab.json/merges.txt offline, so they are derived from tiktoken's r50k_base ranks, the
file tiktoken-go-loader v0.0.2 embeds (found in the Go module cache; `--ranks PATH` overrides): the
rank of a byte string is its GPT-2 id; each token of rank r >= 256 is split into its merge pair by
running rank-BPE on its bytes with only ranks < r (the method of transformers'
convert_slow_tokenizer.TikTokenConverter), which must give exactly two parts; the merge line index
is r - 256, so GPT-2's ids follow merge order. "<|endoftext|>" is id 50256.

Invalid UTF-8 in the input bytes is decoded with errors="replace" (one U+FFFD per maximal ill-formed
subsequence), as Python does when it reads bytes as text; bpe.ToValidUTF8 does the same.

Outputs (small, committed):
  testdata/bpe/golden.txt   the input text (bytes; several KB of English, Unicode, whitespace runs,
                            "<|endoftext|>" and invalid UTF-8), built from the literals below
  testdata/bpe/golden.json  ids of each paragraph (byte range of golden.txt) and of the whole file,
                            decode cases (ids -> text with U+FFFD), UTF-8 repair cases, known ids
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
EOT_ID = 50256


def default_ranks_path():
    try:
        modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                  cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        modcache = os.path.expanduser("~/go/pkg/mod")
    return os.path.join(modcache, "github.com/pkoukk/tiktoken-go-loader@v0.0.2/assets/r50k_base.tiktoken")


def load_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            if not line:
                continue
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def bytes_to_unicode():
    """OpenAI gpt-2 src/encoder.py."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(n) for n in cs]))


def rank_bpe(ranks, token, max_rank):
    """transformers convert_slow_tokenizer.bpe: merge the lowest-ranked adjacent byte strings."""
    parts = [bytes([b]) for b in token]
    while True:
        min_idx = None
        min_rank = None
        for i, pair in enumerate(zip(parts[:-1], parts[1:])):
            rank = ranks.get(pair[0] + pair[1])
            if rank is not None and (min_rank is None or rank < min_rank):
                min_idx = i
                min_rank = rank
        if min_rank is None or min_rank >= max_rank:
            break
        parts = parts[:min_idx] + [parts[min_idx] + parts[min_idx + 1]] + parts[min_idx + 2:]
    return parts


def derive_vocab_merges(ranks):
    be = bytes_to_unicode()

    def s(b):
        return "".join(be[x] for x in b)

    vocab = {}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[s(token)] = rank
        if len(token) == 1:
            assert rank < 256, (token, rank)
            continue
        parts = rank_bpe(ranks, token, rank)
        assert len(parts) == 2, (token, rank, parts)
        assert rank == 256 + len(merges), (token, rank)
        merges.append((s(parts[0]), s(parts[1])))
    vocab[EOT] = EOT_ID
    assert len(vocab) == 50257 and len(merges) == 50000
    return vocab, merges


def get_pairs(word):
    pairs = set()
    prev = word[0]
    for ch in word[1:]:
        pairs.add((prev, ch))
        prev = ch
    return pairs


class Encoder:
    """OpenAI gpt-2 src/encoder.py, plus the special-token split of GPT2TokenizerFast."""

    def __init__(self, vocab, merges):
        self.encoder = vocab
        self.decoder = {v: k for k, v in vocab.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {}
        self.pat = regex.compile(PAT)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode_ordinary(self, text):
        ids = []
        for token in regex.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def encode(self, text):
        ids = []
        for i, seg in enumerate(text.split(EOT)):
            if i > 0:
                ids.append(EOT_ID)
            ids.extend(self.encode_ordinary(seg))
        return ids

    def decode_bytes(self, ids):
        out = bytearray()
        for i in ids:
            if i == EOT_ID:
                out += EOT.encode()
            else:
                out += bytes(self.byte_decoder[c] for c in self.decoder[i])
        return bytes(out)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def new_encoder(ranks_path):
    ranks = load_ranks(ranks_path)
    assert len(ranks) == 50256, len(ranks)
    vocab, merges = derive_vocab_merges(ranks)
    return Encoder(vocab, merges), vocab, merges


# The golden text: paragraphs of bytes, joined by b"\n\n". Written for this test; ASCII English,
# Unicode of many scripts, whitespace runs, the special token and invalid UTF-8.
PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. It's a sentence that's been used for typing "
    "practice since the late 1800s, and we've all seen it; you'd think they'll retire it, but I'm "
    "sure it'll outlive us. Don't worry: it isn't going anywhere. SHE'S LOUD, HE'LL SHOUT, I'M "
    "HERE, they'RE here, 'tis the season, rock 'n' roll, the dogs' bowls, O'Neil's pub.",

    "Transcoders approximate a transformer's MLP sublayer with a wide, sparsely activating layer. "
    "Each feature reads from the residual stream before the MLP and writes to the MLP's output; "
    "because the encoder is linear up to a ReLU, one can ask which earlier tokens cause a feature "
    "to fire. This paragraph exists to give the tokenizer ordinary English prose: articles, "
    "prepositions, hyphenated-words, semi-colons; and the occasional (parenthetical) remark.",

    "Numbers: 0 1 12 123 1234 12345 123456789012345678901234567890, 3.14159, -2.5e-10, 1,000,000, "
    "$19.99, 50%, 2024-06-30T12:34:56Z, +1 (555) 123-4567, 0x1F, ½ ¾ ⅞, Ⅻ ⅻ, ٣٤٥ ६७८ ௧௨, "
    "10² H₂O, 1st 2nd 3rd 4th, v1.2.3, #42, A4 B52 C3PO R2D2.",

    "Accents: café, naïve, résumé, Zürich, Ångström, façade, Dvořák, Łódź, São Paulo, Kraków, "
    "crème brûlée, jalapeño, Øresund, Þórr, straße, ĳssel. Decomposed: e\u0301 n\u0303 a\u0308.",

    "Scripts: 日本語のテキストです。中文文本，标点符号！한국어 텍스트입니다. Ελληνικά γράμματα. "
    "Русский текст, ёжик. עברית עם ניקוד. العربية الفصحى. हिन्दी भाषा। ภาษาไทย. ქართული. "
    "Tiếng Việt có dấu. Ἀρχιμήδης.",

    "Emoji: 👍 👍🏽 🇫🇷🇩🇪 👨‍👩‍👧 ❤️ ☕ 😀😀😀 🤖🦀 🧪✨ (U+1F600) — and a dash – plus … ellipsis, "
    "“curly quotes” and ‘single’ ones, « guillemets », ¡Hola! ¿Qué?",

    "Whitespace:  two   three    four\tone-tab\t\ttwo-tabs \t mixed\n"
    "line one\nline two\n\n\n\nafter four newlines\r\nCRLF\r\n  indented\n\t\ttabbed\n"
    " \n \n trailing   \n"
    "nbsp\u00a0here, ideographic\u3000space, thin\u2009space, line\u2028sep, para\u2029sep, nel\u0085x, "
    "vt\u000bff\u000cend",

    "Special: end of one document.<|endoftext|>Start of the next. Spaces around <|endoftext|> it, "
    "twice<|endoftext|><|endoftext|>, partial <|endoftext| and <|endoftext |> and <|ENDOFTEXT|>, "
    "glued<|endoftext|>glued, and one at the very end <|endoftext|>",

    "Punctuation: !!! ??? ... --- ___ *** ### @@@ 'quoted' \"double\" (parens) [brackets] "
    "{braces} <angle> @#$%^&*_+=~`|\\/ ;:,. a.b,c;d:e!f?g 'em' ''' \"\"\"",

    "Code:\ndef f(x, y=2):\n    \"\"\"Square and add.\"\"\"\n    return x**2 + y  # comment\n\n"
    "for (int i = 0; i < n; i++) { a[i] += b[i] * 3.5f; }\n"
    "    if err != nil {\n        return fmt.Errorf(\"load %s: %w\", path, err)\n    }\n",
]

# Invalid UTF-8 (Python decodes each maximal ill-formed subsequence to one U+FFFD).
INVALID = (
    b"Invalid UTF-8: lone \xff\xfe bytes, truncated \xe2\x82 euro, truncated-then-letter \xe2\x82A, "
    b"truncated emoji \xf0\x9f\x98 x, surrogate \xed\xa0\x80 half, overlong \xc0\xaf slash, "
    b"too big \xf4\x90\x80\x80 end, lone continuation \x80\x80 y, valid \xe2\x82\xac euro, "
    b"space\xff word, and a final truncated \xe2"
)

# Byte strings whose Python errors="replace" decoding Go's ToValidUTF8 must reproduce.
UTF8_CASES = [
    b"", b"plain", b"\xff", b"\xe2\x82", b"\xe2\x82A", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80",
    b"\xed\xa0\x80", b"\xed\x9f\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2\x80", b"\xe0\x80\x80",
    b"\xe0\xa0\x80", b"\xf0\x80\x80\x80", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80",
    b"\xf5\x80", b"\xf8\x88\x80\x80\x80", b"\x80\xbf", b"a\xe2\x82\xe2\x82\xacb", b"\xe2\xe2\x82\xac",
    b"\xf0\x9f\xe2\x82\xac", b"\xef\xbf\xbd", b"\xee\x80\x80",
]

KNOWN = [  # ids TransformerLens's tokenizer gives
    ("Hello", [15496]), (",", [11]), (" world", [995]), ("!", [0]), ("Hello world!", [15496, 995, 0]),
]


def dump_compact(obj):
    """JSON with one top-level key, and one list element, per line (small diffs, no id per line)."""
    lines = []
    for i, (k, v) in enumerate(obj.items()):
        end = "," if i < len(obj) - 1 else ""
        if isinstance(v, list):
            lines.append(f" {json.dumps(k)}: [")
            for j, e in enumerate(v):
                lines.append("  " + json.dumps(e, separators=(",", ":")) + ("," if j < len(v) - 1 else ""))
            lines.append(" ]" + end)
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}{end}")
    return "{\n" + "\n".join(lines) + "\n}\n"


def build_text():
    paras = [p.encode("utf-8") for p in PARAGRAPHS] + [INVALID]
    return paras, b"\n\n".join(paras)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", default=default_ranks_path(), help="r50k_base.tiktoken")
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata", "bpe"))
    ap.add_argument("--tokenizer-dir", help="also write the derived vocab.json and merges.txt here")
    args = ap.parse_args()

    enc, vocab, merges = new_encoder(args.ranks)
    if args.tokenizer_dir:
        os.makedirs(args.tokenizer_dir, exist_ok=True)
        with open(os.path.join(args.tokenizer_dir, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(os.path.join(args.tokenizer_dir, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in merges:
                f.write(f"{a} {b}\n")

    for text, want in KNOWN:
        got = enc.encode(text)
        assert got == want, (text, got, want)

    paras, data = build_text()
    cases = []
    off = 0
    for i, p in enumerate(paras):
        text = p.decode("utf-8", errors="replace")
        ids = enc.encode(text)
        assert enc.decode(ids) == text
        cases.append({"name": f"para{i:02d}", "offset": off, "length": len(p), "ids": ids})
        off += len(p) + 2
    full_text = data.decode("utf-8", errors="replace")
    full = enc.encode(full_text)
    assert enc.decode(full) == full_text
    cases.append({"name": "full", "offset": 0, "length": len(data), "ids": full})

    # Decode cases: partial multi-byte tokens are rendered with U+FFFD.
    b2id = {bytes(enc.byte_decoder[c] for c in k): v for k, v in vocab.items() if k != EOT}
    decode_cases = []
    for name, ids in [
        ("hello", enc.encode("Hello world!")),
        ("eot", [EOT_ID, 15496, EOT_ID]),
        ("euro_first_two_bytes", [b2id[b"\xe2"], b2id[b"\x82"]]),
        ("euro_first_two_bytes_then_A", [b2id[b"\xe2"], b2id[b"\x82"], b2id[b"A"]]),
        ("emoji_split", [b2id[b"\xf0\x9f"], b2id[b"\x98"], b2id[b" x"]] if b"\xf0\x9f" in b2id else [b2id[b"\xf0"], b2id[b"\x9f"]]),
        ("lone_continuation", [b2id[b"\x80"], b2id[b"\x80"]]),
        ("emoji_whole", enc.encode("👍🏽 ok")),
        ("emoji_prefix", enc.encode("👍🏽 ok")[:1]),
    ]:
        decode_cases.append({"name": name, "ids": ids, "text": enc.decode(ids)})

    utf8_cases = [{"hex": b.hex(), "text": b.decode("utf-8", errors="replace")} for b in UTF8_CASES]

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "golden.txt"), "wb") as f:
        f.write(data)
    golden = {
        "about": "GPT-2 ids of golden.txt from testdata/gen/gen_bpe.py: an independent Python implementation "
                 "of gpt-2 src/encoder.py (regex module, pair-rank BPE from merges derived from tiktoken's "
                 "r50k_base), '<|endoftext|>' split out as id 50256, invalid UTF-8 decoded with errors='replace'",
        "generator": "testdata/gen/gen_bpe.py",
        "python": sys.version.split()[0],
        "regex_module": regex.__version__,
        "ranks_sha256": hashlib.sha256(open(args.ranks, "rb").read()).hexdigest(),
        "input": "golden.txt",
        "input_sha256": hashlib.sha256(data).hexdigest(),
        "known": [{"text": t, "ids": ids} for t, ids in KNOWN],
        "cases": cases,
        "decode": decode_cases,
        "utf8": utf8_cases,
    }
    with open(os.path.join(args.out, "golden.json"), "w", encoding="utf-8") as f:
        f.write(dump_compact(golden))
    print(f"golden.txt: {len(data)} bytes; full: {len(full)} tokens; {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
