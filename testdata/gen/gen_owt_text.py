#!/usr/bin/python3
"""Writes the text fixtures of internal/owt:

* internal/owt/testdata/text_vectors.json — Python's str.isspace code points,
  bytes.decode("utf-8", errors="replace") on edge cases and seeded random byte
  strings, and the Skylion007/openwebtext document clean-up
  re.sub("\\n\\n\\n+", "\\n\\n", text).strip() on seeded random strings.
* internal/owt/testdata/urlsf_subset00.tar — a small archive in the layout of
  the original OpenWebText subsets (a tar of .xz members, each an xz tar of
  .txt documents) with the awkward members the loader must skip, and
  internal/owt/testdata/urlsf_subset00.json — the (key, text) examples the HF
  loading script yields from it, computed with a copy of the script's
  `_generate_examples` and of datasets 2.20's `_iter_tar`
  (src/datasets/utils/file_utils.py). The only change: the script decodes
  with .decode("utf-8") (strict) and would stop on the document with invalid
  UTF-8; here it decodes with errors="replace", which is what the Go reader
  does.
* internal/owt/testdata/docs.jsonl.bz2 — two JSON lines, bzip2-compressed
  (Go's standard library reads bzip2 but cannot write it).

Run from the repository root:

    /usr/bin/python3 testdata/gen/gen_owt_text.py

Standard library and numpy only (generated with Python 3.11.2, numpy
1.24.2). Output is deterministic: re-running leaves `git status` clean.
"""

import bz2
import io
import json
import lzma
import os
import re
import sys
import tarfile

import numpy as np

DIR = os.path.join("internal", "owt", "testdata")
VERSION = 1


def isspace_points():
    return [c for c in range(0x110000) if chr(c).isspace()]


def utf8_cases():
    fixed = [
        b"", b"plain ascii", "h\u00e9llo \u4e16\u754c \U0001F600".encode(), b"\xef\xbf\xbd",
        b"\x80", b"\xbf\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xc2A", b"\xe2\x82", b"\xe2\x82A",
        b"\xe2\x82\xac", b"\xe0\x80\xaf", b"\xe0\xa0", b"\xed\xa0\x80", b"\xed\x9f\xbf",
        b"\xf0\x9f\x98", b"\xf0\x9f\x98A", b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
        b"\xf5\x80", b"\xff\xfe", b"a\xf1\x80\x80\xe1\x80\xc2b\x80c\x80\xbfd",
        b"\xf1\x80\x80", b"\xe1\x80\xe2\xf0\x91\x92\xf1\xbfA", b"\x00\x7f\xc2\x80\xdf\xbf",
    ]
    rng = np.random.default_rng(20240)
    alphabet = [b"a", b" ", b"\n", b"\x80", b"\xbf", b"\xc2", b"\xdf", b"\xe0", b"\xe1", b"\xed",
                b"\xef", b"\xf0", b"\xf1", b"\xf4", b"\xf5", b"\xff", b"\xa0", b"\x90", b"\x8f",
                "\u00e9".encode(), "\u20ac".encode(), "\U0001F600".encode()]
    rand = []
    for _ in range(300):
        n = int(rng.integers(1, 12))
        rand.append(b"".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), size=n)))
    out = []
    for b in fixed + rand:
        s = b.decode("utf-8", errors="replace")
        out.append({"in": b.hex(), "out": s.encode("utf-8").hex()})
    return out


def clean(text):
    return re.sub("\n\n\n+", "\n\n", text).strip()


def normalize_cases():
    fixed = [b"", b"\n\n\n", b"  a\n\n\n\nb  ", b"a\n\nb", b"a\n\n\nb\n\n\n\n\nc", b"\x1c\x1dx\x1e\x1f",
             "\u3000x\u00a0".encode(), b"\r\n\r\n\r\nx", b"\n \n \n", b"\xffx\xe2\x82", b"\x85x",
             "\u0085x\u2028".encode(), "\u200bx\u200b".encode(), "\ufeffx".encode()]
    rng = np.random.default_rng(5151)
    alphabet = [b"a", b"b", b" ", b"\n", b"\n", b"\n", b"\t", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1f",
                "\u00a0".encode(), "\u3000".encode(), "\u2029".encode(), "\u0085".encode(),
                "\u200b".encode(), b"\xff", b"\xe2\x82"]
    rand = []
    for _ in range(300):
        n = int(rng.integers(0, 16))
        rand.append(b"".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), size=n)))
    return [{"in": b.hex(), "out": clean(b.decode("utf-8", errors="replace")).encode("utf-8").hex()}
            for b in fixed + rand]


# --- the archive ----------------------------------------------------------

MTIME = 1555000000


