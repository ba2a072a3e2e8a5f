#!/usr/bin/env bash
# `make bench`: the forward to block 8, the transcoder encoder, and both
# together at GPT-2-small shapes (random weights, B=32, T=128), for the
# pure-Go and OpenBLAS builds and for PyTorch, in one run on this machine.
# Then the midcoder: one training step from cached activations (sparse, and
# the dense reference) and the notebook's whole step from token ids, B = 64,
# OpenBLAS build and PyTorch (its dense step, and the best of its sparse
# ones: embedding_bag's gather, its own backward or index_add_ to scatter); and the pinv baseline at GPT-2-small shapes
# (OpenBLAS build, float64, against PyTorch's float32); and caching a layer
# set, layers 0-11 from one pass, against layer 11 alone (OpenBLAS build,
# shards written to a temporary directory); and start-up (a one-sequence
# cache build and pinv-baseline, fresh processes, beside a plain read of
# the same files). Prints the median of each. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-3}
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE   # let OpenBLAS pick its kernel for this CPU
out=$(mktemp)
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
run() { # tags benchtime
  go test ${1:+-tags $1} -run '^$' -bench 'RunToBlock8|BenchmarkEncode$|ForwardEncode' -benchtime "$2" -count "$count" -v \
    ./internal/gpt2 ./internal/transcoder ./internal/cachebuild | tee -a "$out" | grep -E '^Benchmark|blas ' >&2
}
# The model name alone can hide the generation (a VM may say only "AMD EPYC"):
# CPU family and model tell it (AMD family 25 is Zen 3/4, 26 is Zen 5).
echo "machine: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; $(go version)" | tee "$out"
echo "== pure Go" >&2; run "" 1x
pure=$(cat "$out")
: > "$out"
mid="" pinv="" sets=""
if printf 'int main(void){return 0;}' | cc -x c - -lopenblas -o /dev/null 2>/dev/null; then
  echo "== OpenBLAS" >&2; run openblas 3x
  # (-bench splits its pattern at "/", so the two benchmarks take two runs)
  mid=$( { go test -tags openblas -run '^$' -bench '^BenchmarkStep$/./B=64' -benchtime 3x -count "$count" ./internal/midcoder
           go test -tags openblas -run '^$' -bench '^BenchmarkStreamStep$' -benchtime 3x -count "$count" ./internal/midcoder; } | grep '^Benchmark')
  echo "$mid" >&2
  pinv=$(go test -tags openblas -run '^$' -bench 'PinvBaseline/blas' -benchtime 1x -count "$count" ./internal/analysis | grep '^Benchmark')
  echo "$pinv" >&2
  sets=$(go test -tags openblas -run '^$' -bench 'LayerSet' -benchtime 2x -count "$count" ./internal/cachebuild | grep '^Benchmark')
  echo "$sets" >&2
fi
blas=$(cat "$out")
torch=""
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "== PyTorch" >&2
  torch=$(/usr/bin/python3 scripts/bench_torch.py --reps 5 --threads "$(nproc)" --midcoder --pinv --batch 64)
  echo "$torch" >&2
