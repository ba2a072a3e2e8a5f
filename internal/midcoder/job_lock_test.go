package midcoder

import (
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
	tj := newTestJobs(t, load(t, false))
	newJob, run := tj.job, tj.run
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
	proceed, done := tj.runPaused(a, stA, 0)
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
	if err == nil || !strings.Contains(err.Error(), "already holds a finished fit ("+ResultFile+")") {
		t.Errorf("a fit that began before the first finished: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, ResultFile)); string(got) != string(want) {
		t.Error("the first fit's result was replaced")
	}
}

// A fit removes, under its lock, the temporary files a killed fit left
// while writing a checkpoint, the result or the history, and says so;
// others' files are left alone.
func TestJobRemovesLeftovers(t *testing.T) {
	tj := newTestJobs(t, load(t, false))
	dir := filepath.Join(t.TempDir(), "fit")
	os.MkdirAll(dir, 0o755)
	left := []string{".checkpoint.safetensors.tmp-0123abcd", ".midcoder.safetensors.tmp-89abcdef", ".history.csv.tmp-00000000"}
	keep := []string{".notes.txt.tmp-00000000", "notes.txt"}
	for _, n := range append(left, keep...) {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	j := tj.job(dir, 1)
	var notices []string
	j.Notice = func(s string) { notices = append(notices, s) }
	st, err := j.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := tj.run(j, st, Hooks{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range left {
		if _, err := os.Stat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (%v)", n, err)
		}
	}
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "removed 3 temporary file(s) that a killed fit left") {
		t.Errorf("notices %q", notices)
	}
}

// A fit begun while another runs in its directory is refused at Begin,
// naming the running fit: the running fit's checkpoint is not an
// interrupted fit's, so neither "pass --resume" nor a resume from it.
func TestJobBeginWhileAnotherRuns(t *testing.T) {
	tj := newTestJobs(t, load(t, false))
	if tj.cfg.Epochs() < 2 {
		t.Fatalf("the test job has %d epochs: want 2, for a checkpoint while it runs", tj.cfg.Epochs())
	}
	dir := filepath.Join(t.TempDir(), "fit")
	a := tj.job(dir, 1)
	stA, err := a.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	proceed, done := tj.runPaused(a, stA, 1) // the first epoch's checkpoint is written
	if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); err != nil {
		t.Errorf("no checkpoint while the fit runs its second epoch: %v", err)
	}
	for _, resume := range []bool{false, true} {
		_, err := tj.job(dir, 2).Begin(resume)
		if err == nil || !strings.Contains(err.Error(), dir+" is being written by this process (pid") || strings.Contains(err.Error(), "--resume") {
			t.Errorf("Begin(resume %v) while a fit runs in %s: %v", resume, dir, err)
		}
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// runPaused runs j from st in a goroutine and returns once it is inside
// its first step of epoch, where it waits until proceed is closed; done
// receives Run's error.
func (tj testJobs) runPaused(j *Job, st *State, epoch int) (proceed chan struct{}, done chan error) {
	inside := make(chan struct{})
	proceed, done = make(chan struct{}), make(chan error, 1)
	go func() {
		once := false
		done <- tj.run(j, st, Hooks{AfterStep: func(e, _ int, _, _, _ float64) {
			if e == epoch && !once {
				once = true
				close(inside)
				<-proceed
			}
		}})
	}()
	select {
	case <-inside:
	case err := <-done:
		tj.t.Fatalf("the run ended before its pause in epoch %d: %v", epoch, err)
	}
	return proceed, done
}
