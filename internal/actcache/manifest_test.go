package actcache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Worker ranges tile [0, R) in order, and their sizes differ by at most one.
func TestWorkerRangeTiles(t *testing.T) {
	for r := 1; r <= 60; r++ {
		for n := 1; n <= r; n++ {
			next, lo, hi := 0, r, 0
			for i := range n {
				first, k := Worker{Index: i, Count: n, TotalRows: r}.Range()
				if first != next || k < 1 {
					t.Fatalf("Range(%d of %d, %d rows) = [%d, +%d), want to start at %d with rows", i, n, r, first, k, next)
				}
				next += k
				lo, hi = min(lo, k), max(hi, k)
			}
			if next != r || hi-lo > 1 {
				t.Fatalf("%d workers over %d rows end at %d, sizes %d..%d", n, r, next, lo, hi)
			}
		}
	}
}

func TestWorkerNames(t *testing.T) {
	if w, n, ok := ParseWorkerShardName(WorkerShardName(3, 8, 12)); !ok || w != 3 || n != 8 {
		t.Errorf("ParseWorkerShardName(WorkerShardName(3, 8, 12)) = %d, %d, %v", w, n, ok)
	}
	for _, bad := range []string{"shard-00000.safetensors", "w3-of-8-shard-0.safetensors", "w00003-of-00008-shard-00000.safetensors.tmp", "w00003-of-00008-shard-00000"} {
		if _, _, ok := ParseWorkerShardName(bad); ok {
			t.Errorf("ParseWorkerShardName(%q) accepted it", bad)
		}
	}
	if w, n, ok := parseWorkerManifestName(WorkerManifestName(0, 1)); !ok || w != 0 || n != 1 {
		t.Errorf("parseWorkerManifestName(%q) = %d, %d, %v", WorkerManifestName(0, 1), w, n, ok)
	}
	for _, bad := range []string{"worker-00003-of-00003.json", "worker-00000-of-00000.json", ".worker-00000-of-00002.json.tmp-1234abcd", "worker-0-of-2.json"} {
		if _, _, ok := parseWorkerManifestName(bad); ok {
			t.Errorf("parseWorkerManifestName(%q) accepted it", bad)
		}
	}
}

// A merged manifest may list any shard names, but only plain file names
// inside the directory, each once, holding consecutive rows from 0.
func TestMergedManifestCheck(t *testing.T) {
	base := func() *Manifest {
		return &Manifest{Format: Format, Version: Version, Complete: true, Layer: 1, DModel: 16, ContextLength: 4,
			NSequences: 3, NTokens: 12, DType: "float32", Workers: 2, Data: Data{Rows: 3, RowsTaken: 3},
			Shards: []Shard{{File: WorkerShardName(0, 2, 0), NSequences: 1, FirstRow: 0}, {File: WorkerShardName(1, 2, 0), NSequences: 2, FirstRow: 1}}}
	}
	if err := base().check(); err != nil {
		t.Fatalf("check(merged) = %v", err)
	}
	for _, c := range []struct {
		name string
		mod  func(*Manifest)
	}{
		{"parent directory", func(m *Manifest) { m.Shards[1].File = "../w.safetensors" }},
		{"subdirectory", func(m *Manifest) { m.Shards[1].File = "sub/w.safetensors" }},
		{"dot dot", func(m *Manifest) { m.Shards[1].File = ".." }},
		{"not safetensors", func(m *Manifest) { m.Shards[1].File = "manifest.json" }},
		{"listed twice", func(m *Manifest) { m.Shards[1].File = m.Shards[0].File }},
		{"gap", func(m *Manifest) { m.Shards[1].FirstRow = 2 }},
		{"overlap", func(m *Manifest) { m.Shards[1].FirstRow = 0 }},
		{"rows short", func(m *Manifest) { m.NSequences, m.NTokens = 4, 16 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := base()
			c.mod(m)
			dir := t.TempDir()
			if err := writeManifest(dir, m); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ManifestName)) {
				t.Errorf("ReadManifest(%s) = %v, want an error naming the manifest", c.name, err)
			}
		})
	}
	// A single-machine manifest still insists on shard-NNNNN names.
	m := base()
	m.Workers = 0
	if err := m.check(); err == nil {
		t.Error("check accepted worker shard names in a single-machine manifest")
	}
}

