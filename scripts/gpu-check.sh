#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (issue 6). Build everything on a
# machine with Go first — `make gpu-check-build` writes bin/gpu/ — then run,
# from the repository root on the GPU machine (no Go toolchain, no network
# needed; PyTorch for the comparison):
#
#   scripts/gpu-check.sh [--quick | --bench] [OUTDIR]
#
# (or copy bin/gpu.tar.gz, which the same make target writes, and unpack it
# first: tar xzf bin/gpu.tar.gz -C bin).
#
# (a) correctness: the CUDA build against the CPU build on the committed
#     fixtures (TransformerLens goldens) and on GPT-2-small-shaped random
#     weights: each kernel alone, x, y, acts, a short fit trajectory (also
#     --deterministic, twice), the evaluation and effect passes
#     (bin/gpu/cuda.test); then the CLI: cache build, fit, evaluate and
#     report with --device cuda against --device cpu on the tiny bundle;
# (b) benchmarks: forward+encode, the fit step (also with --deterministic)
#     and evaluate in tokens/s, the notebook's whole fit (163,840 tokens
#     from token ids) in seconds, the fit step's device time per kernel,
#     and the report's effect statistics against this machine's CPU;
# (c) the same pipeline in PyTorch on the same GPU (scripts/bench_torch.py).
# It ends with one short table. Logs go to OUTDIR (default /tmp/gpu-check).
#
# --quick runs (a) only, --bench (b) to (d) only (two calls that each fit a
# short lease of a GPU machine). A rehearsal without a GPU: build the binaries with
# the tag cudasim (the simulated device; see internal/cuda/doc.go) into a
# folder and name it in GPU_CHECK_BIN, e.g.
#   mkdir -p /tmp/sim && CGO_ENABLED=1 go build -tags cudasim -o /tmp/sim/ctxdep ./cmd/ctxdep &&
#   CGO_ENABLED=1 go test -tags cudasim -c -o /tmp/sim/cuda.test ./internal/cuda &&
#   go test -c -o /tmp/sim/analysis.test ./internal/analysis &&
#   GPU_CHECK_BIN=/tmp/sim scripts/gpu-check.sh --quick
set -uo pipefail
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in --quick) mode=quick; shift;; --bench) mode=bench; shift;; esac
out=${1:-/tmp/gpu-check}
mkdir -p "$out"
bin=$(realpath "${GPU_CHECK_BIN:-bin/gpu}")
for f in ctxdep cuda.test analysis.test; do
  [ -x "$bin/$f" ] || { echo "no $bin/$f: run make gpu-check-build (on a machine with Go) first"; exit 2; }
