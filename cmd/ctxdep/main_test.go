package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

const (
	tinyModel  = "../../testdata/tiny-gpt2"
	tinyTC     = "../../testdata/tiny-transcoders"
	tokensNpy  = "../../testdata/tokens/tiny-int64.npy"
	disallowed = "../../testdata/torchfile/disallowed.pt"
)

// ctxdep runs one command line in-process and returns its exit status,
// stdout and stderr.
func ctxdep(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// expectError checks the CLI's error contract (root --help): the exit status, and exactly
// one stderr line starting with "ctxdep: " that contains each of want.
func expectError(t *testing.T, code int, stderr string, wantCode int, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit status %d, want %d (stderr %q)", code, wantCode, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "ctxdep: ") {
		t.Errorf("last stderr line %q does not start with \"ctxdep: \"", last)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("error %q does not mention %q", last, w)
		}
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Errorf("stderr holds a panic trace: %s", stderr)
	}
}

func noShards(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "shard-*"))
	if len(m) > 0 {
		t.Errorf("partial output left in place: %v", m)
	}
}

// version --json names the BLAS backend compiled in and its kernel, both
// present as non-empty strings (a missing key or another type fails).
func TestVersion(t *testing.T) {
	code, out, errs := ctxdep(t, "version", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("version --json: status %d, %v, output %q, stderr %q", code, err, out, errs)
	}
	for _, k := range []string{"blas_backend", "blas_kernel"} {
		if s, ok := v[k].(string); !ok || s == "" {
			t.Errorf("version --json: %q is %#v, want a non-empty string (output %q)", k, v[k], out)
		}
	}
	if b := v["blas_backend"]; (b != "gonum" && b != "openblas") || b != blasimpl.Built {
		t.Errorf("version --json: blas_backend %#v, want %q (gonum or openblas)", b, blasimpl.Built)
	}
}

