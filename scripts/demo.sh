#!/usr/bin/env bash
# The README's demo: the main job end to end on the tiny SYNTHETIC bundle in
# testdata/ (a 3-layer, d_model 16 GPT-2 with random weights and GPT-2's real
# vocabulary size, 64-feature transcoders, 6 rows of 16 tokens). The numbers
# it prints say nothing about GPT-2 small; they show the pipeline working.
set -euo pipefail
bin=${1:-bin/ctxdep}
out=${DEMO_OUT:-$(mktemp -d)}
# The bundle's paths are relative to the repository root: started from
# elsewhere, the script moves there, keeping the binary and DEMO_OUT given.
root=$(realpath -- "$(dirname -- "${BASH_SOURCE[0]}")/..")
if [[ $(pwd -P) != "$root" ]]; then
  # A binary given as a path is the caller's; the default is the root's.
  if [[ -n ${1:-} && $bin == */* ]]; then bin=$(realpath -- "$bin"); fi
  mkdir -p -- "$out" && out=$(realpath -- "$out")
  cd -- "$root"
fi
echo "== synthetic demo bundle (testdata/), output in $out" >&2
# The demo's outputs are its own: a rerun into the same DEMO_OUT starts
# afresh (fit, like every command, never overwrites a finished result).
# Only the names below are removed; anything else in DEMO_OUT stays.
for name in cache fit pinv.safetensors report set fit-set pinv-set connections report-set; do
  rm -rf -- "${out:?}/$name"
done
set -x
"$bin" version
"$bin" cache build --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders --layer 1 \
  --tokens testdata/tokens/tiny-int64.npy --batch-size 4 --sequences-per-shard 4 --with-acts --out "$out/cache"
"$bin" inspect-cache "$out/cache" --transcoders testdata/tiny-transcoders
"$bin" fit --cache "$out/cache" --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders --layer 1 \
  --batch-size 2 --steps-per-epoch 3 --train-tokens 200 --out "$out/fit"
head -n 5 "$out/fit/history.csv"
"$bin" pinv-baseline --cache "$out/cache" --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders \
  --out "$out/pinv.safetensors"
"$bin" evaluate --cache "$out/cache" --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders \
  --midcoder "$out/fit/midcoder.safetensors" --midcoder "$out/pinv.safetensors"
"$bin" report --cache "$out/cache" --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders \
  --midcoder "$out/fit/midcoder.safetensors" --pinv "$out/pinv.safetensors" --out "$out/report"
# All layers in one pass: a layer set. Later commands find the model and
# transcoders the cache recorded, so they need no --model or --transcoders.
"$bin" cache build --model testdata/tiny-gpt2 --transcoders testdata/tiny-transcoders --layers all \
  --tokens testdata/tokens/tiny-int64.npy --batch-size 4 --sequences-per-shard 4 --with-acts --out "$out/set"
"$bin" fit --cache "$out/set" --layers all --batch-size 2 --steps-per-epoch 3 --train-tokens 200 --out "$out/fit-set"
"$bin" pinv-baseline --cache "$out/set" --layers all --out "$out/pinv-set"
"$bin" connections --cache "$out/set" --layers 1,2 --top-k 8 --out "$out/connections"
"$bin" report --cache "$out/set" --layers all --midcoder "$out/fit-set" --pinv "$out/pinv-set" --evaluate \
  --connections "$out/connections" --out "$out/report-set"
cat "$out/report-set/layers.csv"
set +x
echo "== done: open $out/report/index.html (layer 1's features) and $out/report-set/index.html (every layer)" >&2