done
py=$(command -v python3)
fail=0
step() { echo; echo "=== $* ($(date +%T))"; }
# compare_fits DIR PREFIX LABEL: the loss histories in DIR/PREFIX-cpu.json and
# DIR/PREFIX-cuda.json (fit --json) agree to 1e-4, epoch by epoch.
compare_fits() {
  "$py" - "$@" <<'EOF'
import json, sys
d, p, label = sys.argv[1:4]
a, b = json.load(open(f"{d}/{p}-cpu.json")), json.load(open(f"{d}/{p}-cuda.json"))
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
ok = worst < 1e-4 and len(a) == len(b)
print(f"{label} history cpu:", [round(r["loss"], 7) for r in a])
print(f"{label} history gpu:", [round(r["loss"], 7) for r in b])
print(f"{label}: {len(a)} epochs, max relative loss difference {worst:.2e}", "OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
}

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee "$out/gpu.txt"
# cuBLAS: ctxdep looks in the usual places; PyTorch's wheels hold one too.
if ! ldconfig -p | grep -q 'libcublas\.so\.1[123]' && [ -z "${CTXDEP_CUBLAS:-}" ]; then
  for f in /usr/local/cuda/lib64/libcublas.so.1[123] /usr/local/cuda-*/lib64/libcublas.so.1[123] \
           $(find / -xdev -name 'libcublas.so.1[123]' 2>/dev/null | head -3); do
    if [ -e "$f" ]; then export CTXDEP_CUBLAS=$f; break; fi
  done
fi
echo "CTXDEP_CUBLAS=${CTXDEP_CUBLAS:-(loader search)}"
"$bin/ctxdep" version

if [ $mode != bench ]; then
step "(a) device vs CPU: fixtures and GPT-2-small shapes"
(cd internal/cuda && timeout 240 "$bin/cuda.test" -test.v -test.run . 2>&1) | tee "$out/tests.txt" | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|cuda_test.go|device:' || true
grep -q '^PASS' "$out/tests.txt" || { echo "CUDA TESTS FAILED"; fail=1; }

step "(a) CLI: fit --device cuda against --device cpu on the tiny bundle"
m=testdata/tiny-gpt2 tcs=testdata/tiny-transcoders
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in cpu cuda; do
  "$bin/ctxdep" -q --device $d --model $m --layer 1 --transcoders $tcs cache build --tokens testdata/tokens/tiny-int64.npy \
    --with-acts --batch-size 4 --sequences-per-shard 4 --out "$tmp/cache-$d" || { echo "cache build --device $d failed"; fail=1; }
done
"$py" - "$tmp" <<'EOF' || fail=1
import glob, os, sys
import numpy as np
from safetensors.numpy import load_file
d = sys.argv[1]
ok = True
for f in sorted(glob.glob(f"{d}/cache-cpu/shard-*.safetensors")):
    a, b = load_file(f), load_file(f"{d}/cache-cuda/" + os.path.basename(f))
    for k in ("x", "y"):
        e = np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()
        ok &= bool(e < 1e-5)
        print(f"cache build {os.path.basename(f)} {k}: max error {e:.2e} of the scale")
    same = all(np.array_equal(a[k], b[k]) for k in ("tokens", "acts_indptr", "acts_indices"))
    va = np.abs(a["acts_values"] - b["acts_values"]).max() if same else float("inf")
    print(f"  tokens and acts' sparsity identical: {same}; acts values max |diff| {va:.2e}")
    ok &= bool(same and va < 1e-4)
print("CLI cache build --device cuda:", "OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
for d in cpu cuda; do
  "$bin/ctxdep" -q --device $d --model $m --transcoders $tcs fit --cache "$tmp/cache-cpu" --batch-size 2 --steps-per-epoch 3 --train-tokens 200 --out "$tmp/fit-$d" --json >"$tmp/fit-$d.json" 2>"$tmp/fit-$d.err" || { echo "fit --device $d failed:"; cat "$tmp/fit-$d.err"; fail=1; }
done
compare_fits "$tmp" fit "CLI fit" || fail=1
# --deterministic: two GPU fits give the same bytes (with float atomics they may not).
for i in 1 2; do
  "$bin/ctxdep" -q --device cuda --deterministic --model $m --transcoders $tcs fit --cache "$tmp/cache-cpu" --batch-size 2 \
    --steps-per-epoch 3 --train-tokens 200 --out "$tmp/fitdet-$i" --json >"$tmp/fitdet-$i.json" 2>&1 || { echo "fit --deterministic failed"; cat "$tmp/fitdet-$i.json"; fail=1; }
done
if cmp -s "$tmp/fitdet-1/midcoder.safetensors" "$tmp/fitdet-2/midcoder.safetensors" && cmp -s "$tmp/fitdet-1.json" "$tmp/fitdet-2.json"; then
  echo "CLI fit --deterministic twice: identical midcoder.safetensors and history: OK"
else echo "CLI fit --deterministic twice: the runs differ: FAIL"; fail=1; fi
# fit --data: token ids streamed from text, the whole step on the GPU.
"$py" - "$tmp/docs.jsonl" <<'EOF'
import json, random, sys
random.seed(1)
w = "the of and to in is was for on that with as by at from his her they this".split()
with open(sys.argv[1], "w") as f:
    for i in range(200):
        f.write(json.dumps({"text": " ".join(random.choice(w) for _ in range(random.randint(5, 60)))}) + "\n")
EOF
for d in cpu cuda; do
  "$bin/ctxdep" -q --device $d --model $m --transcoders $tcs --layer 1 fit --data "$tmp/docs.jsonl" --max-length 16 --batch-size 4 \
    --steps-per-epoch 3 --train-tokens 300 --out "$tmp/fitd-$d" --json >"$tmp/fitd-$d.json" 2>"$tmp/fitd-$d.err" || { echo "fit --data --device $d failed:"; cat "$tmp/fitd-$d.err"; fail=1; }
done
compare_fits "$tmp" fitd "CLI fit --data" || fail=1
# report --device cuda (its effect statistics on the GPU): the same features.csv to 1e-4.
for d in cpu cuda; do
  "$bin/ctxdep" -q --device $d --model $m --transcoders $tcs --layer 1 report --cache "$tmp/cache-cpu" \
    --midcoder "$tmp/fit-cpu/midcoder.safetensors" --out "$tmp/report-$d" >"$tmp/report-$d.log" 2>&1 || { echo "report --device $d failed"; cat "$tmp/report-$d.log"; fail=1; }
done
"$py" - "$tmp" <<'EOF' || fail=1
import csv, math, sys
d = sys.argv[1]
a = list(csv.DictReader(open(f"{d}/report-cpu/features.csv")))
b = list(csv.DictReader(open(f"{d}/report-cuda/features.csv")))
ok, worst, n = len(a) == len(b) > 0, 0.0, 0
for x, y in zip(a, b):
    for k in x:
        u, v = float(x[k]), float(y[k])
        if math.isnan(u) or math.isnan(v):
            ok &= math.isnan(u) and math.isnan(v)
            continue
        worst = max(worst, abs(u - v) / max(1, abs(u)))
        n += 1
ok &= worst <= 1e-4
print(f"report --device cuda: {len(b)} features, {n} values, worst difference {worst:.2g} (at most 1e-4):", "OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
# evaluate --device cuda: the same cross-entropies (to 1e-5 relative) and errors as the CPU's.
for d in cpu cuda; do
  "$bin/ctxdep" -q --device $d --model $m --transcoders $tcs --layer 1 evaluate --cache "$tmp/cache-cpu" \
    --midcoder "$tmp/fit-cpu/midcoder.safetensors" --json >"$tmp/eval-$d.json" 2>&1 || { echo "evaluate --device $d failed"; cat "$tmp/eval-$d.json"; fail=1; }
done
"$py" - "$tmp" <<'EOF' || fail=1
import json, sys
d = sys.argv[1]
a, b = json.load(open(f"{d}/eval-cpu.json")), json.load(open(f"{d}/eval-cuda.json"))
pairs = [(k, a[k], b[k], 1e-5) for k in ("ce_clean", "ce_transcoder", "ce_zero_ablation")] + [("nmse_transcoder", a["nmse_transcoder"], b["nmse_transcoder"], 1e-4)]
pairs += [(f"midcoder {k}", x[k], y[k], tol) for x, y in zip(a["midcoders"], b["midcoders"]) for k, tol in (("ce", 1e-5), ("nmse", 1e-4))]
ok = len(a["midcoders"]) == len(b["midcoders"]) == 1
for name, x, y, tol in pairs:
    r = abs(x - y) / abs(x)
    ok &= r <= tol
    print(f"evaluate {name}: cpu {x:.9g} cuda {y:.9g} (relative {r:.2g}, at most {tol:g})")
print("CLI evaluate --device cuda:", "OK" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
"$bin/ctxdep" --device cuda --model $m cache plan --n-tokens 1000000 --layer 1 2>&1 | tail -4
"$bin/ctxdep" --device cuda --model $m --layer 1 inspect-cache "$tmp/cache-cuda" --transcoders $tcs --json >"$out/inspect-gpu.json" 2>&1 && echo "inspect-cache of the GPU-built cache: OK" || { echo "inspect-cache of the GPU-built cache failed"; cat "$out/inspect-gpu.json"; fail=1; }

if "$bin/ctxdep" version | grep -q 'simulated device'; then
  echo; echo "(a) bad input: skipped (a simulated device has no driver, cuBLAS or memory limit to fail)"
else
step "(a) bad input: no visible GPU, no cuBLAS, and a batch too large for the GPU's memory"
msg=$(CUDA_VISIBLE_DEVICES= "$bin/ctxdep" version 2>&1); rc=$?
echo "no visible GPU: exit $rc: $msg"; [ $rc = 1 ] || fail=1
msg=$(CTXDEP_CUBLAS=/nonexistent/libcublas.so.13 "$bin/ctxdep" -q --device cuda --model $m --layer 1 --transcoders $tcs fit \
  --cache "$tmp/cache-cpu" --out "$tmp/nocublas" 2>&1); rc=$?
echo "no cuBLAS: exit $rc: $msg"; { [ $rc = 1 ] && echo "$msg" | grep -q 'cuBLAS not found'; } || { echo "FAIL: want exit 1 and 'cuBLAS not found'"; fail=1; }
msg=$("$bin/ctxdep" -q --device cuda --model $m --layer 1 cache build --tokens testdata/tokens/tiny-int64.npy \
  --batch-size 50000000 --out "$tmp/oom" 2>&1); rc=$?
echo "oversized --batch-size: exit $rc: $msg"
{ [ $rc = 1 ] && echo "$msg" | grep -q 'lower --batch-size' && [ ! -e "$tmp/oom" ]; } || { echo "FAIL: want exit 1, advice and no output"; fail=1; }
fi

fi # (a)
if [ $mode = quick ]; then
  echo; echo "correctness (--quick: (a) only): $([ $fail = 0 ] && echo PASS || echo FAIL)"
  exit $fail
fi

step "(b) benchmarks: the CUDA backend"
(cd internal/cuda && timeout 150 "$bin/cuda.test" -test.run '^$' -test.bench '^Benchmark(ForwardEncode|ForwardEncodePageable|FitStep|FitStepDeterministic|Phases|Evaluate|EffectAdd)$' -test.benchtime 20x -test.count 3 2>&1; \
 timeout 120 "$bin/cuda.test" -test.run '^$' -test.bench '^BenchmarkNotebookFit$' -test.benchtime 3x -test.count 1 2>&1) | tee "$out/bench-go.txt" | grep -E '^Benchmark|device:'

# Where a fit step's device time goes, per kernel and GEMM shape (events around each launch).
(cd internal/cuda && timeout 90 "$bin/cuda.test" -test.run '^$' -test.bench 'FitStepProfile' -test.benchtime 1x 2>&1) \
  | tee "$out/profile.txt" | grep -vE '^(goos|goarch|pkg|cpu|PASS)'
# The report's effect statistics: ctxdep on this machine's CPU, for the GPU's ratio.
timeout 120 "$bin/analysis.test" -test.run '^$' -test.bench 'EffectAdd/fit\+pinv' -test.benchtime 3x 2>&1 | tee -a "$out/bench-go.txt" | grep -E '^Benchmark'

step "(c) the same pipeline in PyTorch, same GPU, float32 (TF32 off)"
timeout 200 "$py" scripts/bench_torch.py --device cuda --batch 64 --midcoder --notebook-fit --reps 5 2>&1 | tee "$out/bench-torch.txt"
# The evaluation loop at ctxdep's device batch (32 rows): TransformerLens-style, a full forward per variant.
timeout 120 "$py" scripts/bench_torch.py --device cuda --batch 32 --evaluate --reps 5 2>&1 | grep evaluation | tee -a "$out/bench-torch.txt"

step "(d) with --tf32: ctxdep and PyTorch both on TF32 tensor cores"
(cd internal/cuda && CTXDEP_TF32=1 timeout 120 "$bin/cuda.test" -test.run 'TestForwardSmallShape' -test.v -test.bench 'NotebookFit' -test.benchtime 3x 2>&1) \
  | tee "$out/bench-go-tf32.txt" | grep -E '^Benchmark|max error|^--- |device:'
timeout 120 "$py" scripts/bench_torch.py --device cuda --tf32 --batch 64 --notebook-fit --reps 3 2>&1 | tee "$out/bench-torch-tf32.txt" | grep -E 'notebook|tf32'

step "summary"
med() { grep "$1" "$out/bench-go.txt" | grep -o '[0-9.e+]* tokens/s' | awk '{print $1}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fe=$(med BenchmarkForwardEncode-); fep=$(med BenchmarkForwardEncodePageable-); fs=$(med BenchmarkFitStep-); fsd=$(med BenchmarkFitStepDeterministic-)
nb=$(grep BenchmarkNotebookFit "$out/bench-go.txt" | grep -o '[0-9.]* s/fit' | awk '{print $1}')
tfe=$(grep 'forward + encode' "$out/bench-torch.txt" | awk '{print $(NF-1)}')
tfs=$(grep 'whole step' "$out/bench-torch.txt" | awk '{print $(NF-1)}')
tnb=$(grep 'notebook fit' "$out/bench-torch.txt" | awk '{print $(NF-4)}')
ev=$(med BenchmarkEvaluate-); tev=$(grep 'evaluation loop' "$out/bench-torch.txt" | awk '{print $(NF-1)}')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "?" }'; }
{
  echo "GPU: $(cat "$out/gpu.txt")"
  printf '%-44s %14s %14s %8s\n' "" "ctxdep cuda" "PyTorch eager" "ratio"
  printf '%-44s %14s %14s %8s\n' "forward+encode, B=64, tokens/s" "$fe" "$tfe" "$(ratio "$fe" "$tfe")"
  echo "  (copies on the copy stream into page-locked memory: $(ratio "$fe" "$fep") of synchronous copies into Go's, $fep tokens/s)"
  printf '%-44s %14s %14s %8s\n' "fit step from token ids, B=64, tokens/s" "$fs" "$tfs" "$(ratio "$fs" "$tfs")"
  printf '%-44s %14s %14s %8s\n' "the same with --deterministic, tokens/s" "$fsd" "$tfs" "$(ratio "$fsd" "$tfs")"
  echo "  (--deterministic's sorted scatter: the step at $(ratio "$fsd" "$fs") of the default's speed)"
  printf '%-44s %14s %14s %8s\n' "notebook fit, 163,840 tokens, seconds" "$nb" "$tnb" "$(ratio "$tnb" "$nb")"
  printf '%-44s %14s %14s %8s\n' "evaluate, 4 variants, cached tokens/s" "$ev" "$tev" "$(ratio "$ev" "$tev")"
  efg=$(med 'BenchmarkEffectAdd-')
  efc=$(med 'BenchmarkEffectAdd/fit+pinv')
  echo "report's effect statistics (fit+pinv), tokens/s: $efg on the GPU, $efc on this machine's CPU (ctxdep): $(ratio "$efg" "$efc")"
  nb32=$(grep BenchmarkNotebookFit "$out/bench-go-tf32.txt" | grep -o '[0-9.]* s/fit' | awk '{print $1}')
  tnb32=$(grep 'notebook fit' "$out/bench-torch-tf32.txt" | awk '{print $(NF-4)}')
  printf '%-44s %14s %14s %8s\n' "notebook fit with TF32 (--tf32), seconds" "$nb32" "$tnb32" "$(ratio "$tnb32" "$nb32")"
  [ $mode = bench ] && echo "correctness: not run (--bench)" || echo "correctness: $([ $fail = 0 ] && echo PASS || echo FAIL)"
} | tee "$out/summary.txt"
exit $fail
