package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// The golden case: layers 1 → 2 of the tiny fixtures, top-k 5. The Go
// test exports its inputs (with CTXDEP_WRITE_CONNECTIONS_INPUTS=1) to
// inputs.safetensors; testdata/gen/connections_golden.py computes the
// expected results from them in float64 with numpy.
const (
	connGoldenDir  = "../../testdata/golden/connections"
	connGoldenTopK = "5"
	connWriteEnv   = "CTXDEP_WRITE_CONNECTIONS_INPUTS"
)

// connSet builds the tiny layer set of layers 1 and 2 (96 tokens in 2
// shards), with or without acts.
func connSet(t *testing.T, withActs bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "set")
	args := []string{"cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "4", "--out", dir}
	if withActs {
		args = append(args, "--with-acts")
	}
	if code, _, errs := ctxdep(t, args...); code != 0 {
		t.Fatalf("cache build --layers 1,2: %d %s", code, errs)
	}
	return dir
}

// connInputs reads what the computation consumes from the set: dense acts
// of both layers, layer 2's scale, layer 1's W_dec and layer 2's W_enc.
func connInputs(t *testing.T, set string) map[string][]float32 {
	t.Helper()
	in := map[string][]float32{}
	for _, l := range []int{1, 2} {
		c, err := actcache.Open(actcache.LayerDir(set, l))
		if err != nil {
			t.Fatal(err)
		}
		rd, err := c.NewReader(context.Background(), actcache.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		name := map[int]string{1: "acts_src", 2: "acts_tgt"}[l]
		for {
			b, err := rd.Next(100)
			if err != nil {
				break
			}
			in[name] = append(in[name], b.Acts.Dense(c.Manifest.DSAE)...)
			if l == 2 {
				in["scale"] = append(in["scale"], b.Scale...)
			}
		}
		rd.Close()
	}
	for _, l := range []int{1, 2} {
		path, _, err := transcoder.Find(tinyTC, l)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := transcoder.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if l == 1 {
			in["W_dec"] = tc.WDec
		} else {
			in["W_enc"] = tc.WEnc
		}
	}
	return in
}

var connInputShapes = map[string][]int{"acts_src": {96, 64}, "acts_tgt": {96, 64}, "scale": {96}, "W_dec": {64, 16}, "W_enc": {16, 64}}

func f32Near(a, b []float32, tol float64) (int, bool) {
	if len(a) != len(b) {
		return -1, false
	}
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		if math.IsNaN(x) != math.IsNaN(y) || (!math.IsNaN(y) && math.Abs(x-y) > tol*max(1, math.Abs(y))) {
			return i, false
		}
	}
	return 0, true
}

