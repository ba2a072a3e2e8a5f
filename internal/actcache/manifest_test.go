package actcache

import (
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