// The demo path end to end: build a cache with stored acts, inspect it.
func TestCacheBuildAndInspect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	code, out, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1",
		"--tokens", tokensNpy, "--batch-size", "4", "--sequences-per-shard", "4", "--with-acts", "--out", dir)
	if code != 0 {
		t.Fatalf("cache build: status %d, stderr %s", code, errs)
	}
	if !strings.Contains(out, "6 sequences × 16 tokens = 96 tokens") || errs != "" {
		t.Errorf("cache build -q printed %q, stderr %q", out, errs)
	}
	code, out, errs = ctxdep(t, "inspect-cache", dir, "--transcoders", tinyTC, "--json", "-q")
	if code != 0 {
		t.Fatalf("inspect-cache: status %d, stderr %s", code, errs)
	}
	var rep struct {
		Manifest struct {
			Format  string `json:"format"`
			NTokens int    `json:"n_tokens"`
		} `json:"manifest"`
		X struct {
			MeanRowVar float64 `json:"mean_token_variance"`
		} `json:"x"`
		Transcoder struct {
			L0Mean     float64 `json:"l0_mean"`
			NMSE       float64 `json:"nmse"`
			ActsSource string  `json:"acts_source"`
			Live       *int    `json:"live_features"`
		} `json:"transcoder"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect-cache --json is not JSON: %v\n%s", err, out)
	}
	if rep.Manifest.Format != "ctxdep-activation-cache" || rep.Manifest.NTokens != 96 ||
		rep.Transcoder.ActsSource != "stored" || rep.Transcoder.L0Mean <= 0 || rep.Transcoder.Live == nil ||
		rep.X.MeanRowVar < 0.99 || rep.X.MeanRowVar > 1 {
		t.Errorf("inspect-cache report %+v", rep)
	}
	// Another transcoder file (same weights, legacy container, so another
	// hash) is not trusted with the stored acts: x is encoded again.
	code, out2, _ := ctxdep(t, "inspect-cache", dir, "--transcoder", filepath.Join(tinyTC, "legacy", "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"), "--json", "-q")
	if code != 0 || !strings.Contains(out2, `"acts_source":"encoded"`) || !strings.Contains(out2, `"l0_mean":`) {
		t.Errorf("inspect-cache with a re-encoding transcoder: %d %s", code, out2)
	}
}

// inspect-cache's tables show the paths inside the working directory
// relative to it, as the user typed them, and paths outside it unchanged,
// while --json keeps the manifest's absolute provenance paths.
func TestInspectCacheShowsRelativePaths(t *testing.T) {
	t.Chdir("../..") // the repository root, which holds testdata/
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	model := filepath.Join("testdata", "tiny-gpt2")
	tcs := filepath.Join("testdata", "tiny-transcoders")
	tokens := filepath.Join("testdata", "tokens", "tiny-int64.npy")
	code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", model, "--transcoders", tcs, "--layer", "1",
		"--tokens", tokens, "--sequences-per-shard", "4", "--with-acts", "--out", dir)
	if code != 0 {
		t.Fatalf("cache build: status %d, stderr %s", code, errs)
	}
	code, out, errs := ctxdep(t, "inspect-cache", dir, "--transcoders", tcs, "-q")
	if code != 0 {
		t.Fatalf("inspect-cache: status %d, stderr %s", code, errs)
	}
	if strings.Contains(out, wd+string(filepath.Separator)) {
		t.Errorf("inspect-cache printed absolute paths under %s:\n%s", wd, out)
	}
	tcFile := filepath.Join(tcs, "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt")
	for _, want := range []string{
		filepath.Join(model, "model.safetensors") + " (sha256 ",
		"tokens-npy " + tokens + " (sha256 ",
		"stored acts  " + tcFile + " (sha256 ",
		tcFile + " (64 features, acts stored)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect-cache output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(dir, wd+string(filepath.Separator)) && !strings.Contains(out, dir+" (") {
		t.Errorf("inspect-cache output does not show the cache %s outside the working directory as it is:\n%s", dir, out)
	}
	_, js, _ := ctxdep(t, "inspect-cache", dir, "--transcoders", tcs, "-q", "--json")
	if abs, _ := json.Marshal(filepath.Join(wd, model, "model.safetensors")); !strings.Contains(js, string(abs)) {
		t.Errorf("inspect-cache --json lacks the absolute model path %s:\n%s", abs, js)
	}
}

func TestBadInput(t *testing.T) {
	tmp := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A model directory with a truncated safetensors file.
	badModel := filepath.Join(tmp, "bad-model")
	os.MkdirAll(badModel, 0o755)
	cfg, _ := os.ReadFile(filepath.Join(tinyModel, "config.json"))
	st, _ := os.ReadFile(filepath.Join(tinyModel, "model.safetensors"))
	os.WriteFile(filepath.Join(badModel, "config.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(badModel, "model.safetensors"), st[:len(st)/3], 0o644)
	// Token files: ids outside the vocabulary, rows longer than n_ctx, truncated.
	outside := filepath.Join(tmp, "outside.npy")
	npy.WriteInt32(outside, []int32{50256, 1, 2, 50257}, []int{1, 4})
	long := filepath.Join(tmp, "long.npy")
	npy.WriteInt32(long, make([]int32, 40), []int{1, 40})
	goodNpy, _ := os.ReadFile(tokensNpy)
	truncNpy := write("trunc.npy", goodNpy[:len(goodNpy)-10])
	goodPt, _ := os.ReadFile(filepath.Join(tinyTC, "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"))
	truncPt := write("trunc.pt", goodPt[:len(goodPt)/2])

	build := func(out string, extra ...string) []string {
		return append([]string{"cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy, "--out", out}, extra...)
	}
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"unknown flag", []string{"cache", "build", "--frobnicate"}, 2, []string{"frobnicate"}},
		{"missing --out", []string{"cache", "build", "--tokens", tokensNpy}, 2, []string{"--out"}},
		{"inspect without DIR", []string{"inspect-cache"}, 2, []string{"argument"}},
		{"bad dtype", build(filepath.Join(tmp, "o1"), "--dtype", "int8"), 2, []string{"--dtype"}},
		{"missing model dir", []string{"cache", "build", "--model", filepath.Join(tmp, "nope"), "--tokens", tokensNpy, "--out", filepath.Join(tmp, "o2")}, 1, []string{"nope"}},
		{"truncated safetensors", []string{"cache", "build", "--model", badModel, "--tokens", tokensNpy, "--out", filepath.Join(tmp, "o3")}, 1, []string{"model.safetensors"}},
		{"missing token file", build(filepath.Join(tmp, "o4"), "--tokens", filepath.Join(tmp, "none.npy")), 1, []string{"none.npy"}},
		{"truncated npy", build(filepath.Join(tmp, "o5"), "--tokens", truncNpy), 1, []string{"trunc.npy"}},
		{"token outside vocabulary", build(filepath.Join(tmp, "o6"), "--tokens", outside), 1, []string{"50257", "vocabulary"}},
		{"rows longer than n_ctx", build(filepath.Join(tmp, "o7"), "--tokens", long), 1, []string{"40", "context"}},
		{"layer out of range", build(filepath.Join(tmp, "o8"), "--layer", "3"), 2, []string{"--layer 3"}},
		{"truncated transcoder", build(filepath.Join(tmp, "o9"), "--with-acts", "--transcoder", truncPt), 1, []string{"trunc.pt"}},
		{"transcoder of another layer", build(filepath.Join(tmp, "o10"), "--with-acts", "--transcoder", filepath.Join(tinyTC, "final_sparse_autoencoder_gpt2-small_blocks.2.ln2.hook_normalized_64.pt")), 1, []string{"layer 2"}},
		{"disallowed pickle class", build(filepath.Join(tmp, "o11"), "--with-acts", "--transcoder", disallowed), 1, []string{"allow-list"}},
		{"no transcoder for the layer", build(filepath.Join(tmp, "o12"), "--with-acts", "--transcoders", tmp), 1, []string{"blocks.1"}},
		{"not a cache", []string{"inspect-cache", tmp}, 1, []string{"manifest.json"}},
		{"cuda without the build", []string{"--device", "cuda", "version"}, 1, []string{"without CUDA"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := ctxdep(t, c.args...)
			expectError(t, code, errs, c.code, c.want...)
			for i, a := range c.args {
				if a == "--out" {
					noShards(t, c.args[i+1])
				}
			}
		})
	}
}

// An unknown command or subcommand, an unknown help topic and a wrong
// argument count are usage errors (exit status 2, as the root help says),
// printed as one line that carries cobra's suggestion, with no help text
// dumped on stdout; a bare group command still prints its help.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"fitt"}, []string{`"fitt"`, `did you mean "fit"?`, "ctxdep --help"}},
		{"unknown command after a flag", []string{"-q", "cach", "build"}, []string{`"cach"`, `did you mean "cache"?`}},
		{"unknown command, nothing near", []string{"frobnicate"}, []string{`unknown command "frobnicate" for "ctxdep"`}},
		{"unknown subcommand", []string{"cache", "biuld"}, []string{`"biuld"`, `"ctxdep cache"`, `did you mean "build"?`, "ctxdep cache --help"}},
		{"unknown subcommand with flags", []string{"cache", "biuld", "--out", "x"}, []string{`"biuld"`, `did you mean "build"?`}},
		{"unknown command with a subcommand's flag", []string{"fitt", "--out", "x"}, []string{`"fitt"`, `did you mean "fit"?`}},
		{"unknown completion shell", []string{"completion", "bsh"}, []string{`"bsh"`, `"bash"`}},
		{"unknown help topic", []string{"help", "fitt"}, []string{`"fitt"`, `did you mean "fit"?`}},
		{"unknown help subtopic", []string{"help", "cache", "biuld"}, []string{`"biuld"`, `did you mean "build"?`}},
		{"argument to a command that takes none", []string{"version", "extra"}, []string{"takes 0 arguments, got 1"}},
		{"missing argument of a subcommand", []string{"cache", "verify"}, []string{"takes 1 argument, got 0"}},
		{"argument to a completion script", []string{"completion", "bash", "extra"}, []string{`"extra"`, "ctxdep completion bash --help"}},
		{"--layer all", []string{"report", "--layer", "all"}, []string{`--layer "all"`, "--layers 2,3, 0-11 or all"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := ctxdep(t, c.args...)
			expectError(t, code, errs, 2, c.want...)
			if n := strings.Count(errs, "\n"); n != 1 {
				t.Errorf("stderr holds %d lines, want 1: %q", n, errs)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
	for _, args := range [][]string{{}, {"cache"}, {"help", "cache"}} {
		code, out, errs := ctxdep(t, args...)
		if code != 0 || errs != "" || !strings.Contains(out, "Available Commands:") {
			t.Errorf("ctxdep %v: status %d, stderr %q, stdout %q; want its help and status 0", args, code, errs, out)
		}
	}
}

// Ctrl-C (a context cancelled before the build starts) exits 130 and
// leaves no partial shard; TestInterruptedMidBuild interrupts a running one.
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(t.TempDir(), "c")
	var o, e bytes.Buffer
	code := run(ctx, []string{"cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy, "--out", out}, &o, &e)
	if code != 130 || !strings.HasPrefix(e.String(), "ctxdep: interrupted") {
		t.Errorf("exit %d, stderr %q; want 130 and \"ctxdep: interrupted\"", code, e.String())
	}
	noShards(t, out)
}

// Ctrl-C in the middle of a build, once shards are on disk: exit status
// 130 and "ctxdep: interrupted"; the directory holds only complete shards,
// each listed with its hash in a manifest marked incomplete, and no
// temporary file; the same command line then resumes, keeping those
// shards, and leaves the cache an uninterrupted build writes, byte for
// byte.
func TestInterruptedMidBuild(t *testing.T) {
	// 120 shards of 2 rows: each is written, synced and listed in the
	// manifest on its own, which takes a second or two in all.
	const rows, T = 240, 16
	tok := make([]int32, rows*T)
	for i := range tok {
		if i%T == 0 {
			tok[i] = 50256 // BOS
		} else {
			tok[i] = int32(i * 7919 % 50256)
		}
	}
	tokens := filepath.Join(t.TempDir(), "rows.npy")
	if err := npy.WriteInt32(tokens, tok, []int{rows, T}); err != nil {
		t.Fatal(err)
	}
	build := func(out string) []string {
		return []string{"cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokens, "--out", out,
			"--sequences-per-shard", "2", "--batch-size", "2"}
	}
	out := filepath.Join(t.TempDir(), "c")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, build(out), &stdout, &stderr) }()
	// Cancel once a few shards have appeared; never wait unbounded.
	deadline := time.After(30 * time.Second)
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
wait:
	for {
		select {
		case code := <-done:
			t.Fatalf("the build ended (status %d, stderr %q) before 3 shards were seen: it needs more rows", code, stderr.String())
		case <-deadline:
			cancel()
			<-done
			t.Fatal("3 shards did not appear within 30 s")
		case <-poll.C:
			if m, _ := filepath.Glob(filepath.Join(out, "shard-*.safetensors")); len(m) >= 3 {
				cancel()
				break wait
			}
		}
	}
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the build did not stop within 30 s of the interrupt")
	}
	if code != 130 || !strings.HasSuffix(stderr.String(), "\nctxdep: interrupted\n") || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 130, nothing, a note and \"ctxdep: interrupted\"", code, stdout.String(), stderr.String())
	}

	// What the interrupt left: manifest.json and whole shards, no
	// temporary file (atomicfile's .NAME.tmp-XXXXXXXX).
	man, err := actcache.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	all := rows / 2
	// The note before "ctxdep: interrupted" counts them and says the same
	// command resumes from them.
	if want := fmt.Sprintf("ctxdep: %s keeps the %d of %d shards completed before the interrupt: rerun the same command and it resumes from them\nctxdep: interrupted\n", out, len(man.Shards), all); stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	if man.Complete || len(man.Shards) < 3 || len(man.Shards) >= all {
		t.Fatalf("interrupted manifest: complete %v with %d of %d shards; want incomplete with at least 3", man.Complete, len(man.Shards), all)
	}
	t.Logf("interrupted after %d of %d shards", len(man.Shards), all)
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]bool{}
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasPrefix(name, ".") || strings.Contains(name, ".tmp"):
			t.Errorf("temporary file %s left behind", name)
		case name != actcache.ManifestName:
			onDisk[name] = true
		}
	}
	for i, s := range man.Shards {
		b, err := os.ReadFile(filepath.Join(out, s.File))
		if err != nil {
			t.Fatalf("listed shard: %v", err)
		}
		sum := sha256.Sum256(b)
		if s.File != actcache.ShardName(i) || s.FirstRow != 2*i || s.NSequences != 2 || int64(len(b)) != s.Bytes || hex.EncodeToString(sum[:]) != s.SHA256 {
			t.Errorf("shard %d listed as %+v, its file has %d bytes, sha256 %x", i, s, len(b), sum)
		}
		delete(onDisk, s.File)
	}
	if len(onDisk) > 0 {
		t.Errorf("files the manifest does not list: %v", onDisk)
	}
	first, err := os.Stat(filepath.Join(out, actcache.ShardName(0)))
	if err != nil {
		t.Fatal(err)
	}

	// The same command finishes it, keeping the shards already written,
	// into the cache an uninterrupted build writes.
	if code, _, errs := ctxdep(t, build(out)...); code != 0 {
		t.Fatalf("rerun after the interrupt: %d %s", code, errs)
	}
	if again, err := os.Stat(filepath.Join(out, actcache.ShardName(0))); err != nil || !os.SameFile(first, again) {
		t.Errorf("the rerun rewrote shard 0 instead of keeping it (%v)", err)
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if code, _, errs := ctxdep(t, build(ref)...); code != 0 {
		t.Fatalf("uninterrupted build: %d %s", code, errs)
	}
	got, err := actcache.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := actcache.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Manifest.Shards, want.Manifest.Shards) || len(got.Manifest.Shards) != all {
		t.Errorf("the resumed cache lists %d shards, the uninterrupted one %d, or their hashes differ", len(got.Manifest.Shards), len(want.Manifest.Shards))
	}
	for _, s := range want.Manifest.Shards {
		a, errA := os.ReadFile(filepath.Join(out, s.File))
		b, errB := os.ReadFile(filepath.Join(ref, s.File))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs from the uninterrupted build's (%v, %v)", s.File, errA, errB)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != all+1 {
		t.Errorf("the resumed cache holds %d files, want %d shards and manifest.json", len(entries), all)
	}
}

// The default --model lookup finds a checkpoint in the Hugging Face cache.
func TestModelFromHubCache(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("CTXDEP_MODEL", "")
	snap := filepath.Join(home, "hub", "models--openai-community--gpt2", "snapshots", "abc")
	os.MkdirAll(snap, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		abs, _ := filepath.Abs(filepath.Join(tinyModel, f))
		if err := os.Symlink(abs, filepath.Join(snap, f)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "c")
	code, _, errs := ctxdep(t, "cache", "build", "-q", "--layer", "0", "--tokens", tokensNpy, "--out", out)
	if code != 0 {
		t.Fatalf("cache build with the hub-cache model: %d %s", code, errs)
	}
}

// buildCache runs `cache build` of layer 1 into a fresh directory.
func buildCache(t *testing.T, withActs bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache")
	args := []string{"cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--out", dir}
	if withActs {
		args = append(args, "--with-acts")
	}
	if code, _, errs := ctxdep(t, args...); code != 0 {
		t.Fatalf("cache build: %d %s", code, errs)
	}
	return dir
}

func fitArgs(cache, out string, extra ...string) []string {
	return append([]string{"fit", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
		"--batch-size", "2", "--steps-per-epoch", "3", "--train-tokens", "200", "--out", out}, extra...)
}

func TestFit(t *testing.T) {
	cache := buildCache(t, true)
	out := filepath.Join(t.TempDir(), "fit")
	code, stdout, errs := ctxdep(t, fitArgs(cache, out, "--json")...)
	if code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	var hist []struct {
		Epoch    int     `json:"epoch"`
		Loss     float64 `json:"loss"`
		LossNorm float64 `json:"loss_norm"`
		LR       float64 `json:"lr"`
	}
	if err := json.Unmarshal([]byte(stdout), &hist); err != nil || len(hist) != 3 || hist[2].LR != 0 || hist[0].Loss <= 0 {
		t.Fatalf("fit --json printed %q (%v)", stdout, err)
	}
	csvText, _ := os.ReadFile(filepath.Join(out, "history.csv"))
	if lines := strings.Split(strings.TrimSpace(string(csvText)), "\n"); len(lines) != 4 || lines[0] != "epoch,loss,loss_norm,lr" {
		t.Errorf("history.csv = %q", csvText)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoint.safetensors")); err == nil {
		t.Error("the checkpoint of a finished fit was left behind")
	}
	st, err := os.Stat(filepath.Join(out, "midcoder.safetensors"))
	if err != nil || st.Size() < 64*16*4 {
		t.Fatalf("midcoder.safetensors: %v", err)
	}
	// The same fit from the cache without stored acts (x encoded batch by
	// batch) gives the same numbers: stored acts are the encoder's output.
	out2 := filepath.Join(t.TempDir(), "fit")
	code, stdout2, _ := ctxdep(t, fitArgs(buildCache(t, false), out2, "--json")...)
	if code != 0 || stdout2 != stdout {
		t.Errorf("fit from a cache without acts printed %q, want %q", stdout2, stdout)
	}

	before, _ := os.ReadFile(filepath.Join(out, "midcoder.safetensors"))
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"existing output", fitArgs(cache, out), 1, []string{"already holds a finished fit", "choose another --out, or remove " + out}},
		{"resume a finished fit", fitArgs(cache, out, "--resume"), 1, []string{"already complete", "choose another --out or remove " + out}},
		{"bad init", fitArgs(cache, filepath.Join(t.TempDir(), "p"), "--init", "orthogonal"), 2, []string{"--init"}},
		{"zero steps", fitArgs(cache, filepath.Join(t.TempDir(), "z"), "--steps-per-epoch", "0"), 2, []string{"steps per epoch"}},
		{"bad act", fitArgs(cache, filepath.Join(t.TempDir(), "a"), "--act", "tanh"), 2, []string{"--act"}},
		{"other layer", fitArgs(cache, filepath.Join(t.TempDir(), "l"), "--layer", "2"), 2, []string{"layer 1"}},
		{"no cache", []string{"fit", "--out", filepath.Join(t.TempDir(), "n")}, 2, []string{"--cache"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := ctxdep(t, c.args...)
			expectError(t, code, errs, c.code, c.want...)
		})
	}
	if after, _ := os.ReadFile(filepath.Join(out, "midcoder.safetensors")); !bytes.Equal(before, after) {
		t.Error("a failed fit overwrote the finished midcoder")
	}
}

// A cache built from another model is refused.
// otherModel is a copy of the tiny model with one weight changed: another
// model, with another SHA-256.
func otherModel(t *testing.T) string {
	t.Helper()
	other := filepath.Join(t.TempDir(), "model")
	os.MkdirAll(other, 0o755)
	cfg, _ := os.ReadFile(filepath.Join(tinyModel, "config.json"))
	st, _ := os.ReadFile(filepath.Join(tinyModel, "model.safetensors"))
	st[len(st)-1] ^= 1 // another weight value: another model
	os.WriteFile(filepath.Join(other, "config.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(other, "model.safetensors"), st, 0o644)
	return other
}

func TestFitOtherModel(t *testing.T) {
	cache := buildCache(t, false)
	other := otherModel(t)
	args := fitArgs(cache, filepath.Join(t.TempDir(), "f"))
	args[5] = other // --model
	code, _, errs := ctxdep(t, args...)
	expectError(t, code, errs, 1, "built from model")
}

// A loss that blows up stops the fit with an error naming epoch and step
// and writes no midcoder.
func TestFitNonFinite(t *testing.T) {
	cache := buildCache(t, false)
	out := filepath.Join(t.TempDir(), "fit")
	code, _, errs := ctxdep(t, fitArgs(cache, out, "--lr", "1e30", "--weight-decay", "0")...)
	expectError(t, code, errs, 1, "loss became", "epoch 0, step", "no checkpoint")
	if _, err := os.Stat(filepath.Join(out, "midcoder.safetensors")); err == nil {
		t.Error("a failed fit wrote midcoder.safetensors")
	}
}

// --resume refuses a checkpoint written under other settings, and leaves it.
func TestFitResumeOtherSettings(t *testing.T) {
	cache := buildCache(t, false)
	out := t.TempDir()
	p := midcoder.NewParams(64, 16)
	mlp := &midcoder.MLP{C: 16, N: 64}
	tr := midcoder.NewTrainer(mlp, p, midcoder.NewAdamW(p, 0), 1)
	ckpt := filepath.Join(out, "checkpoint.safetensors")
	if err := midcoder.SaveCheckpoint(ckpt, tr, &midcoder.State{Epoch: 1}, midcoder.Meta{}, "some other key"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(ckpt)
	code, _, errs := ctxdep(t, fitArgs(cache, out, "--resume")...)
	expectError(t, code, errs, 1, "other settings")
	if after, _ := os.ReadFile(ckpt); !bytes.Equal(before, after) {
		t.Error("the checkpoint changed")
	}
	code, _, errs = ctxdep(t, fitArgs(cache, filepath.Join(t.TempDir(), "empty"), "--resume")...)
	expectError(t, code, errs, 1, "no checkpoint.safetensors")
}

// writeCorpus writes n short JSON-lines documents.
func writeCorpus(t *testing.T, n int) string {
	t.Helper()
	words := strings.Fields("the quick brown fox jumps over a lazy dog while transcoder features fire in context")
	var b strings.Builder
	for i := 0; i < n; i++ {
		doc := make([]string, 5+i%37)
		for j := range doc {
			doc[j] = words[(i*7+j*3)%len(words)]
		}
		fmt.Fprintf(&b, "{\"text\": %q}\n", strings.Join(doc, " ")+".")
	}
	p := filepath.Join(t.TempDir(), "docs.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// `cache build --data` caches exactly the rows `tokenize` writes for the
// same corpus and flags.
func TestTextInputMatchesTokenize(t *testing.T) {
	corpus := writeCorpus(t, 2500)
	rows := filepath.Join(t.TempDir(), "rows.npy")
	code, _, errs := ctxdep(t, "tokenize", "-q", "--data", corpus, "--max-length", "16", "--out", rows)
	if code != 0 {
		t.Fatalf("tokenize: %d %s", code, errs)
	}
	want, shape, err := npy.ReadInt32(rows)
	if err != nil || shape[1] != 16 || shape[0] < 10 {
		t.Fatalf("tokenize wrote %v, %v", shape, err)
	}
	for r := 0; r < shape[0]; r++ {
		if want[r*16] != 50256 {
			t.Fatalf("row %d does not start with BOS: %v", r, want[r*16:r*16+16])
		}
	}
	dir := filepath.Join(t.TempDir(), "c")
	code, _, errs = ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "0", "--data", corpus,
		"--max-length", "16", "--n-tokens", "150", "--sequences-per-shard", "4", "--out", dir)
	if code != 0 {
		t.Fatalf("cache build --data: %d %s", code, errs)
	}
	c, got := cachedTokens(t, dir)
	if len(got) != 10*16 || fmt.Sprint(got) != fmt.Sprint(want[:len(got)]) {
		t.Errorf("cache build --data cached %d tokens that differ from tokenize's rows", len(got))
	}
	if c.Manifest.Data.Kind != "text" || c.Manifest.Data.Settings["shuffle_buffer"] != "10000" || c.Manifest.Data.Counts["documents"] == 0 {
		t.Errorf("manifest data %+v", c.Manifest.Data)
	}
	// --n-tokens is a cap (TestAskingForMoreThanTheInputHolds).
	code, _, errs = ctxdep(t, "cache", "build", "--model", tinyModel, "--layer", "0", "--data", corpus, "--max-length", "16",
		"--n-tokens", "100000000", "--out", filepath.Join(t.TempDir(), "y"))
	if code != 0 || !strings.Contains(errs, "caching all of them") {
		t.Errorf("cache build --data --n-tokens beyond the corpus: %d %s", code, errs)
	}
	code, _, errs = ctxdep(t, "tokenize", "--data", filepath.Join(t.TempDir(), "missing.jsonl"), "--out", rows)
	expectError(t, code, errs, 1, "missing.jsonl")
}

// `fit --data` (x and y computed on the fly, overlapped with training)
// gives exactly the fit from a cache of the same rows.
func TestFitFromTextEqualsFromCache(t *testing.T) {
	corpus := writeCorpus(t, 2500)
	common := []string{"-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "0", "--max-length", "16"}
	cache := filepath.Join(t.TempDir(), "c")
	if code, _, errs := ctxdep(t, append([]string{"cache", "build", "--data", corpus, "--n-tokens", "288", "--out", cache}, common...)...); code != 0 {
		t.Fatalf("cache build: %s", errs)
	}
	fitFlags := []string{"fit", "--batch-size", "2", "--steps-per-epoch", "3", "--train-tokens", "200", "--json"}
	code, fromCache, errs := ctxdep(t, append(append(fitFlags, "--cache", cache, "--out", filepath.Join(t.TempDir(), "a")), common...)...)
	if code != 0 {
		t.Fatalf("fit --cache: %s", errs)
	}
	outB := filepath.Join(t.TempDir(), "b")
	code, fromText, errs := ctxdep(t, append(append(fitFlags, "--data", corpus, "--out", outB), common...)...)
	if code != 0 {
		t.Fatalf("fit --data: %s", errs)
	}
	if fromText != fromCache {
		t.Errorf("fit --data printed %s, fit --cache %s", fromText, fromCache)
	}
	_, meta, err := midcoder.Load(filepath.Join(outB, "midcoder.safetensors"))
	if err != nil || !strings.HasPrefix(meta.Provenance.DataKind, "text") || meta.Config.ContextLength != 16 {
		t.Errorf("fit --data metadata %+v, %v", meta, err)
	}
}

// pinv-baseline writes the baseline in fit's layout, reports its --json
// keys, and fit --init pinv starts from it.
func TestPinvBaseline(t *testing.T) {
	cache := buildCache(t, true)
	out := filepath.Join(t.TempDir(), "pinv.safetensors")
	code, stdout, errs := ctxdep(t, "pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("pinv-baseline: %d %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json: %v in %q", err, stdout)
	}
	for _, k := range []string{"rank", "rtol", "sigma_max", "loss", "loss_norm"} {
		if _, ok := res[k]; !ok {
			t.Errorf("--json has no %q: %s", k, stdout)
		}
	}
	if res["rank"].(float64) != 15 {
		t.Errorf("rank %v, want 15 (16 less the centring's null direction)", res["rank"])
	}
	p, meta, err := midcoder.Load(out)
	if err != nil || meta.Method != "pinv" || meta.Layer != 1 || p.F != 64 || p.BMid[0] != 0 {
		t.Fatalf("pinv file: %+v, %v", meta, err)
	}
	// torch.linalg.pinv in float64 (testdata/gen/gen_pinv.py).
	g := testutil.Golden(t, "../../testdata/golden/pinv.safetensors")
	testutil.Close(t, "W_mid", p.WMid, g["layer1.W_mid_f64"], 1e-5, 1e-5)
	fitOut := filepath.Join(t.TempDir(), "fit")
	if code, _, errs := ctxdep(t, fitArgs(cache, fitOut, "--init", "pinv")...); code != 0 {
		t.Fatalf("fit --init pinv: %d %s", code, errs)
	}
	code, _, errs = ctxdep(t, "pinv-baseline", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache, "--layer", "2", "--out", out)
	expectError(t, code, errs, 2, "layer 1")
}

// evaluate's cross-entropies equal PyTorch's on the golden rows
// (testdata/gen/gen_fixtures.py: clean, transcoder reconstruction spliced
// into blocks.1.hook_mlp_out, zero ablation; float64 reference), and a
// midcoder of another layer is refused.
func TestEvaluateMatchesPyTorch(t *testing.T) {
	const hooks = "../../testdata/golden/gpt2_hooks.safetensors"
	f, err := safetensors.Open(hooks)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.Int32("tokens")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	rows := filepath.Join(t.TempDir(), "golden.npy")
	if err := npy.WriteInt32(rows, tok, []int{2, 16}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "c")
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", rows, "--out", cache); code != 0 {
		t.Fatalf("cache build: %s", errs)
	}
	pinv := filepath.Join(t.TempDir(), "pinv.safetensors")
	if code, _, errs := ctxdep(t, "pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache, "--out", pinv); code != 0 {
		t.Fatalf("pinv-baseline: %s", errs)
	}
	code, stdout, errs := ctxdep(t, "evaluate", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache, "--midcoder", pinv, "--json")
	if code != 0 {
		t.Fatalf("evaluate: %d %s", code, errs)
	}
	var res struct {
		CEClean        float64 `json:"ce_clean"`
		CETranscoder   float64 `json:"ce_transcoder"`
		CEZeroAblation float64 `json:"ce_zero_ablation"`
		Midcoders      []struct {
			File string  `json:"file"`
			CE   float64 `json:"ce"`
			MSE  float64 `json:"mse"`
			NMSE float64 `json:"nmse"`
		} `json:"midcoders"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json: %v: %s", err, stdout)
	}
	g := testutil.Golden(t, hooks)
	mean := func(v []float32) float32 {
		var s float64
		for _, x := range v {
			s += float64(x)
		}
		return float32(s / float64(len(v)))
	}
	got := []float32{float32(res.CEClean), float32(res.CETranscoder), float32(res.CEZeroAblation)}
	want := []float32{mean(g["ce"]), mean(g["ce_splice.1"]), mean(g["ce_zero.1"])}
	testutil.Close(t, "ce clean, transcoder, zero", got, want, 1e-5, 1e-5)
	if len(res.Midcoders) != 1 || res.Midcoders[0].File != pinv || !(res.Midcoders[0].NMSE > 0) {
		t.Errorf("midcoders %+v", res.Midcoders)
	}
	// A midcoder fitted on another layer is refused.
	cache2 := filepath.Join(t.TempDir(), "c2")
	ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "2", "--tokens", rows, "--out", cache2)
	code, _, errs = ctxdep(t, "evaluate", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache2, "--midcoder", pinv)
	expectError(t, code, errs, 1, "is for layer 1")
}

