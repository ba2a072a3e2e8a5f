package midcoder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// Row 9 of issue 18: two fits into one --out. While one runs, a second is
// refused with a message naming the first; a second that passed its
// checks before the first finished is refused when it starts writing,
// instead of silently replacing the first's result.
func TestJobLock(t *testing.T) {
	fx := load(t, false)
	cfg := Config{Layer: 1, ContextLength: 16, BatchSize: 2, StepsPerEpoch: 2, TrainTokens: 100, LR: 1e-3, WeightDecay: 1e-3}
	prov := Provenance{DataKind: "test"}
	newJob := func(dir string, seed uint64) *Job {
		p := NewParams(64, 16)
		p.KaimingUniform(seed)
		tr := NewTrainer(fx.mlp(ReLU), p, NewAdamW(p, cfg.WeightDecay), cfg.BatchSize*16)
		return &Job{Config: cfg, Dir: dir, Key: Key(cfg, prov), Host: tr,
			Meta: Meta{Layer: 1, DModel: 16, DSAE: 64, Method: "fit", Config: cfg, Provenance: prov}}
	}
	run := func(j *Job, st *State, hooks Hooks) error {
		src, err := NewCacheSource(fx.cache, fx.tc, false)
		if err != nil {
			t.Fatal(err)
		}
		b := NewCPUBackend(j.Host, src)
		defer b.Close()
		return j.Run(context.Background(), b, st, hooks)
	}
	dir := filepath.Join(t.TempDir(), "fit")

	// A runs and waits inside its first step while B tries.
	a, b := newJob(dir, 1), newJob(dir, 2)
	stA, err := a.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	stB, err := b.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	inside, proceed := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		once := false
		done <- run(a, stA, Hooks{AfterStep: func(_, _ int, _, _, _ float64) {
			if !once {
				once = true
				close(inside)
				<-proceed
			}
		}})
	}()
	<-inside
	err = run(b, stB, Hooks{})
	if err == nil || !strings.Contains(err.Error(), dir+" is being written by this process (pid") || !strings.Contains(err.Error(), "ctxdep fit") {
		t.Errorf("a second fit while the first runs: %v", err)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirlock.Path(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fit left its lock file: %v", err)
	}

	// B checked the directory before A finished; now it would replace A's
	// result.
	err = run(b, stB, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "already holds "+ResultFile) {
		t.Errorf("a fit that began before the first finished: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, ResultFile)); string(got) != string(want) {
		t.Error("the first fit's result was replaced")
	}
}