fi
pick() { grep "^$2-" <<<"$1" | sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' | median; }
kernel=$(grep -o 'kernel [A-Za-z0-9]*' <<<"$blas" | head -1 | cut -d' ' -f2)
printf '\n| tokens/s (median of %s) | forward to block 8 | encoder 768→24,576 | forward + encode |\n|---|---|---|---|\n' "$count"
printf '| ctxdep, pure Go (gonum) | %s | %s | %s |\n' "$(pick "$pure" BenchmarkRunToBlock8)" "$(pick "$pure" BenchmarkEncode)" "$(pick "$pure" BenchmarkForwardEncode)"
[ -n "$blas" ] && printf '| ctxdep, OpenBLAS (%s kernel) | %s | %s | %s |\n' "$kernel" "$(pick "$blas" BenchmarkRunToBlock8)" "$(pick "$blas" BenchmarkEncode)" "$(pick "$blas" BenchmarkForwardEncode)"
[ -n "$torch" ] && printf '| PyTorch %s, eager, float32 | %s | – | %s |\n' "$(sed -n 's/^torch \([^ ]*\).*/\1/p' <<<"$torch")" \
  "$(sed -n 's/^forward to block 8: *\([0-9]*\).*/\1/p' <<<"$torch")" "$(sed -n 's/^forward + encode: *\([0-9]*\).*/\1/p' <<<"$torch")"
if [ -n "$mid" ]; then
  printf '\n| tokens/s (median of %s), B = 64 | midcoder step from a cache | whole step from token ids |\n|---|---|---|\n' "$count"
  printf '| ctxdep, sparse, OpenBLAS (%s kernel) | %s | %s |\n' "$kernel" "$(pick "$mid" BenchmarkStep/sparse/B=64)" "$(pick "$mid" BenchmarkStreamStep)"
  printf '| ctxdep, dense reference path, OpenBLAS | %s | – |\n' "$(pick "$mid" BenchmarkStep/dense/B=64)"
  if [ -n "$torch" ]; then
    tk=$(sed -n 's/.*openblas kernel \([A-Za-z0-9?]*\).*/\1/p' <<<"$torch")
    td=$(sed -n 's/^midcoder step (dense[^:]*: *\([0-9]*\).*/\1/p' <<<"$torch")
    ts=$(sed -n 's/^midcoder step (sparse.*): *\([0-9]*\).*/\1/p' <<<"$torch")
    printf '| PyTorch, dense (the notebook'"'"'s formulation), OpenBLAS (%s kernel) | %s | %s |\n' "$tk" "$td" \
      "$(sed -n 's/^whole step[^:]*: *\([0-9]*\).*/\1/p' <<<"$torch")"
    printf '| PyTorch, sparse (%s) | %s | – |\n' "$(sed -n 's/^midcoder step (sparse, best: \([^)]*\)).*/\1/p' <<<"$torch")" "$ts"
    gs=$(pick "$mid" BenchmarkStep/sparse/B=64)
    printf '\nmidcoder step from a cache: %s× PyTorch'"'"'s dense step, %s× its best sparse one (OpenBLAS kernels: ctxdep %s, PyTorch %s)\n' \
      "$(awk -v a="$gs" -v b="$td" 'BEGIN { printf "%.2f", a / b }')" "$(awk -v a="$gs" -v b="$ts" 'BEGIN { printf "%.2f", a / b }')" "$kernel" "$tk"
  fi
fi
if [ -n "$pinv" ]; then
  printf '\n| seconds (median of %s) | pinv baseline, F = 24,576 |\n|---|---|\n' "$count"
  printf '| ctxdep, OpenBLAS (%s kernel), float64 products, LAPACK dgesdd | %s |\n' "$kernel" \
    "$(grep -o '[0-9.]* s/op' <<<"$pinv" | cut -d' ' -f1 | median)"
  [ -n "$torch" ] && printf '| PyTorch, float32 (the notebook'"'"'s) | %s |\n' "$(sed -n 's/^pinv baseline[^:]*: *\([0-9.]*\) s.*/\1/p' <<<"$torch")"
fi
if [ -n "$sets" ]; then
  one=$(pick "$sets" BenchmarkLayerSet/layer=11) all=$(pick "$sets" BenchmarkLayerSet/layers=0-11)
  printf '\n| tokens/s (median of %s), 8 rows of 128, writes included | cache build |\n|---|---|\n' "$count"
  printf '| layer 11 alone (OpenBLAS, %s kernel) | %s |\n| layers 0-11 in one pass | %s (%s× the time of layer 11 alone) |\n' "$kernel" "$one" "$all" \
    "$(awk -v a="$one" -v b="$all" 'BEGIN { printf "%.2f", a / b }')"
fi
rm -f "$out"

# Start-up at GPT-2-small shapes (random weights from make_random_gpt2.py,
# 548 MB model, 151 MB transcoder): fresh processes, page cache warm, the
# hash cache in a temporary directory (warm after the first run), each
# beside a plain read of the same files into memory (Python f.read()).
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  su=$(mktemp -d)
  trap 'rm -rf "$su"' EXIT
  echo "== start-up" >&2
  /usr/bin/python3 scripts/make_random_gpt2.py "$su/files" --rows 8 2>/dev/null
  go build ${blas:+-tags openblas} -o "$su/ctxdep" ./cmd/ctxdep
  M=$su/files/gpt2 T=$(ls "$su"/files/transcoders/*_24576.pt)
  export XDG_CACHE_HOME=$su/xdg
  sleep 3 # the hash cache leaves files changed in the last 2 s alone
  readpy='import sys, time
t = time.perf_counter()
for p in sys.argv[1:]:
    with open(p, "rb") as f: f.read()
print("%.3f" % (time.perf_counter() - t))'
  secs() { awk '{ v = $1; if (v ~ /µs$/) v /= 1e6; else if (v ~ /ms$/) v /= 1e3; else v += 0; printf "%.3f\n", v }'; }
  logged() { grep -o "$1 in [0-9.]*[µm]*s" | head -1 | awk '{print $NF}' | secs; }
  wall() { local s=$EPOCHREALTIME; "$@" >/dev/null 2>&1; awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'; }
  build() { rm -rf "$su/c"; "$su/ctxdep" -v cache build --model "$M" --layer 8 --tokens "$su/files/tokens.npy" --n-tokens 128 --out "$su/c" 2>&1; }
  build >/dev/null; build >/dev/null # warm the page cache and the hash cache
  : > "$su/t"
  for _ in $(seq "$count"); do
    rm -rf "$su/c"
    log=$(build)
    off=$(CTXDEP_HASH_CACHE=off build)
    rm -rf "$su/c"
    printf 'rm %s rmt %s cb %s lp %s h %s hoff %s pv %s\n' \
      "$(/usr/bin/python3 -c "$readpy" "$M/model.safetensors")" "$(/usr/bin/python3 -c "$readpy" "$M/model.safetensors" "$T")" \
      "$(rm -rf "$su/c"; wall "$su/ctxdep" -q cache build --model "$M" --layer 8 --tokens "$su/files/tokens.npy" --n-tokens 128 --out "$su/c")" \
      "$(logged processed <<<"$log")" "$(logged hashed <<<"$log")" "$(logged hashed <<<"$off")" \
      "$(wall "$su/ctxdep" -q pinv-baseline --model "$M" --transcoder "$T" --layer 8 --out "$su/p.safetensors" --force)" | tee -a "$su/t" >&2
  done
  col() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i+1) }' "$su/t" | median; }
  rm_=$(col rm) rmt=$(col rmt) cb=$(col cb) pv=$(col pv)
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  printf '\n| seconds (median of %s), GPT-2-small shapes, fresh processes | time | against a plain read |\n|---|---|---|\n' "$count"
  printf '| read model.safetensors (548 MB) into memory, Python f.read() | %s | 1 |\n' "$rm_"
  printf '| read model.safetensors and the transcoder (699 MB) | %s | 1 |\n' "$rmt"
  printf '| cache build --layer 8, one sequence of 128 tokens, whole command | %s | %s× the model read |\n' "$cb" "$(ratio "$cb" "$rm_")"
  printf '| … of which: load and process the embeddings and blocks 0-8 | %s | |\n' "$(col lp)"
  printf '| … of which: hash model.safetensors, hash cache warm (off) | %s (%s) | |\n' "$(col h)" "$(col hoff)"
  printf '| pinv-baseline --layer 8, whole command (its own float64 products and SVD included) | %s | %s× the model + transcoder read |\n' "$pv" "$(ratio "$pv" "$rmt")"
  rm -rf "$su"
  trap - EXIT
fi
