package cachebuild

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
)

func counter(t int, total int) func([]int32) error {
	next := 0
	return func(dst []int32) error {
		if next == total {
			return io.EOF
		}
		for i := range dst {
			dst[i] = int32(next*t + i)
		}
		next++
		return nil
	}
}

// Reads go forward, skipping rows in between, and the end of the input
// before the rows asked for is an error that says so.
func TestStreamRows(t *testing.T) {
	s := NewStreamRows(counter(3, 5), 3, 4)
	dst := make([]int32, 6)
	if err := s.Read(dst, 1, 2); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 3 || dst[5] != 8 {
		t.Errorf("rows 1..2 = %v", dst)
	}
	if err := s.Read(dst[:3], 3, 1); err != nil || dst[0] != 9 {
		t.Errorf("row 3 = %v, %v", dst[:3], err)
	}
	short := NewStreamRows(counter(3, 2), 3, 4)
	err := short.Read(make([]int32, 9), 0, 3)
	if err == nil || !strings.Contains(err.Error(), "ended after 2 rows") {
		t.Errorf("short input error = %v", err)
	}
}

// rowStream returns the rows of r one at a time, failing with "disk on
// fire" at row failAt (never when failAt < 0), then io.EOF.
func rowStream(r Int32Rows, failAt int) func([]int32) error {
	next := 0
	return func(dst []int32) error {
		switch {
		case next == failAt:
			return errors.New("disk on fire")
		case next == r.NumRows():
			return io.EOF
		}
		r.Read(dst, next, 1)
		next++
		return nil
	}
}

// A build that streams its input to the end, its rows not known in
// advance, holds what a build of the same rows counted in advance holds,
// bit for bit, and its manifest records the rows it found; interrupted
// inside a batch, it resumes to the same; run again once complete, it
// ends with the same cache.
func TestBuildToEnd(t *testing.T) {
	f := load(t)
	acts := withActs(t)
	ref := f.options(filepath.Join(t.TempDir(), "counted"), 1)
	ref.PerShard = 4 // 6 rows: shards of 4 and 2
	acts(0, &ref)
	if _, err := build1(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	want := readJoined(t, ref.Layers[0].Out)
	o := ref
	o.Layers[0].Out = filepath.Join(t.TempDir(), "to-end")
	o.Rows = NewStreamRows(rowStream(f.rows, 5), 16, -1)
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Build error = %v", err)
	}
	m, err := actcache.ReadManifestFile(filepath.Join(o.Layers[0].Out, actcache.ManifestName))
	if err != nil || m.Complete || len(m.Shards) != 1 || !m.Data.ToEnd {
		t.Fatalf("interrupted manifest %+v, %v", m, err)
	}
	// Runs 0 and 1 read the input; run 2 follows a damaged last shard,
	// which it rewrites (the advice every shard error gives). What the
	// input held is counted when a run reads it through, and kept when it
	// does not.
	for run := range 3 {
		read := 0
		next := rowStream(f.rows, -1)
		o.Rows = NewStreamRows(func(dst []int32) error {
			err := next(dst)
			if err == nil {
				read++
			}
			return err
		}, 16, -1)
		o.DataCounts = func() map[string]int64 { return map[string]int64{"rows": int64(read)} }
		if run == 2 {
			b, _ := os.ReadFile(filepath.Join(o.Layers[0].Out, actcache.ShardName(1)))
			b[len(b)-1] ^= 1
			os.WriteFile(filepath.Join(o.Layers[0].Out, actcache.ShardName(1)), b, 0o644)
		}
		m, err = build1(context.Background(), o)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if !m.Complete || !m.Data.ToEnd || m.NSequences != 6 || m.Data.Rows != 6 || m.Data.RowsTaken != 6 || m.NTokens != 96 ||
			len(m.Shards) != 2 || m.Shards[1].NSequences != 2 || m.Data.Counts["rows"] != 6 {
			t.Fatalf("run %d: manifest %+v", run, m)
		}
		if got := readJoined(t, o.Layers[0].Out); !reflect.DeepEqual(got, want) {
			t.Errorf("run %d: %s differ from the build with its rows counted", run, got.differs(want))
		}
	}
	o.DataCounts = nil
	// An empty input is an error.
	o.Layers[0].Out = filepath.Join(t.TempDir(), "empty")
	o.Rows = NewStreamRows(rowStream(Int32Rows{T: 16}, -1), 16, -1)
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no rows") {
		t.Errorf("Build(empty input) = %v", err)
	}
	// Workers split rows counted in advance.
	o.Shard = &Shard{Index: 0, Count: 2}
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "token file first") {
		t.Errorf("Build(sharded, to the end) = %v", err)
	}
}