// A manifest without a field that every cache manifest has is refused,
// naming the field, instead of reading as its zero value (issue 18: a
// manifest without "layer" read as layer 0).
func TestManifestRequiredFields(t *testing.T) {
	dir := t.TempDir()
	m := &Manifest{Format: Format, Version: Version, Complete: true, Layer: 3, DModel: 16, ContextLength: 4,
		NSequences: 1, NTokens: 4, DType: "float32", Data: Data{Rows: 1, RowsTaken: 1},
		Shards: []Shard{{File: ShardName(0), NSequences: 1}}}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ManifestName)
	for _, field := range requiredFields {
		for _, null := range []bool{false, true} {
			if err := writeManifest(dir, m); err != nil {
				t.Fatal(err)
			}
			editJSON(t, path, func(j map[string]any) {
				if null {
					j[field] = nil
				} else {
					delete(j, field)
				}
			})
			want := `has no "` + field + `"`
			if null {
				want = `has a null "` + field + `"`
			}
			_, err := ReadManifest(dir)
			mustContain(t, "ReadManifest without "+field, err, path, want)
		}
	}
}

// Shard list errors name the entry, its file and the field that is wrong,
// in words, not as a Go struct.
func TestShardListErrors(t *testing.T) {
	base := func() *Manifest {
		return &Manifest{Format: Format, Version: Version, Complete: true, Layer: 1, DModel: 16, ContextLength: 4,
			NSequences: 3, NTokens: 12, DType: "float32", Data: Data{Rows: 3, RowsTaken: 3},
			Shards: []Shard{{File: ShardName(0), NSequences: 1}, {File: ShardName(1), NSequences: 2, FirstRow: 1}}}
	}
	for _, c := range []struct {
		mod  func(*Manifest)
		want string
	}{
		{func(m *Manifest) { m.Shards[1].NSequences = -4 }, `shard entry 1 ("shard-00001.safetensors"): n_sequences is -4; it must be positive`},
		{func(m *Manifest) { m.Shards[1].FirstRow = 7 }, `shard entry 1 ("shard-00001.safetensors"): first_row is 7, but the shards before it end at row 1`},
		{func(m *Manifest) { m.Shards[1].File = "x.safetensors" }, `shard entry 1 ("x.safetensors"): file must be "shard-00001.safetensors"`},
		{func(m *Manifest) { m.Shards[1].Bytes = -1 }, `bytes is -1`},
		{func(m *Manifest) { m.DModel = 0 }, `d_model is 0; it must be positive`},
		{func(m *Manifest) {
			m.Worker = &Worker{Index: 0, Count: 2, TotalRows: 3}
		}, `worker 0 of 2 caches rows [0, 1) of 3, but the manifest says data.first_row 0, data.rows_taken 3, n_sequences 3`},
	} {
		m := base()
		c.mod(m)
		err := m.check()
		mustContain(t, "check", err, c.want)
		if err != nil && strings.Contains(err.Error(), "{") {
			t.Errorf("error %q prints a struct", err)
		}
	}
}

// A directory without a manifest: an empty one (or another tool's) is not
// a cache; one where a build was killed while writing its first shard says
// so and to rerun that build.
func TestReadManifestMissing(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "is not an activation cache") {
		t.Errorf("empty directory: %v", err)
	}
	// No directory, or a file: said as such, not as a directory that
	// holds no cache.
	if _, err := ReadManifest(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "none")+": no such directory") {
		t.Errorf("no directory: %v", err)
	}
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	if _, err := ReadManifest(file); err == nil || !strings.Contains(err.Error(), file+" is a file, not an activation cache") {
		t.Errorf("a file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, ".shard-00000.safetensors.tmp-0123abcd"), []byte("partial"), 0o644)
	_, err := ReadManifest(dir)
	if err == nil || !strings.Contains(err.Error(), "stopped before its first shard was done; rerun that same `ctxdep cache build`") {
		t.Errorf("a killed first shard: %v", err)
	}
}
