# ctxdep — build, test, benchmark.
#
#   make build        ./bin/ctxdep with OpenBLAS when libopenblas is installed, else pure Go
#   make test         vet + all tests (and the OpenBLAS build's numerics tests when available)
#   make demo         the main job end to end on the tiny synthetic bundle in testdata/
#   make bench        forward / encode benchmarks at GPT-2-small shapes, both BLAS backends

GO        ?= go
BIN       ?= bin/ctxdep
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# OpenBLAS is usable when the linker finds libopenblas.so (Debian: libopenblas-dev).
HAVE_OPENBLAS := $(shell printf 'int main(void){return 0;}' | $${CC:-cc} -x c - -lopenblas -o /dev/null 2>/dev/null && echo yes)
BLAS_TAGS := $(if $(HAVE_OPENBLAS),openblas,)

.PHONY: build build-purego build-openblas test demo bench fuzz fixtures clean

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

test:
	$(GO) vet ./...
	$(GO) test ./...
	@if [ -n "$(HAVE_OPENBLAS)" ]; then \
		echo "OpenBLAS build: numerics tests"; \
		CGO_ENABLED=1 $(GO) test -tags openblas ./internal/blasimpl ./internal/kernels ./internal/gpt2 ./internal/transcoder ./internal/cachebuild ./internal/midcoder; \
	else echo "libopenblas not found: skipped the OpenBLAS build's tests"; fi

demo: build
	./scripts/demo.sh $(BIN)

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
