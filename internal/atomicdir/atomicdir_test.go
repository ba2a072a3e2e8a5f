package atomicdir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// spec replaces a directory that holds nothing but files named out-*.
var spec = Spec{What: "thing", Replaceable: func(dir string) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "out-") {
			return errors.New("holds " + e.Name())
		}
	}
	return nil
}}

func fillWith(files ...string) func(string) error {
	return func(tmp string) error {
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(tmp, f), []byte(f), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// Write makes a new directory (and its parents), replaces an earlier
// output as a whole (no file of it is left), leaves it as it was when
// fill fails, refuses what is not Replaceable, and leaves nothing beside
// the directory but the lock.
func TestWrite(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "a", "b")
	dir := filepath.Join(parent, "out")
	if err := spec.Write(dir, fillWith("out-1", "out-2")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, dir); !slices.Equal(got, []string{"out-1", "out-2"}) {
		t.Errorf("new directory: %v", got)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
	if err := spec.Write(dir, fillWith("out-3")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, dir); !slices.Equal(got, []string{"out-3"}) {
		t.Errorf("replaced directory: %v", got)
	}

	// fill fails after writing a file: dir is as it was.
	err := spec.Write(dir, func(tmp string) error {
		fillWith("out-4")(tmp)
		return errors.New("disk full")
	})
	if err == nil || err.Error() != "disk full" {
		t.Errorf("a failing fill: %v", err)
	}
	if got := testutil.ListDir(t, dir); !slices.Equal(got, []string{"out-3"}) {
		t.Errorf("after a failed write: %v", got)
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"out"}) {
		t.Errorf("beside the directory: %v", got)
	}

	// Not Replaceable: refused by Check and Write, dir untouched.
	os.WriteFile(filepath.Join(dir, "mine.txt"), nil, 0o644)
	for _, err := range []error{spec.Check(dir), spec.Write(dir, fillWith("out-5"))} {
		if err == nil || !strings.Contains(err.Error(), "holds mine.txt") {
			t.Errorf("a directory with another file: %v", err)
		}
	}
	if got := testutil.ListDir(t, dir); !slices.Equal(got, []string{"mine.txt", "out-3"}) {
		t.Errorf("the refused directory: %v", got)
	}
	os.Remove(filepath.Join(dir, "mine.txt"))

	// A file in dir's place is refused.
	file := filepath.Join(parent, "file")
	os.WriteFile(file, nil, 0o644)
	if err := spec.Write(file, fillWith("out-1")); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("Write onto a file: %v", err)
	}
	os.Remove(file)

	// What a killed writer left is removed by the next.
	for _, p := range []string{".out.thing-tmp-1", ".out.thing-old-2"} {
		os.Mkdir(filepath.Join(parent, p), 0o700)
	}
	if err := spec.Write(dir, fillWith("out-6")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"out"}) {
		t.Errorf("after a write over a killed one's leftovers: %v", got)
	}
}

// While another writer holds the lock, Check and Write refuse, naming it.
func TestWriteLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	l, err := dirlock.TryLock(dirlock.Beside(dir), dirlock.Options{What: "ctxdep thing"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	for _, err := range []error{spec.Check(dir), spec.Write(dir, fillWith("out-1"))} {
		if err == nil || !strings.Contains(err.Error(), "this process") {
			t.Errorf("while locked: %v", err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused write made %s", dir)
	}
}

// Check finds, before any work, a destination that cannot be written:
// one under a file, and (not as root, whom permissions do not stop) one in
// a read-only directory.
func TestCheckWritable(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, nil, 0o644)
	if err := spec.Check(filepath.Join(file, "sub", "out")); err == nil || !strings.Contains(err.Error(), "cannot write --out") {
		t.Errorf("Check under a file: %v", err)
	}
	if err := spec.Check(filepath.Join(tmp, "new", "out")); err != nil {
		t.Errorf("Check where the parents would be made: %v", err)
	}
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories")
	}
	ro := filepath.Join(tmp, "ro")
	os.Mkdir(ro, 0o555)
	if err := spec.Check(filepath.Join(ro, "out")); err == nil || !strings.Contains(err.Error(), "cannot write --out") {
		t.Errorf("Check in a read-only directory: %v", err)
	}
}
