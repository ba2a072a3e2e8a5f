# ctxdep — build, test, benchmark.
#
#   make build        ./bin/ctxdep with OpenBLAS when libopenblas is installed, else pure Go
#   make install      the same build, installed by go install into $GOBIN (default $(go env GOPATH)/bin)
#   make docs         regenerate the command reference docs/cli/*.md and docs/man/*.1
#   make test         vet + all tests; the OpenBLAS build's numerics tests (twice on AVX-512
#                     CPUs: OpenBLAS's kernel and the Haswell one), the CUDA backend on the
#                     simulated device (test-sim), the CUDA build (compile, link, no-GPU
#                     error) and a real Slurm job array when their prerequisites are
#                     installed (.ci/run installs them all)
#   make test-sim     the CUDA backend's tests with its kernels emulated on the CPU (no GPU)
#   make demo         the main job end to end on the tiny synthetic bundle in testdata/
#   make browser-check  the demo's reports in headless Chromium (Debian's chromium): no console
#                     errors, feature pages show their examples, links resolve
#   make bench        forward / encode benchmarks at GPT-2-small shapes, both BLAS backends
#   make build-cuda   ./bin/ctxdep-cuda with the CUDA backend (compiles without a GPU: see README)
#   make ptx          regenerate internal/cuda/kernels.ptx from kernels.cu (needs nvcc)

GO        ?= go
BIN       ?= bin/ctxdep
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# OpenBLAS is usable when the linker finds libopenblas.so (Debian: libopenblas-dev).
HAVE_OPENBLAS := $(shell printf 'int main(void){return 0;}' | $${CC:-cc} -x c - -lopenblas -o /dev/null 2>/dev/null && echo yes)
BLAS_TAGS := $(if $(HAVE_OPENBLAS),openblas,)
# The packages whose results depend on the BLAS kernel. On CPUs with AVX-512
# they run twice: OpenBLAS's own kernel choice, and the Haswell kernel that
# some machines force with OPENBLAS_CORETYPE (it rounds differently). -count=1:
# go test's cache does not know the kernel changed.
NUMERICS_PKGS := ./internal/blasimpl ./internal/kernels ./internal/gpt2 ./internal/transcoder ./internal/cachebuild ./internal/midcoder ./internal/analysis
# The CLI's tests against PyTorch's numbers, run again on the OpenBLAS build.
NUMERICS_CLI  := -run 'Golden|PyTorch' ./cmd/ctxdep
HAVE_AVX512   := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes)

# The CUDA build compiles and links against CUDA 11.8's headers and driver
# stub (gorgonia.org/cu v0.9.6 does not compile against CUDA 13's cuda.h);
# scripts/cuda-sdk.sh fetches them from Debian's non-free archive into
# .cuda-sdk. The binary needs only the NVIDIA driver (libcuda.so.1) and a
# cuBLAS 11, 12 or 13, which it loads at run time.
CUDA_SDK  ?= .cuda-sdk
CUDA_ENV   = CGO_ENABLED=1 CGO_CFLAGS="-I$(abspath $(CUDA_SDK))/include" CGO_LDFLAGS="-L$(abspath $(CUDA_SDK))/lib/stubs"
NVCC      ?= $(if $(wildcard $(CUDA_SDK)/bin/nvcc),$(CUDA_SDK)/bin/nvcc,nvcc)

.PHONY: build install docs browser-check build-purego build-openblas build-cuda cuda-sdk ptx gpu-check-build test test-cuda test-sim demo bench fuzz fixtures clean

build:
	@if [ -n "$(HAVE_OPENBLAS)" ]; then $(MAKE) --no-print-directory build-openblas; \
	else echo "libopenblas not found (apt-get install libopenblas-dev): building the pure-Go backend"; \
	$(MAKE) --no-print-directory build-purego; fi

build-purego:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ctxdep
	@echo "built $(BIN) with the pure-Go BLAS backend (gonum)"

build-openblas:
	CGO_ENABLED=1 $(GO) build -tags openblas -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ctxdep
	@echo "built $(BIN) with the OpenBLAS backend"

