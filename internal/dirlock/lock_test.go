//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package dirlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for a second process: with
// DIRLOCK_TEST_HOLD set it takes that lock, says "locked" and holds it
// until its stdin closes (or it is killed).
func TestMain(m *testing.M) {
	if path := os.Getenv("DIRLOCK_TEST_HOLD"); path != "" {
		l, err := TryLock(path, Options{What: "ctxdep test holder"})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(3)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		l.Release()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holder starts a process that holds the lock at path.
func holder(t *testing.T, path string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DIRLOCK_TEST_HOLD="+path)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("the holder process said %q", line)
	}
	return cmd, in
}

// A second process is refused with a message naming the holder; once the
// holder is killed (its flock goes with it) the lock is taken over with a
// notice that says so.
func TestSecondProcessRefusedThenTakeover(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir)
	cmd, _ := holder(t, path)
	pid := cmd.Process.Pid

	_, err := TryLock(path, Options{What: "ctxdep cache build"})
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Holder == nil || busy.Holder.PID != pid {
		t.Fatalf("TryLock while another process holds it = %v", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{dir + " is being written by", fmt.Sprintf("pid %d on host %s", pid, host), "ctxdep test holder, since ", "wait for it to finish, or use another --out"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if h, held, err := Probe(path); err != nil || !held || h == nil || h.PID != pid {
		t.Errorf("Probe = %+v, %v, %v; want held by pid %d", h, held, err, pid)
	}

	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a killed holder's lock file: %v", err)
	}
	if _, held, err := Probe(path); held || err != nil {
		t.Errorf("Probe after the holder died = held %v, %v", held, err)
	}
	var notices []string
	l, err := TryLock(path, Options{What: "second", Notice: func(s string) { notices = append(notices, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], fmt.Sprintf("taking over the lock left by pid %d on host %s", pid, host)) ||
		!strings.Contains(notices[0], "which is no longer running") {
		t.Errorf("notices %q", notices)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Release left the lock file: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release = %v", err)
	}
}

// A holder that releases normally leaves nothing for the next to take
// over: no notice.
func TestReleaseThenLockQuietly(t *testing.T) {
	path := Path(t.TempDir())
	_, in := holder(t, path)
	in.Close()
	var notices []string
	l, err := Wait(context.Background(), path, Options{Notice: func(s string) { notices = append(notices, s) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if len(notices) != 0 {
		t.Errorf("notices after a clean release: %q", notices)
	}
}

// Two locks in one process exclude each other too; a lock dropped without
// Release is freed by the collector and taken over with a notice.
func TestSameProcess(t *testing.T) {
	path := Path(t.TempDir())
	a, err := TryLock(path, Options{What: "first"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = TryLock(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "this process (pid") {
		t.Errorf("second lock in one process = %v", err)
	}
	a.Release()
	func() {
		if _, err := TryLock(path, Options{What: "abandoned"}); err != nil {
			t.Fatal(err)
		}
	}()
	runtime.GC()
	var notices []string
	b, err := TryLock(path, Options{Notice: func(s string) { notices = append(notices, s) }})
	if err != nil {
		t.Fatalf("lock after an abandoned one: %v", err)
	}
	b.Release()
	if len(notices) != 1 || !strings.Contains(notices[0], "without releasing it") {
		t.Errorf("notices %q", notices)
	}
}

// Many lockers that take and release (and so remove and recreate) the
// lock file concurrently are never inside together.
func TestMutualExclusion(t *testing.T) {
	path := Path(t.TempDir())
	var inside, entered atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				l, err := TryLock(path, Options{Notice: func(s string) { t.Errorf("unexpected notice %q", s) }})
				var busy *BusyError
				if errors.As(err, &busy) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d lockers inside at once", n)
				}
				entered.Add(1)
				time.Sleep(100 * time.Microsecond)
				inside.Add(-1)
				if err := l.Release(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if entered.Load() == 0 {
		t.Error("no locker ever got the lock")
	}
}

// Wait gives up when its context ends, naming what it waited for.
func TestWaitCancelled(t *testing.T) {
	dir := t.TempDir()
	l, err := TryLock(Path(dir), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	called := 0
	_, err = Wait(ctx, Path(dir), Options{}, func(*Holder) { called++ })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), dir) || called != 1 {
		t.Errorf("Wait = %v (waiting called %d times)", err, called)
	}
	// KeepFile leaves an empty lock file behind.
	kept := filepath.Join(dir, "shared.lock")
	k, err := TryLock(kept, Options{KeepFile: true})
	if err != nil {
		t.Fatal(err)
	}
	k.Release()
	if b, err := os.ReadFile(kept); err != nil || len(b) != 0 {
		t.Errorf("KeepFile: %q, %v", b, err)
	}
}
