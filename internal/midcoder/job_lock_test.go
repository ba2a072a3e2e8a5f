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