# go install puts the binary in $GOBIN, else $(go env GOPATH)/bin; add that
# folder to PATH to run `ctxdep` by name.
INSTALL_DIR = $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)

install:
	@if [ -n "$(HAVE_OPENBLAS)" ]; then \
		CGO_ENABLED=1 $(GO) install -tags openblas -ldflags '$(LDFLAGS)' ./cmd/ctxdep && echo "installed $(INSTALL_DIR)/ctxdep with the OpenBLAS backend"; \
	else echo "libopenblas not found (apt-get install libopenblas-dev): installing the pure-Go backend"; \
		$(GO) install -ldflags '$(LDFLAGS)' ./cmd/ctxdep && echo "installed $(INSTALL_DIR)/ctxdep with the pure-Go BLAS backend (gonum)"; fi
	@case ":$$PATH:" in *":$(INSTALL_DIR):"*) ;; *) echo "note: $(INSTALL_DIR) is not on your PATH: export PATH=\"$(INSTALL_DIR):\$$PATH\"";; esac

# The command reference, generated from the commands' help; TestDocsCurrent
# in cmd/ctxdep fails when the checked-in files differ from it.
docs:
	$(GO) run ./cmd/ctxdep gen-docs docs

$(CUDA_SDK)/include/cuda.h:
	./scripts/cuda-sdk.sh $(CUDA_SDK)

cuda-sdk: $(CUDA_SDK)/include/cuda.h

build-cuda: cuda-sdk
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '$(LDFLAGS)' -o bin/ctxdep-cuda ./cmd/ctxdep
	@echo "built bin/ctxdep-cuda with the CUDA backend (it starts only where an NVIDIA driver is installed)"

# Regenerate the embedded PTX: compute_80, so the driver compiles it for
# Ampere, Hopper and later GPUs. scripts/cuda-sdk.sh --nvcc fetches nvcc 11.8.
ptx:
	$(NVCC) -ptx -arch=compute_80 -O3 -ccbin $${CUDAHOSTCXX:-gcc-12} --allow-unsupported-compiler \
		internal/cuda/kernels.cu -o internal/cuda/kernels.ptx

# What scripts/gpu-check.sh runs on a GPU machine, built here; also packed
# into one archive (76 MB of binaries, 34 MB packed) for tools that carry
# only so much to the GPU machine.
gpu-check-build: cuda-sdk
	mkdir -p bin/gpu
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '-s -w $(LDFLAGS)' -o bin/gpu/ctxdep ./cmd/ctxdep
	$(CUDA_ENV) $(GO) test -tags cuda -ldflags '-s -w' -c -o bin/gpu/cuda.test ./internal/cuda
	$(GO) test -ldflags '-s -w' -c -o bin/gpu/analysis.test ./internal/analysis
	tar czf bin/gpu.tar.gz -C bin gpu
	@echo "bin/gpu/ and bin/gpu.tar.gz ($$(du -h bin/gpu.tar.gz | cut -f1); unpack with tar xzf bin/gpu.tar.gz -C bin) are ready for scripts/gpu-check.sh"

# The CUDA build compiles, links and vets (its tests need a GPU: scripts/gpu-check.sh).
test-cuda: cuda-sdk
	$(CUDA_ENV) $(GO) vet -tags cuda ./internal/cuda ./cmd/ctxdep
	$(CUDA_ENV) $(GO) test -tags cuda -c -o /dev/null ./internal/cuda
	$(MAKE) --no-print-directory build-cuda
	@# Without a GPU the binary must stop with a clear error, exit 1: run it on the driver's link stub.
	@mkdir -p bin/stub && ln -sf $(abspath $(CUDA_SDK))/lib/stubs/libcuda.so bin/stub/libcuda.so.1
	@out=$$(LD_LIBRARY_PATH=bin/stub ./bin/ctxdep-cuda version 2>&1); rc=$$?; \
	if [ $$rc = 1 ] && echo "$$out" | grep -q "needs a working GPU driver"; then echo "ctxdep-cuda without a GPU: exit 1, \"$$out\""; \
	else echo "ctxdep-cuda without a GPU: want exit 1 and a clear error, got exit $$rc: $$out"; exit 1; fi

