package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// flagCase is one command line whose numeric flag is out of bounds: it must
// be refused as a usage error, as one line naming what is wrong, before
// the command allocates or writes anything.
type flagCase struct {
	name string
	args []string
	want []string // in the error line
}

// expectUsageError runs c and checks the contract for a bad flag: exit
// status 2, exactly one stderr line, starting "ctxdep: " and naming want,
// no panic, nothing on stdout and nothing at out.
func expectUsageError(t *testing.T, c flagCase, out string) {
	t.Helper()
	code, stdout, errs := ctxdep(t, c.args...)
	expectError(t, code, errs, 2, c.want...)
	if n := strings.Count(errs, "\n"); n != 1 {
		t.Errorf("stderr holds %d lines, want 1: %q", n, errs)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written (%v)", out, err)
	}
}

// The extreme values of issue 18's rows 3 and 4, and their neighbours, on
// every command that takes them. Before the bounds each of these panicked
// (an integer divide by zero in midcoder.Config.Epochs, makeslice), died
// out of memory or of too many threads, grew to 17 GB, ran for ever, or
// exited 0 with a wrong result (an untrained midcoder, a plan of 0
// shards), or exited 1 for what is a usage error.
func TestExtremeNumericFlags(t *testing.T) {
	cache := buildCache(t, false) // layer 1, 6 sequences of 16 tokens
	corpus := writeCorpus(t, 200)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out") // never created
	model := []string{"-q", "--model", tinyModel, "--transcoders", tinyTC}
	fit := func(extra ...string) []string {
		return append(append([]string{"fit", "--cache", cache, "--out", out}, model...), extra...)
	}
	fitData := func(extra ...string) []string {
		return append(append([]string{"fit", "--data", corpus, "--layer", "1", "--max-length", "16", "--out", out}, model...), extra...)
	}
	build := func(extra ...string) []string {
		return append(append([]string{"cache", "build", "--layer", "1", "--tokens", tokensNpy, "--out", out}, model...), extra...)
	}
	buildData := func(extra ...string) []string {
		return append(append([]string{"cache", "build", "--layer", "1", "--data", corpus, "--out", out}, model...), extra...)
	}
	plan := func(extra ...string) []string {
		return append(append([]string{"cache", "plan", "--n-tokens", "1000", "--layer", "1"}, model...), extra...)
	}
	tokenize := func(extra ...string) []string {
		return append([]string{"tokenize", "-q", "--data", corpus, "--out", out}, extra...)
	}
	for _, c := range []flagCase{
		// Row 3: the epoch count's product T·B·steps overflowed.
		{"fit steps per epoch 2^59 (divide by zero)", fit("--steps-per-epoch", "576460752303423488"), []string{"steps per epoch 576460752303423488", "--steps-per-epoch"}},
		{"fit steps per epoch MaxInt64 (0 epochs, untrained midcoder)", fit("--steps-per-epoch", "9223372036854775807"), []string{"--steps-per-epoch"}},
		{"fit train tokens MaxInt64 (10^15 epochs)", fit("--train-tokens", "9223372036854775807"), []string{"train tokens 9223372036854775807", "--train-tokens"}},
		{"fit batch size MaxInt64", fit("--batch-size", "9223372036854775807"), []string{"--batch-size"}},
		// Row 4: sizes.
		{"fit batch size 1e11", fit("--batch-size", "100000000000"), []string{"--batch-size 100000000000", "6 sequences"}},
		{"fit batch size 1e6 on 6 sequences (17 GB)", fit("--batch-size", "1000000"), []string{"--batch-size 1000000", "6 sequences", "at most 6"}},
		{"fit batch larger than the cache", fit("--batch-size", "7"), []string{"--batch-size 7", "at most 6"}},
		{"fit --data batch size 1e11", fitData("--batch-size", "100000000000"), []string{"--batch-size 100000000000", "memory"}},
		{"fit --data rows longer than the context", fitData("--max-length", "64"), []string{"--max-length 64", "context of 32"}},
		{"fit --data max length 1e11", fitData("--max-length", "100000000000"), []string{"--max-length 100000000000"}},
		{"fit --data negative shuffle buffer", fitData("--shuffle-buffer", "-1"), []string{"--shuffle-buffer -1"}},
		{"cache build batch size 1e11", build("--batch-size", "100000000000"), []string{"--batch-size 100000000000", "memory"}},
		{"cache build batch size MaxInt64", build("--batch-size", "9223372036854775807"), []string{"--batch-size 9223372036854775807", "memory"}},
		{"cache build sequences per shard 1e11", build("--sequences-per-shard", "100000000000"), []string{"--sequences-per-shard 100000000000", "memory"}},
		{"cache build threads 100000", append([]string{"--threads", "100000"}, build()...), []string{"--threads 100000", "at most"}},
		{"cache build --data batch size 1e11", buildData("--max-length", "16", "--batch-size", "100000000000"), []string{"--batch-size 100000000000", "memory"}},
		{"cache build --data rows longer than the context", buildData("--max-length", "64"), []string{"--max-length 64", "context of 32"}},
		{"cache build --data max length 1e11", buildData("--max-length", "100000000000"), []string{"--max-length 100000000000"}},
		{"cache plan sample rows 1e11", plan("--sample-rows", "100000000000"), []string{"--sample-rows 100000000000", "memory"}},
		{"cache plan batch size MaxInt64 (0 rows computed)", plan("--batch-size", "9223372036854775807"), []string{"--batch-size 9223372036854775807"}},
		{"cache plan sequences per shard MaxInt64 (0 shards)", plan("--sequences-per-shard", "9223372036854775807"), []string{"--sequences-per-shard 9223372036854775807"}},
		{"cache plan threads 100000", append([]string{"--threads", "100000"}, plan()...), []string{"--threads 100000"}},
		{"tokenize max length 1e11", tokenize("--max-length", "100000000000"), []string{"--max-length 100000000000", "at most"}},
		{"tokenize max length MaxInt64", tokenize("--max-length", "9223372036854775807"), []string{"--max-length 9223372036854775807"}},
		{"tokenize negative shuffle buffer", tokenize("--shuffle-buffer", "-1"), []string{"--shuffle-buffer -1"}},
		{"download negative max files", []string{"download", "owt", "--max-files", "-1"}, []string{"--max-files -1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("HF_HOME", filepath.Join(tmp, "hf")) // download: nothing is fetched
			t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1")
			expectUsageError(t, c, out)
		})
	}
}

