package midcoder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// A Job writes the result and history.csv and removes its checkpoint; an
// interrupted job leaves a checkpoint from which --resume ends with the
// same files as an uninterrupted job, bit for bit; a directory holding a
// result or a checkpoint is never overwritten without --resume, and a
// complete fit has nothing to resume.
func TestJob(t *testing.T) {
	fx := load(t, false)
	tj := newTestJobs(t, fx)
	newJob := func(dir string) *Job { return tj.job(dir, 7) }
	run := tj.run
	files := func(dir string) map[string]string {
		out := map[string]string{}
		for _, name := range []string{ResultFile, HistoryFile, CheckpointFile} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				out[name] = string(b)
			}
		}
		return out
	}
	ref := newJob(filepath.Join(t.TempDir(), "ref"))
	st, err := ref.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(ref, st, Hooks{}); err != nil {
		t.Fatal(err)
	}
	checkUntrained(t, tj, filepath.Join(ref.Dir, ResultFile))
	want := files(ref.Dir)
	if _, ok := want[CheckpointFile]; ok || len(want) != 2 || !strings.HasPrefix(want[HistoryFile], "epoch,loss,loss_norm,lr\n0,") {
		t.Fatalf("an uninterrupted job left %v", reflect.ValueOf(want).MapKeys())
	}
	if _, err := newJob(ref.Dir).Begin(false); err == nil || !strings.Contains(err.Error(), "already holds a finished fit ("+ResultFile+")") {
		t.Errorf("Begin(a finished fit's directory) = %v", err)
	}
	if _, err := newJob(ref.Dir).Begin(true); err == nil || !strings.Contains(err.Error(), "already complete") {
		t.Errorf("Begin(resume a finished fit) = %v", err)
	}

	dir := filepath.Join(t.TempDir(), "resumed")
	if _, err := newJob(dir).Begin(true); err == nil || !strings.Contains(err.Error(), "has no "+CheckpointFile) {
		t.Errorf("Begin(resume nothing) = %v", err)
	}
	j := newJob(dir)
	st, _ = j.Begin(false)
	stop := errors.New("interrupted")
	err = run(j, st, Hooks{AfterEpoch: func(st *State) error {
		if st.Epoch == 2 {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) {
		t.Fatalf("Run error = %v", err)
	}
	if got := files(dir); len(got) != 1 || got[CheckpointFile] == "" {
		t.Fatalf("an interrupted job left %v", reflect.ValueOf(got).MapKeys())
	}
	if _, err := newJob(dir).Begin(false); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("Begin(an interrupted fit's directory, no resume) = %v", err)
	}
	j = newJob(dir)
	if st, err = j.Begin(true); err != nil || st.Epoch != 1 {
		t.Fatalf("Begin(resume) = %+v, %v", st, err)
	}
	if err := run(j, st, Hooks{}); err != nil {
		t.Fatal(err)
	}
	if got := files(dir); !reflect.DeepEqual(got, want) {
		t.Error("the resumed job's files differ from the uninterrupted job's")
	}
}

// Skips add up, as Source says: Skip(2) then Skip(3) starts where Skip(5)
// does.
func TestCacheSourceSkipsAddUp(t *testing.T) {
	fx := load(t, false)
	first := func(skips ...int64) []float32 {
		s := NewCacheXYSource(fx.cache)
		defer s.Close()
		for _, n := range skips {
			if err := s.Skip(n); err != nil {
				t.Fatal(err)
			}
		}
		_, y, err := s.NextXY(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), y...)
	}
	if !reflect.DeepEqual(first(2, 3), first(5)) || reflect.DeepEqual(first(3), first(5)) {
		t.Error("Skip(2) then Skip(3) does not start at sequence 5")
	}
}

// testJobs makes small fits of the layer-1 fixtures: the same settings,
// each job its own directory and initialisation seed.
type testJobs struct {
	t    *testing.T
	fx   fixture
	cfg  Config
	prov Provenance
}

func newTestJobs(t *testing.T, fx fixture) testJobs {
	return testJobs{t, fx, Config{Layer: 1, ContextLength: 16, BatchSize: 2, StepsPerEpoch: 2, TrainTokens: 100, LR: 1e-3, WeightDecay: 1e-3}, Provenance{DataKind: "test"}}
}

func (tj testJobs) job(dir string, seed uint64) *Job {
	p := NewParams(64, 16)
	p.KaimingUniform(seed)
	tr := NewTrainer(tj.fx.mlp(ReLU), p, NewAdamW(p, tj.cfg.WeightDecay), tj.cfg.BatchSize*16)
	return &Job{Config: tj.cfg, Dir: dir, Key: Key(tj.cfg, tj.prov), Host: tr,
		Meta: Meta{Layer: 1, DModel: 16, DSAE: 64, Method: "fit", Config: tj.cfg, Provenance: tj.prov}}
}

// run runs j from st on the CPU over the cache, from st.Rows on.
func (tj testJobs) run(j *Job, st *State, hooks Hooks) error {
	src, err := NewCacheSource(tj.fx.cache, tj.fx.tc, false)
	if err != nil {
		tj.t.Fatal(err)
	}
	if err := src.Skip(st.Rows); err != nil {
		tj.t.Fatal(err)
	}
	b := NewCPUBackend(j.Host, src)
	defer b.Close()
	return j.Run(context.Background(), b, st, hooks)
}

// checkUntrained checks the result's untrained list against the data: the
// job reads every row of the fixture's cache (8 rows of a 6-row cache), so
// the features it never trained are exactly those that fire on no row.
func checkUntrained(t *testing.T, tj testJobs, path string) {
	t.Helper()
	_, meta, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewCacheSource(tj.fx.cache, tj.fx.tc, false)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fired := map[int]bool{}
	for range tj.fx.cache.Manifest.NSequences / tj.cfg.BatchSize {
		acts, _, err := src.Next(context.Background(), tj.cfg.BatchSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range acts.Indices {
			fired[int(f)] = true
		}
	}
	var want []int
	for f := range meta.DSAE {
		if !fired[f] {
			want = append(want, f)
		}
	}
	if len(want) == 0 || len(fired) == 0 || !slices.Equal(meta.Untrained, want) {
		t.Errorf("untrained %v, want the %d features that never fire %v (%d fire)", meta.Untrained, len(want), want, len(fired))
	}
}