# The CUDA backend on a simulated device (build tag cudasim): kernels.cu
# compiled as C++ on internal/cuda/cudasim.h's emulation, device memory in
# host memory, cuBLAS by blas32; every test of internal/cuda runs, and the
# fixture and kernel tests again with each block's threads in reverse
# order (a race one order hides, the other shows). Needs g++.
HAVE_CXX := $(shell command -v $${CXX:-g++} >/dev/null && echo yes)
SIM_TAGS := cudasim $(BLAS_TAGS)

test-sim:
	CGO_ENABLED=1 $(GO) vet -tags '$(SIM_TAGS)' ./internal/cuda
	CGO_ENABLED=1 $(GO) test -tags '$(SIM_TAGS)' ./internal/cuda
	CUDASIM_ORDER=reverse CGO_ENABLED=1 $(GO) test -tags '$(SIM_TAGS)' -run 'Tiny|LayerSet|Kernel' ./internal/cuda

test:
	$(GO) vet ./...
	$(GO) test ./...
	@if [ -n "$(HAVE_OPENBLAS)" ]; then \
		echo "OpenBLAS build: numerics tests, with the kernel OpenBLAS picks for this CPU"; \
		env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE CGO_ENABLED=1 $(GO) test -count=1 -tags openblas $(NUMERICS_PKGS) || exit 1; \
		env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE CGO_ENABLED=1 $(GO) test -count=1 -tags openblas $(NUMERICS_CLI) || exit 1; \
		if [ -n "$(HAVE_AVX512)" ]; then \
			echo "OpenBLAS build: numerics tests again with OPENBLAS_CORETYPE=Haswell (the AVX2 kernel, set on some AVX-512 machines)"; \
			OPENBLAS_CORETYPE=Haswell CGO_ENABLED=1 $(GO) test -count=1 -tags openblas $(NUMERICS_PKGS) || exit 1; \
			OPENBLAS_CORETYPE=Haswell CGO_ENABLED=1 $(GO) test -count=1 -tags openblas $(NUMERICS_CLI) || exit 1; \
		fi; \
	else echo "libopenblas not found: skipped the OpenBLAS build's tests"; fi
	@if [ -n "$(HAVE_CXX)" ]; then $(MAKE) --no-print-directory test-sim; \
	else echo "no C++ compiler (apt-get install g++): skipped the CUDA backend's tests on the simulated device"; fi
	@if [ -f $(CUDA_SDK)/include/cuda.h ]; then $(MAKE) --no-print-directory test-cuda; \
	else echo "no CUDA 11.8 headers in $(CUDA_SDK) (scripts/cuda-sdk.sh fetches them): skipped the CUDA build"; fi
	@if command -v slurmctld >/dev/null && command -v munged >/dev/null && [ "$$(id -u)" = 0 ]; then ./scripts/slurm-test.sh; \
	else echo "slurm-wlm and munge not installed, or not root (scripts/slurm-test.sh install): skipped the Slurm array test"; fi

demo: build
	./scripts/demo.sh $(BIN)

browser-check: build
	./scripts/browser-check.sh $(BIN)

# Benchmarks are not tests: run them on an idle machine. scripts/bench.sh runs
# the pure-Go and OpenBLAS builds and PyTorch (when installed) in one run and
# prints a table of median tokens/s; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
# unset so OpenBLAS picks its kernel for this CPU.
bench:
	./scripts/bench.sh

# Short coverage-guided fuzzing of the file parsers (the seed corpora run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/safetensors
	$(GO) test -run '^$$' -fuzz FuzzLoadBytes -fuzztime 30s ./internal/torchfile
	$(GO) test -run '^$$' -fuzz FuzzParseHeader -fuzztime 30s ./internal/npy

# Regenerate the PyTorch golden fixtures (needs Debian's python3-torch, python3-numpy).
fixtures:
	/usr/bin/python3 testdata/gen/gen_fixtures.py
	/usr/bin/python3 testdata/gen/gen_torchfile.py

clean:
	rm -rf bin