// $CTXDEP_CPUPROFILE writes a CPU profile of the run (gzip, pprof's
// format); a path that cannot be created is a warning and no profile.
func TestStartProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	var errs strings.Builder
	stop := startProfile(path, &errs)
	if code, _, e := ctxdep(t, "version"); code != 0 {
		t.Fatalf("version: %d %s", code, e)
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b || errs.Len() != 0 {
		t.Errorf("profile: %d bytes, %v, warnings %q; want a gzip file", len(b), err, errs.String())
	}
	startProfile(filepath.Join(t.TempDir(), "no", "such", "dir"), &errs)()
	if !strings.Contains(errs.String(), "no CPU profile") {
		t.Errorf("unwritable path: warnings %q", errs.String())
	}
}

// An empty corpus: cache build and fit name the file, and, having written
// nothing, leave no empty --out behind.
func TestEmptyDataNamedAndNoOutLeft(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	model := []string{"--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "--max-length", "16", "--data", empty}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cache", "build", "-q"}, empty + " holds no rows"},
		{[]string{"fit", "-q", "--batch-size", "2", "--steps-per-epoch", "3", "--train-tokens", "200"}, "--data " + empty + ": the data ended after 0 sequences"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		code, _, errs := ctxdep(t, append(append(c.args, model...), "--out", out)...)
		expectError(t, code, errs, 1, c.want)
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v left %s behind", c.args, out)
		}
	}
}