def add(tf, name, data=None, kind=tarfile.REGTYPE, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.uname = ti.gname = "owt"
    ti.linkname = linkname
    if data is not None:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def inner_tar(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for m in members:
            add(tf, *m)
    return buf.getvalue()


def xz(data):
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)


def build_archive():
    doc = lambda s: s.encode("utf-8")
    x1 = xz(inner_tar([
        ("0001-aaa", None, tarfile.DIRTYPE),
        ("0001-aaa/0000001-1a2b.txt", doc("First document.\n\n\n\nSecond paragraph.\n")),
        ("0001-aaa/0000002-3c4d.txt", doc("  \u3000Leading and trailing space\u00a0\x1c\n\n")),
        ("0001-aaa/.hidden.txt", doc("hidden: skipped by _iter_tar")),
        ("0001-aaa/__init__.txt", doc("dunder: skipped by _iter_tar")),
        ("0001-aaa/notes.md", doc("not a .txt: skipped by the script")),
        ("0001-aaa/link.txt", None, tarfile.SYMTYPE, "0000001-1a2b.txt"),
        ("0001-aaa/0000003-5e6f.txt", b""),
        ("0001-aaa/0000004-7a8b.txt", doc("\n\n\n\n")),
        ("0001-aaa/0000005-9c0d.txt", b"caf\xc3\xa9 \xe2\x82 bad \xff bytes\n\n\nend"),
    ]))
    x2 = xz(inner_tar([
        ("0002-bbb/z-last-in-name-first-in-tar.txt", doc("Tar order, not name order: I come first.")),
        ("0002-bbb/a-first-in-name.txt", doc("Then me.\r\n\r\n\r\nCRLF runs are not collapsed.")),
        ("0002-bbb/deeper/dir/0000009.txt", doc("Nested paths are fine.")),
    ], fmt=tarfile.GNU_FORMAT))
    plain_named_xz = inner_tar([("0003-ccc/only.txt", doc("An uncompressed tar named .xz: tarfile r|* reads it."))])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        add(tf, "openwebtext", None, tarfile.DIRTYPE)
        add(tf, "openwebtext/urlsf_subset00-1_data.xz", x1)
        add(tf, "openwebtext/README", doc("not an .xz member: skipped by the script"))
        add(tf, "openwebtext/._urlsf_subset00-2_data.xz", b"AppleDouble junk, hidden")
        add(tf, "openwebtext/urlsf_subset00-2_data.xz", x2)
        add(tf, "openwebtext/urlsf_subset00-3_data.xz", plain_named_xz)
        add(tf, "openwebtext/hardlink.xz", None, tarfile.LNKTYPE, "openwebtext/urlsf_subset00-1_data.xz")
    return buf.getvalue()


def _iter_tar(f):
    # datasets 2.20 src/datasets/utils/file_utils.py ArchiveIterable._iter_tar
    stream = tarfile.open(fileobj=f, mode="r|*")
    for tarinfo in stream:
        file_path = tarinfo.name
        if not tarinfo.isreg():
            continue
        if file_path is None:
            continue
        if os.path.basename(file_path).startswith((".", "__")):
            continue
        file_obj = stream.extractfile(tarinfo)
        yield file_path, file_obj
        stream.members = []
    del stream


def generate_examples(archive_iterators):
    # Skylion007/openwebtext openwebtext.py _generate_examples (decode made lenient, see above)
    for archive_iterator in archive_iterators:
        for xz_filepath, xz_f in archive_iterator:
            if not xz_filepath.endswith(".xz"):
                continue
            for txt_filepath, txt_f in _iter_tar(xz_f):
                if not txt_filepath.endswith(".txt"):
                    continue
                idx = f"{xz_filepath}/{txt_filepath}"
                yield idx, {"text": re.sub("\n\n\n+", "\n\n", txt_f.read().decode("utf-8", errors="replace")).strip()}


def main():
    os.makedirs(DIR, exist_ok=True)
    vec = {"fixture": "owt-text-vectors", "version": VERSION, "generator": "testdata/gen/gen_owt_text.py",
           "python": sys.version.split()[0], "isspace": isspace_points(), "utf8": utf8_cases(),
           "normalize": normalize_cases()}
    with open(os.path.join(DIR, "text_vectors.json"), "w") as f:
        json.dump(vec, f, indent=0, sort_keys=True)
        f.write("\n")

    archive = build_archive()
    with open(os.path.join(DIR, "urlsf_subset00.tar"), "wb") as f:
        f.write(archive)
    examples = [{"key": k, "text": ex["text"]} for k, ex in generate_examples([_iter_tar(io.BytesIO(archive))])]
    with open(os.path.join(DIR, "urlsf_subset00.json"), "w") as f:
        json.dump({"fixture": "owt-tar-examples", "version": VERSION, "generator": "testdata/gen/gen_owt_text.py",
                   "archive": "urlsf_subset00.tar", "examples": examples}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    # Go has no bzip2 writer: a small bzip2 JSON-lines file for the reader test.
    lines = "".join(json.dumps({"text": t}) + "\n" for t in ["bzip2 one", "bzip2 two"]).encode()
    with open(os.path.join(DIR, "docs.jsonl.bz2"), "wb") as f:
        f.write(bz2.compress(lines, 9))
    for name in ["text_vectors.json", "urlsf_subset00.tar", "urlsf_subset00.json", "docs.jsonl.bz2"]:
        print("wrote", os.path.join(DIR, name), os.path.getsize(os.path.join(DIR, name)), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