// The same mistake exits with the same status, 2, in every command: a
// --layer other than the cache's (fit, evaluate, report and pinv-baseline
// exited 1, inspect-cache 2), and a --layer the model does not have (fit
// with a cache exited 1, cache build 2).
func TestLayerMistakesAreUsageErrors(t *testing.T) {
	cache := buildCache(t, false) // layer 1
	corpus := writeCorpus(t, 50)
	out := filepath.Join(t.TempDir(), "out")
	model := []string{"-q", "--model", tinyModel, "--transcoders", tinyTC}
	with := func(args ...string) []string { return append(args, model...) }
	// A midcoder for report: it is refused before it is read.
	midcoderFile := filepath.Join(t.TempDir(), "midcoder.safetensors")
	for _, layer := range []string{"2", "99", "-1"} {
		for _, c := range []flagCase{
			{"fit", with("fit", "--cache", cache, "--layer", layer, "--out", out), nil},
			{"evaluate", with("evaluate", "--cache", cache, "--layer", layer), nil},
			{"report", with("report", "--cache", cache, "--midcoder", midcoderFile, "--layer", layer, "--out", out), nil},
			{"pinv-baseline", with("pinv-baseline", "--cache", cache, "--layer", layer, "--out", out), nil},
			{"inspect-cache", with("inspect-cache", cache, "--layer", layer), nil},
		} {
			t.Run(c.name+" --layer "+layer+" on a cache of layer 1", func(t *testing.T) {
				c.want = []string{"--layer " + layer, "holds layer 1"}
				expectUsageError(t, c, out)
			})
		}
	}
	for _, c := range []flagCase{
		{"cache build", with("cache", "build", "--layer", "99", "--tokens", tokensNpy, "--out", out), nil},
		{"cache plan", with("cache", "plan", "--n-tokens", "100", "--layer", "99"), nil},
		{"fit --data", with("fit", "--data", corpus, "--max-length", "16", "--layer", "99", "--out", out), nil},
		{"pinv-baseline", with("pinv-baseline", "--layer", "99", "--out", out), nil},
	} {
		t.Run(c.name+" --layer 99 beyond the model", func(t *testing.T) {
			c.want = []string{"--layer 99", "layers 0..2"}
			expectUsageError(t, c, out)
		})
	}
}

// Values at the bounds still run: a fit's batch of exactly the cache's
// sequences, and --threads 0 (all cores).
func TestNumericFlagsAtTheirBounds(t *testing.T) {
	cache := buildCache(t, false)
	out := filepath.Join(t.TempDir(), "fit")
	code, _, errs := ctxdep(t, fitArgs(cache, out, "--batch-size", "6", "--steps-per-epoch", "1", "--train-tokens", "0")...)
	if code != 0 {
		t.Fatalf("fit with a batch of the whole cache: %d %s", code, errs)
	}
	if code, _, errs := ctxdep(t, "--threads", "0", "version"); code != 0 {
		t.Errorf("--threads 0: %d %s", code, errs)
	}
}