// A cache without y read with another model than its build's: the error
// is about the model, not advice to rebuild shards that are intact.
func TestStoreYFalseOtherModel(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--store-y=false", "--out", cache); code != 0 {
		t.Fatalf("cache build: %d %s", code, errs)
	}
	other := otherModel(t)
	code, _, errs := ctxdep(t, "inspect-cache", "-q", cache, "--model", other, "--transcoders", tinyTC)
	expectError(t, code, errs, 1, "built from model")
	if strings.Contains(errs, "cache verify") || strings.Contains(errs, "shard-") {
		t.Errorf("the error blames the shards: %s", errs)
	}
}

// removeIfNewAndEmpty removes only what the failed run made and left
// without data: never a path that existed at the start (a dangling
// symlink included), never a directory holding a file.
func TestRemoveIfNewAndEmpty(t *testing.T) {
	failed := errors.New("failed")
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "missing"), link)
	cleanup := removeIfNewAndEmpty(link)
	cleanup(&failed)
	if _, err := os.Lstat(link); err != nil {
		t.Error("a dangling symlink the user had was removed")
	}
	set := filepath.Join(dir, "set")
	cleanup = removeIfNewAndEmpty(set)
	os.MkdirAll(filepath.Join(set, "layer-01"), 0o755)
	os.WriteFile(filepath.Join(set, actcache.LayerSetName), []byte("{}"), 0o644)
	cleanup(&failed)
	if _, err := os.Stat(set); err == nil {
		t.Error("a new set holding only layers.json and empty layer directories was left")
	}
	kept := filepath.Join(dir, "kept")
	cleanup = removeIfNewAndEmpty(kept)
	os.MkdirAll(filepath.Join(kept, "layer-01"), 0o755)
	os.WriteFile(filepath.Join(kept, "layer-01", "shard-00000.safetensors"), []byte("data"), 0o644)
	cleanup(&failed)
	if _, err := os.Stat(filepath.Join(kept, "layer-01", "shard-00000.safetensors")); err != nil {
		t.Error("a new directory holding data was removed")
	}
	var ok error
	cleanup = removeIfNewAndEmpty(filepath.Join(dir, "done"))
	os.Mkdir(filepath.Join(dir, "done"), 0o755)
	cleanup(&ok)
	if _, err := os.Stat(filepath.Join(dir, "done")); err != nil {
		t.Error("a successful run's empty --out was removed")
	}
}