// ctxdep connections on the tiny set matches the numpy reference
// (testdata/golden/connections/expected.safetensors) computed from the
// inputs it reads, which must be those exported to inputs.safetensors.
func TestConnectionsGolden(t *testing.T) {
	set := connSet(t, true)
	in := connInputs(t, set)
	for name, shape := range connInputShapes {
		n := 1
		for _, d := range shape {
			n *= d
		}
		if len(in[name]) != n {
			t.Fatalf("%s: %d values, want %v", name, len(in[name]), shape)
		}
	}
	inputs := filepath.Join(connGoldenDir, "inputs.safetensors")
	if os.Getenv(connWriteEnv) == "1" {
		var ts []safetensors.Tensor
		for _, name := range []string{"acts_src", "acts_tgt", "scale", "W_dec", "W_enc"} {
			ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: connInputShapes[name], Data: safetensors.Float32Bytes(nil, in[name])})
		}
		if err := os.MkdirAll(connGoldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		md := map[string]string{"source_layer": "1", "target_layer": "2", "top_k": connGoldenTopK,
			"made_by": "go test ./cmd/ctxdep -run TestConnectionsGolden with " + connWriteEnv + "=1"}
		if err := safetensors.WriteFile(inputs, ts, md); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s; now run /usr/bin/python3 testdata/gen/connections_golden.py", inputs)
	}
	f, err := safetensors.Open(inputs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name := range connInputShapes {
		want, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if i, ok := f32Near(in[name], want, 1e-5); !ok {
			t.Errorf("input %s differs from the exported one at %d", name, i)
		}
	}

	out := filepath.Join(t.TempDir(), "conn")
	// A block of 20 targets: 4 passes, the last of 4 targets.
	code, stdout, errs := ctxdep(t, "connections", "-q", "--cache", set, "--layers", "1,2", "--top-k", connGoldenTopK, "--block", "20",
		"--model", tinyModel, "--transcoders", tinyTC, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("connections: %d %s", code, errs)
	}
	var doc struct {
		Summary analysis.ConnSummary `json:"summary"`
		Files   []string             `json:"files"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.Summary.Passes != 4 || doc.Summary.Tokens != 96 || len(doc.Files) != 6 {
		t.Fatalf("--json: %v %+v", err, doc)
	}
	checkConnGolden(t, out)

	// With the memory that a block of 64 targets takes: one pass, the same
	// results.
	out1 := filepath.Join(t.TempDir(), "conn")
	if code, _, errs := ctxdep(t, "connections", "-q", "--cache", set, "--layers", "1,2", "--top-k", connGoldenTopK, "--memory", "1",
		"--transcoders", tinyTC, "--out", out1); code != 0 {
		t.Fatalf("connections --memory 1: %d %s", code, errs)
	}
	checkConnGolden(t, out1)

	// A set without acts: both layers encoded from x, the same results.
	bare := connSet(t, false)
	out2 := filepath.Join(t.TempDir(), "conn")
	code, _, errs = ctxdep(t, "connections", "--cache", bare, "--layers", "1,2", "--top-k", connGoldenTopK, "--block", "7",
		"--model", tinyModel, "--transcoders", tinyTC, "--out", out2)
	if code != 0 || !strings.Contains(errs, "encoding its x") {
		t.Fatalf("connections without acts: %d %s", code, errs)
	}
	checkConnGolden(t, out2)
}

// checkConnGolden compares dir's connections.safetensors with the golden
// expected.safetensors: indices and counts exactly, values to 1e-5.
func checkConnGolden(t *testing.T, dir string) {
	t.Helper()
	got, err := safetensors.Open(filepath.Join(dir, analysis.ConnSafetensors))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, err := safetensors.Open(filepath.Join(connGoldenDir, "expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	for _, name := range []string{"top_v.index", "top_abar.index"} {
		g, err1 := got.Int32(name)
		w, err2 := want.Int32(name)
		if err1 != nil || err2 != nil || !slices.Equal(g, w) {
			t.Errorf("%s: %v %v\n got %v\nwant %v", name, err1, err2, g, w)
		}
	}
	g, err1 := got.Int64("count")
	w, err2 := want.Int64("count")
	if err1 != nil || err2 != nil || !slices.Equal(g, w) {
		t.Errorf("count: %v %v", err1, err2)
	}
	for _, name := range []string{"spearman", "share_topk_v", "abs_abar_sum", "top_v.v", "top_v.abar", "top_abar.v", "top_abar.abar"} {
		g, err1 := got.Float32(name)
		w, err2 := want.Float32(name)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		if i, ok := f32Near(g, w, 1e-5); !ok {
			t.Errorf("%s differs at %d: %g, want %g", name, i, g[max(i, 0)], w[max(i, 0)])
		}
	}
}

// Misuse is a usage error (exit 2) or a clear error, before any pass.
func TestConnectionsErrorsCLI(t *testing.T) {
	set := connSet(t, true)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "conn")
	base := []string{"connections", "-q", "--transcoders", tinyTC}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--layers", "1,2", "--out", out}, 2, "needs --cache"},
		{[]string{"--cache", set, "--out", out}, 2, "needs --layers"},
		{[]string{"--cache", set, "--layers", "1,2"}, 2, "needs --out"},
		{[]string{"--cache", set, "--layers", "2,1", "--out", out}, 2, "L < L′"},
		{[]string{"--cache", set, "--layers", "1", "--out", out}, 2, "two layers"},
		{[]string{"--cache", set, "--layers", "0,2", "--out", out}, 2, "holds layers 1, 2, not 0"},
		{[]string{"--cache", set, "--layers", "1,2", "--layer", "1", "--out", out}, 2, "not --layer"},
		{[]string{"--cache", set, "--layers", "1,2", "--top-k", "0", "--out", out}, 2, "--top-k 0"},
		{[]string{"--cache", set, "--layers", "1,2", "--top-k", "65", "--out", out}, 2, "64 features"},
		{[]string{"--cache", set, "--layers", "1,2", "--out", set}, 1, "activation cache"},
		{[]string{"--cache", set, "--layers", "1,2", "--out", actcache.LayerDir(set, 1)}, 1, "activation cache"},
		{[]string{"--cache", actcache.LayerDir(set, 1), "--layers", "1,2", "--out", out}, 2, "not a layer set"},
	} {
		code, _, errs := ctxdep(t, append(base, c.args...)...)
		expectError(t, code, errs, c.code, c.want)
	}
	// A second run into the same --out needs --force.
	if code, _, errs := ctxdep(t, append(base, "--cache", set, "--layers", "1,2", "--out", out)...); code != 0 {
		t.Fatalf("connections: %d %s", code, errs)
	}
	code, _, errs := ctxdep(t, append(base, "--cache", set, "--layers", "1,2", "--out", out)...)
	expectError(t, code, errs, 1, "--force")
	if code, _, errs := ctxdep(t, append(base, "--cache", set, "--layers", "1,2", "--out", out, "--force")...); code != 0 {
		t.Fatalf("connections --force: %d %s", code, errs)
	}
	code, stdout, _ := ctxdep(t, "connections", "--help")
	for _, want := range []string{"virtual weight", "share_topk_v", "spearman", "--memory", "passes"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
