package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
)

// workerArgs is the command line another helper's deploy scripts use for
// worker i of n (an empty shard leaves it to the environment).
func workerArgs(out, shard string, extra ...string) []string {
	args := []string{"--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "-q", "cache", "build",
		"--tokens", tokensNpy, "--out", out, "--sequences-per-shard", "1", "--with-acts"}
	if shard != "" {
		args = append(args, "--shard", shard)
	}
	return append(args, extra...)
}

// clearShardEnv makes the test independent of the environment it runs in
// (a CI job inside a Slurm array or an Indexed Job).
func clearShardEnv(t *testing.T) {
	for _, v := range []string{"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "JOB_COMPLETION_INDEX", "CTXDEP_SHARD_COUNT"} {
		t.Setenv(v, "")
	}
}

// The two-stage workflow end to end: three workers (one from --shard, one
// from a Slurm array's variables, one from an Indexed Job's), merge,
// verify; then fit, inspect-cache, evaluate and report give exactly what they
// give for a single-machine build of the same rows and shard sizes.
func TestShardedCacheEndToEnd(t *testing.T) {
	clearShardEnv(t)
	dir := filepath.Join(t.TempDir(), "sharded")
	if code, out, errs := ctxdep(t, workerArgs(dir, "0/3")...); code != 0 || !strings.Contains(out, "worker 0 of 3") || !strings.Contains(out, "ctxdep cache merge") {
		t.Fatalf("worker 0: %d %q %s", code, out, errs)
	}
	// Merging before every worker is done names the missing ones.
	code, _, errs := ctxdep(t, "cache", "merge", dir)
	expectError(t, code, errs, 1, "worker 1 of 3 has not run", "--shard 1/3", "workers to rerun: 1, 2")
	if _, err := os.Stat(filepath.Join(dir, actcache.ManifestName)); err == nil {
		t.Fatal("a failed merge wrote manifest.json")
	}
	t.Setenv("SLURM_ARRAY_TASK_ID", "2")
	t.Setenv("SLURM_ARRAY_TASK_MIN", "1")
	t.Setenv("SLURM_ARRAY_TASK_MAX", "3")
	t.Setenv("SLURM_ARRAY_TASK_COUNT", "3")
	if code, out, errs := ctxdep(t, workerArgs(dir, "")...); code != 0 || !strings.Contains(out, "worker 1 of 3") {
		t.Fatalf("Slurm worker: %d %q %s", code, out, errs)
	}
	clearShardEnv(t)
	t.Setenv("JOB_COMPLETION_INDEX", "2")
	t.Setenv("CTXDEP_SHARD_COUNT", "3")
	code, out, errs := ctxdep(t, append(workerArgs(dir, ""), "--json")...)
	var rep struct {
		Worker struct {
			Index  int    `json:"index"`
			Count  int    `json:"count"`
			Source string `json:"source"`
		} `json:"worker"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Worker.Index != 2 || rep.Worker.Count != 3 || !strings.Contains(rep.Worker.Source, "JOB_COMPLETION_INDEX=2") {
		t.Fatalf("Indexed Job worker: %d %q %s", code, out, errs)
	}
	clearShardEnv(t)

	code, out, errs = ctxdep(t, "cache", "merge", dir)
	if code != 0 || !strings.Contains(out, "merged 3 workers") || !strings.Contains(out, "6 sequences × 16 tokens = 96 tokens") {
		t.Fatalf("cache merge: %d %q %s", code, out, errs)
	}
	code, out, errs = ctxdep(t, "cache", "verify", dir, "--json")
	var chk actcache.Check
	if code != 0 || json.Unmarshal([]byte(out), &chk) != nil || !chk.OK() || !chk.Merged || chk.Workers != 3 || chk.Shards != 6 {
		t.Fatalf("cache verify --json: %d %q %s", code, out, errs)
	}

	// The single-machine build with the same shard boundaries (one row
	// each), so that even per-shard float64 sums run in the same order.
	single := filepath.Join(t.TempDir(), "single")
	if code, _, errs := ctxdep(t, workerArgs(single, "")...); code != 0 {
		t.Fatalf("single-machine build: %s", errs)
	}
	for _, args := range [][]string{
		{"inspect-cache", "--transcoders", tinyTC, "--json", "-q"},
		{"evaluate", "--model", tinyModel, "--transcoders", tinyTC, "--json", "-q", "--cache"},
	} {
		_, want, _ := ctxdep(t, append(args, single)...)
		code, got, errs := ctxdep(t, append(args, dir)...)
		if code != 0 {
			t.Fatalf("%s on the merged cache: %s", args[0], errs)
		}
		if args[0] == "inspect-cache" {
			want, got = dropKeys(t, want), dropKeys(t, got)
		}
		if got != want {
			t.Errorf("%s prints\n%s\non the merged cache, and\n%s\non the single-machine one", args[0], got, want)
		}
	}
	fitA, fitB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	_, wantFit, _ := ctxdep(t, fitArgs(single, fitA, "--json")...)
	code, gotFit, errs := ctxdep(t, fitArgs(dir, fitB, "--json")...)
	if code != 0 || gotFit != wantFit {
		t.Errorf("fit on the merged cache: %d %q %s; on the single-machine one %q", code, gotFit, errs, wantFit)
	}
	// report over the merged cache writes the same feature table.
	var tables []string
	for _, c := range [][2]string{{single, fitA}, {dir, fitA}} {
		out := filepath.Join(t.TempDir(), "report")
		if code, _, errs := ctxdep(t, "report", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", c[0],
			"--midcoder", filepath.Join(c[1], "midcoder.safetensors"), "--out", out); code != 0 {
			t.Fatalf("report on %s: %s", c[0], errs)
		}
		csv, err := os.ReadFile(filepath.Join(out, "features.csv"))
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, string(csv))
	}
	if tables[0] != tables[1] {
		t.Error("report's features.csv differs between the merged and the single-machine cache")
	}
}

// dropKeys removes from inspect-cache's JSON what differs between a merged
// and a single-machine cache by construction: the directory, its size and
// the manifest (shard files and the workers field).
func dropKeys(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	delete(m, "dir")
	delete(m, "size_bytes")
	delete(m, "manifest")
	b, _ := json.Marshal(m)
	return string(b)
}

// Damage and mistakes in a sharded build: verify and merge name the shard
// and the worker to rerun, exit 1 and overwrite nothing; rerunning the
// worker repairs it.
func TestShardedCacheErrors(t *testing.T) {
	clearShardEnv(t)
	dir := filepath.Join(t.TempDir(), "c")
	for i := range 3 {
		if code, _, errs := ctxdep(t, workerArgs(dir, fmt.Sprintf("%d/3", i))...); code != 0 {
			t.Fatalf("worker %d: %s", i, errs)
		}
	}
	if code, _, errs := ctxdep(t, "cache", "merge", "-q", dir); code != 0 {
		t.Fatalf("merge: %s", errs)
	}
	manifest, _ := os.ReadFile(filepath.Join(dir, actcache.ManifestName))

	// A flipped byte in one shard, a truncated other one.
	flip := filepath.Join(dir, actcache.WorkerShardName(1, 3, 1))
	b, _ := os.ReadFile(flip)
	b[len(b)/2] ^= 1
	os.WriteFile(flip, b, 0o644)
	trunc := filepath.Join(dir, actcache.WorkerShardName(2, 3, 0))
	b, _ = os.ReadFile(trunc)
	os.WriteFile(trunc, b[:len(b)-7], 0o644)
	code, out, errs := ctxdep(t, "cache", "verify", dir, "--json", "-q")
	expectError(t, code, errs, 1, "2 problem(s)", "rerun worker(s) 1, 2 of 3")
	var chk actcache.Check
	if err := json.Unmarshal([]byte(out), &chk); err != nil || !reflect.DeepEqual(chk.Rerun, []int{1, 2}) || len(chk.Problems) != 2 ||
		chk.Problems[0].File != filepath.Base(flip) || chk.Problems[1].Kind != actcache.ProblemCorruptShard {
		t.Fatalf("verify --json: %v %s", err, out)
	}
	code, out, errs = ctxdep(t, "cache", "verify", dir)
	if code != 1 || !strings.Contains(out, "--shard 1/3, --shard 2/3") || !strings.Contains(out, "truncated") {
		t.Errorf("verify: %d %q %s", code, out, errs)
	}
	code, _, errs = ctxdep(t, "cache", "merge", "-q", dir)
	expectError(t, code, errs, 1, filepath.Base(flip), "worker 1 of 3", "--shard 1/3", "nothing was written")
	if after, _ := os.ReadFile(filepath.Join(dir, actcache.ManifestName)); string(after) != string(manifest) {
		t.Error("a failed merge changed manifest.json")
	}
	// Rerunning the two workers rewrites the damaged shards; merge is then
	// satisfied again and leaves the identical manifest as it is.
	for _, s := range []string{"1/3", "2/3"} {
		if code, _, errs := ctxdep(t, workerArgs(dir, s)...); code != 0 {
			t.Fatalf("rerun %s: %s", s, errs)
		}
	}
	if code, _, errs := ctxdep(t, "cache", "verify", "-q", dir); code != 0 {
		t.Fatalf("verify after the reruns: %s", errs)
	}
	if code, _, errs := ctxdep(t, "cache", "merge", "-q", dir); code != 0 {
		t.Fatalf("merge after the reruns: %s", errs)
	}

	// Mistakes: another worker count, another layer, another token file.
	code, _, errs = ctxdep(t, workerArgs(dir, "1/4")...)
	expectError(t, code, errs, 1, "3 workers", "worker count cannot change", "--shard 1/3")
	// A worker run unlike its sibling is refused before any work.
	other := filepath.Join(t.TempDir(), "o")
	ctxdep(t, workerArgs(other, "0/2")...)
	code, _, errs = ctxdep(t, append(workerArgs(other, "1/2"), "--layer", "2")...)
	expectError(t, code, errs, 1, "worker 1 of 2", "than worker 0", "this run's layer 2, not 1", "rerun with worker 0's flags")
	if _, err := os.Stat(filepath.Join(other, actcache.WorkerManifestName(1, 2))); err == nil {
		t.Error("the refused worker wrote its manifest")
	}
	// Files of such a worker copied in: merge and verify name it, and
	// say that its files go before its rerun.
	odd := filepath.Join(t.TempDir(), "odd")
	ctxdep(t, append(workerArgs(odd, "1/2"), "--layer", "2")...)
	for _, name := range []string{actcache.WorkerManifestName(1, 2), actcache.WorkerShardName(1, 2, 0)} {
		b, err := os.ReadFile(filepath.Join(odd, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(other, name), b, 0o644)
	}
	code, _, errs = ctxdep(t, "cache", "merge", other)
	expectError(t, code, errs, 1, "worker 1 of 2", "layer 2, not 1", "rerun it with the same flags")
	code, _, errs = ctxdep(t, "cache", "verify", "-q", other)
	expectError(t, code, errs, 1, "problem(s)", "mend worker(s) 1 of 2", "remove the files of worker(s) 1 first")
	tok := filepath.Join(t.TempDir(), "o2")
	ctxdep(t, workerArgs(tok, "0/2")...)
	code, _, errs = ctxdep(t, append(workerArgs(tok, "1/2"), "--tokens", "../../testdata/tokens/tiny-int32.npy")...)
	expectError(t, code, errs, 1, "worker 1 of 2", "token file sha256")
	code, _, errs = ctxdep(t, "inspect-cache", tok)
	expectError(t, code, errs, 1, "cache merge")
	// A missing shard is counted as missing, not as re-hashed.
	os.Remove(filepath.Join(dir, actcache.WorkerShardName(0, 3, 1)))
	code, out, _ = ctxdep(t, "cache", "verify", "-q", dir)
	if code != 1 || !strings.Contains(out, "5 shards re-hashed, 1 missing") {
		t.Errorf("verify with a shard removed: %d %q", code, out)
	}
	code, _, errs = ctxdep(t, "cache", "merge", t.TempDir())
	expectError(t, code, errs, 1, "no worker manifests")
	code, _, errs = ctxdep(t, "cache", "verify", t.TempDir())
	expectError(t, code, errs, 1, "not an activation cache")
}

// Bad --shard values and environments are usage errors (exit 2) that say
// where the value came from; nothing is written.
func TestShardUsageErrors(t *testing.T) {
	clearShardEnv(t)
	out := filepath.Join(t.TempDir(), "c")
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"index not below count", nil, workerArgs(out, "3/3"), []string{"index 3", "--shard 3/3", "0..2"}},
		{"zero count", nil, workerArgs(out, "0/0"), []string{"worker count 0"}},
		{"not a number", nil, workerArgs(out, "a/3"), []string{"--shard a/3", "not a non-negative integer"}},
		{"negative", nil, workerArgs(out, "-1/3"), []string{"not a non-negative integer"}},
		{"bare index without count", nil, workerArgs(out, "1"), []string{"needs the worker count"}},
		{"count disagrees", nil, workerArgs(out, "1/3", "--shard-count", "4"), []string{"--shard-count 4 disagrees"}},
		{"too many workers", nil, workerArgs(out, "0/7"), []string{"7 workers", "6 rows", "at most 6"}},
		{"count without index", nil, workerArgs(out, "", "--shard-count", "2"), []string{"needs a worker index"}},
		{"index without count (k8s)", map[string]string{"JOB_COMPLETION_INDEX": "1"}, workerArgs(out, ""), []string{"JOB_COMPLETION_INDEX=1", "--shard-count"}},
		{"bad Slurm id", map[string]string{"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"}, workerArgs(out, ""), []string{"$SLURM_ARRAY_TASK_ID"}},
		{"Slurm array with a step", map[string]string{"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8", "SLURM_ARRAY_TASK_COUNT": "3"}, workerArgs(out, ""), []string{"consecutive", "--array=0-2"}},
		{"one-task Slurm array rerun without the count", map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "1"},
			workerArgs(out, ""), []string{"one-task Slurm array", "rerun task 3", "CTXDEP_SHARD_COUNT", "--shard none"}},
		{"sharded --data", map[string]string{"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"},
			[]string{"--model", tinyModel, "cache", "build", "--data", "x.jsonl", "--n-tokens", "100", "--out", out},
			[]string{"worker 0 of 2", "SLURM_ARRAY_TASK_ID=0", "ctxdep tokenize", "--shard none"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, errs := ctxdep(t, c.args...)
			expectError(t, code, errs, 2, c.want...)
			if _, err := os.Stat(out); err == nil {
				t.Error("the output directory was created")
			}
		})
	}
	// --shard none builds on this machine alone, whatever the environment.
	t.Setenv("SLURM_ARRAY_TASK_ID", "1")
	t.Setenv("SLURM_ARRAY_TASK_COUNT", "4")
	if code, stdout, errs := ctxdep(t, workerArgs(out, "none")...); code != 0 || !strings.HasPrefix(stdout, "cache ") {
		t.Fatalf("--shard none: %d %q %s", code, stdout, errs)
	}
	if _, err := actcache.Open(out); err != nil {
		t.Errorf("--shard none did not build a single-machine cache: %v", err)
	}
}

// cache plan prints the estimates its --help defines; bytes per token are 2·C·4+4 and
// 2·C·2+4 (C = 16 in the tiny model).
func TestCachePlan(t *testing.T) {
	code, out, errs := ctxdep(t, "--model", tinyModel, "-q", "cache", "plan", "--n-tokens", "1000", "--layer", "0", "--layer", "2",
		"--dtype", "float32,float16", "--workers", "3", "--json")
	if code != 0 {
		t.Fatalf("cache plan: %d %s", code, errs)
	}
	var res planResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v: %s", err, out)
	}
	// 1000 tokens in rows of 32 (the tiny model's context): 32 rows, 11 per worker at most.
	if res.Rows != 32 || res.Tokens != 1024 || res.ContextLength != 32 || res.RowsPerWorker != 11 || len(res.Plans) != 4 {
		t.Fatalf("plan %+v", res)
	}
	for _, p := range res.Plans {
		want := int64(2*16*4 + 4)
		if p.DType == "float16" {
			want = 2*16*2 + 4
		}
		if p.BytesPerToken != want || p.Bytes != 1024*want || p.Shards != 3 || !(p.TokensPerSecond > 0) || !(p.SecondsPerWorker > 0) {
			t.Errorf("plan line %+v", p)
		}
	}
	// The default --layer 8 is beyond the tiny model's 3 layers.
	code, _, errs = ctxdep(t, "--model", tinyModel, "cache", "plan", "--n-tokens", "1000")
	expectError(t, code, errs, 2, "--layer 8")
	code, out, errs = ctxdep(t, "--model", tinyModel, "cache", "plan", "--n-tokens", "1000", "--layer", "1")
	if code != 0 || !strings.Contains(out, "bytes/token") || !strings.Contains(out, "time per worker") {
		t.Errorf("cache plan: %d %q %s", code, out, errs)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cache", "plan"}, "--n-tokens"},
		{[]string{"cache", "plan", "--n-tokens", "10", "--dtype", "int8"}, "--dtype"},
		{[]string{"cache", "plan", "--n-tokens", "10", "--workers", "0"}, "--workers"},
		{[]string{"--model", tinyModel, "cache", "plan", "--n-tokens", "64", "--layer", "1", "--workers", "3"}, "at most 2"},
	} {
		code, _, errs := ctxdep(t, c.args...)
		expectError(t, code, errs, 2, c.want)
	}
}