// A layer-set build that fails before its first shard leaves no set
// behind, so the corrected rerun into the same --out goes ahead.
func TestFailedSetBuildDoesNotBlockRerun(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	set := filepath.Join(t.TempDir(), "set")
	args := []string{"cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2", "--out", set}
	code, _, errs := ctxdep(t, append(args, "--data", empty, "--max-length", "16")...)
	expectError(t, code, errs, 1, "holds no rows")
	if code, _, errs := ctxdep(t, append(args, "--tokens", tokensNpy)...); code != 0 {
		t.Fatalf("the rerun with good rows: %d %s", code, errs)
	}
}

// Without --out, fit and pinv-baseline say so (a usage error), even when
// run from inside a cache, where the empty path would name the cache.
func TestNoOutInsideCache(t *testing.T) {
	cache := buildCache(t, false)
	t.Chdir(cache)
	for _, args := range [][]string{
		{"fit", "-q", "--cache", ".", "--model", tinyModel, "--transcoders", tinyTC},
		{"pinv-baseline", "-q", "--layer", "1", "--model", tinyModel, "--transcoders", tinyTC},
	} {
		code, _, errs := ctxdep(t, args...)
		expectError(t, code, errs, 2, "--out")
	}
}

// report --skip-first-position reaches the report: its summary counts the
// tokens past position 0 (6 sequences of 16 tokens: 90) and records the
// flag.
func TestReportSkipFirstPosition(t *testing.T) {
	cache := buildCache(t, true)
	fit := filepath.Join(t.TempDir(), "fit")
	if code, _, errs := ctxdep(t, fitArgs(cache, fit)...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	out := filepath.Join(t.TempDir(), "report")
	if code, _, errs := ctxdep(t, "report", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", filepath.Join(fit, "midcoder.safetensors"), "--effect=false", "--skip-first-position", "--out", out); code != 0 {
		t.Fatalf("report: %d %s", code, errs)
	}
	var s struct {
		Tokens            int64 `json:"tokens"`
		SkipFirstPosition bool  `json:"skip_first_position"`
	}
	raw, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil || json.Unmarshal(raw, &s) != nil || s.Tokens != 90 || !s.SkipFirstPosition {
		t.Errorf("summary.json: %+v (%v)", s, err)
	}
}
