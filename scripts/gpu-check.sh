#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (issue 6). Build everything on a
# machine with Go first — `make gpu-check-build` writes bin/gpu/ — then run,
# from the repository root on the GPU machine (no Go toolchain, no network
# needed; PyTorch for the comparison):
#
#   scripts/gpu-check.sh [OUTDIR]
#
# (a) correctness: the CUDA build against the CPU build on the committed
#     fixtures (TransformerLens goldens) and on GPT-2-small-shaped random
#     weights: x, y, acts, and a short fit trajectory (bin/gpu/cuda.test);
#     then the CLI: fit --device cuda against --device cpu on the tiny bundle;
# (b) benchmarks: forward+encode and the fit step in tokens/s, and the
#     notebook's whole fit (163,840 tokens from token ids) in seconds;
# (c) the same pipeline in PyTorch on the same GPU (scripts/bench_torch.py).
# It ends with one short table. Logs go to OUTDIR (default /tmp/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gpu-check}
mkdir -p "$out"
bin=bin/gpu
py=$(command -v python3)
fail=0
step() { echo; echo "=== $* ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# cuBLAS: ctxdep looks in the usual places; PyTorch's wheels hold one too.
if ! ldconfig -p | grep -q 'libcublas\.so\.1[123]' && [ -z "${CTXDEP_CUBLAS:-}" ]; then
  for f in /usr/local/cuda/lib64/libcublas.so.1[123] /usr/local/cuda-*/lib64/libcublas.so.1[123] \
           $(find / -xdev -name 'libcublas.so.1[123]' 2>/dev/null | head -3); do
    if [ -e "$f" ]; then export CTXDEP_CUBLAS=$f; break; fi
  done
fi
echo "CTXDEP_CUBLAS=${CTXDEP_CUBLAS:-(loader search)}"
"$bin/ctxdep" version

step "(a) device vs CPU: fixtures and GPT-2-small shapes"
(cd internal/cuda && timeout 240 "../../$bin/cuda.test" -test.v -test.run . 2>&1) | tee "$out/tests.txt" | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|cuda_test.go|device:' || true
grep -q '^PASS' "$out/tests.txt" || { echo "CUDA TESTS FAILED"; fail=1; }

step "(a) CLI: fit --device cuda against --device cpu on the tiny bundle"
m=testdata/tiny-gpt2 tcs=testdata/tiny-transcoders
tmp=$(mktemp -d)
"$bin/ctxdep" -q --model $m --layer 1 cache build --tokens testdata/tokens/tiny-int64.npy --out "$tmp/cache-cpu"
"$bin/ctxdep" -q --device cuda --model $m --layer 1 cache build --tokens testdata/tokens/tiny-int64.npy --out "$tmp/cache-gpu" --with-acts --transcoders $tcs 2>&1 | tail -3
for d in cpu cuda; do
  "$bin/ctxdep" -q --device $d --model $m --transcoders $tcs fit --cache "$tmp/cache-cpu" --batch-size 2 --steps-per-epoch 3 --train-tokens 200 --out "$tmp/fit-$d" --json >"$tmp/fit-$d.json" 2>"$tmp/fit-$d.err" || { echo "fit --device $d failed:"; cat "$tmp/fit-$d.err"; fail=1; }
done
"$py" - "$tmp" <<'EOF' || fail=1
import json, sys
d = sys.argv[1]
a, b = json.load(open(f"{d}/fit-cpu.json")), json.load(open(f"{d}/fit-cuda.json"))
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
print("fit history cpu:", [round(r["loss"], 7) for r in a])
print("fit history gpu:", [round(r["loss"], 7) for r in b])
print(f"CLI fit: max relative loss difference {worst:.2e}", "OK" if worst < 1e-4 and len(a) == len(b) else "FAIL")
sys.exit(0 if worst < 1e-4 and len(a) == len(b) else 1)
EOF
"$bin/ctxdep" --device cuda --model $m --layer 1 inspect-cache "$tmp/cache-gpu" --transcoders $tcs --json >"$out/inspect-gpu.json" 2>&1 && echo "inspect-cache of the GPU-built cache: OK" || { echo "inspect-cache of the GPU-built cache failed"; cat "$out/inspect-gpu.json"; fail=1; }

step "(b) benchmarks: the CUDA backend"
(cd internal/cuda && timeout 150 "../../$bin/cuda.test" -test.run '^$' -test.bench 'ForwardEncode|FitStep' -test.benchtime 20x -test.count 3 2>&1; \
 timeout 120 "../../$bin/cuda.test" -test.run '^$' -test.bench 'NotebookFit' -test.benchtime 3x -test.count 1 2>&1) | tee "$out/bench-go.txt" | grep -E '^Benchmark|device:'

step "(c) the same pipeline in PyTorch, same GPU, float32 (TF32 off)"
timeout 200 "$py" scripts/bench_torch.py --device cuda --batch 64 --midcoder --notebook-fit --reps 5 2>&1 | tee "$out/bench-torch.txt"

step "summary"
med() { grep "$1" "$out/bench-go.txt" | grep -o '[0-9.e+]* tokens/s' | awk '{print $1}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fe=$(med BenchmarkForwardEncode); fs=$(med BenchmarkFitStep)
nb=$(grep BenchmarkNotebookFit "$out/bench-go.txt" | grep -o '[0-9.]* s/fit' | awk '{print $1}')
tfe=$(grep 'forward + encode' "$out/bench-torch.txt" | awk '{print $(NF-1)}')
tfs=$(grep 'whole step' "$out/bench-torch.txt" | awk '{print $(NF-1)}')
tnb=$(grep 'notebook fit' "$out/bench-torch.txt" | awk '{print $(NF-4)}')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "?" }'; }
{
  echo "GPU: $(cat "$out/gpu.txt")"
  printf '%-44s %14s %14s %8s\n' "" "ctxdep cuda" "PyTorch eager" "ratio"
  printf '%-44s %14s %14s %8s\n' "forward+encode, B=64, tokens/s" "$fe" "$tfe" "$(ratio "$fe" "$tfe")"
  printf '%-44s %14s %14s %8s\n' "fit step from token ids, B=64, tokens/s" "$fs" "$tfs" "$(ratio "$fs" "$tfs")"
  printf '%-44s %14s %14s %8s\n' "notebook fit, 163,840 tokens, seconds" "$nb" "$tnb" "$(ratio "$tnb" "$nb")"
  echo "correctness: $([ $fail = 0 ] && echo PASS || echo FAIL)"
} | tee "$out/summary.txt"
rm -rf "$tmp"
exit $fail
