package atomicdir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

// umask is the process's, read once (setting it back at once).
var umask = func() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}()

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
// the directory (the lock file goes at release).
func TestWrite(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "a", "b")
	dir := filepath.Join(parent, "out")
	if err := spec.Write(dir, fillWith("out-1", "out-2")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, dir); !slices.Equal(got, []string{"out-1", "out-2"}) {
		t.Errorf("new directory: %v", got)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o777&^umask {
		t.Errorf("mode %v, want %v (0777 less the umask)", fi.Mode().Perm(), os.FileMode(0o777&^umask))
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

// A symbolic link as the destination is followed: the directory it points
// to is replaced and the link still points to it.
func TestWriteThroughSymlink(t *testing.T) {
	tmp := t.TempDir()
	real, link := filepath.Join(tmp, "real"), filepath.Join(tmp, "link")
	os.Mkdir(real, 0o755)
	os.WriteFile(filepath.Join(real, "out-1"), nil, 0o644)
	os.Symlink(real, link)
	if err := spec.Check(link); err != nil {
		t.Fatal(err)
	}
	if err := spec.Write(link, fillWith("out-2")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, link); !slices.Equal(got, []string{"out-2"}) {
		t.Errorf("through the link: %v", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link is gone: %v", err)
	}
	if got := testutil.ListDir(t, tmp); !slices.Equal(got, []string{"link", "real"}) {
		t.Errorf("beside: %v", got)
	}
}

// A directory inside one that another writer is replacing as a whole is
// refused: that writer would drop what is written there.
func TestWriteInsideBusy(t *testing.T) {
	set := filepath.Join(t.TempDir(), "set")
	l, err := dirlock.TryLock(dirlock.Beside(set), dirlock.Options{What: "ctxdep report"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	inner := filepath.Join(set, "layer-01")
	for _, err := range []error{spec.Check(inner), spec.Write(inner, fillWith("out-1"))} {
		if err == nil || !strings.Contains(err.Error(), "is inside "+set) {
			t.Errorf("inside a directory being written: %v", err)
		}
	}
}

// An earlier output that a killed writer had moved aside, and not
// replaced, is put back by the next writer before it removes leftovers,
// so that a second failure cannot lose it; with dir there, leftovers go.
func TestWriteRecoversMovedAside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	old := filepath.Join(parent, ".out.thing-old-12345678")
	os.Mkdir(old, 0o755)
	os.WriteFile(filepath.Join(old, "out-1"), []byte("earlier"), 0o644)
	err := spec.Write(dir, func(string) error { return errors.New("disk full") })
	if err == nil {
		t.Fatal("a failing fill succeeded")
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"out"}) {
		t.Errorf("after the failed write: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out-1")); string(b) != "earlier" {
		t.Error("the earlier output was not put back")
	}
}

// A mount point cannot be renamed: it is refused before any work, with
// what to give instead (needs root to mount a tmpfs; skipped otherwise).
func TestCheckMountPoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	os.Mkdir(dir, 0o755)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v)", err)
	}
	defer syscall.Unmount(dir, 0)
	if err := spec.Check(dir); err == nil || !strings.Contains(err.Error(), "is a mount point") || !strings.Contains(err.Error(), "give a directory inside it") {
		t.Errorf("Check of a mount point: %v", err)
	}
}

// When the earlier output a killed writer moved aside cannot be put back
// (here: it is a mount point, which rename refuses), Write stops, naming
// where it is, and removes nothing (needs root to mount; skipped
// otherwise).
func TestWriteRecoverFails(t *testing.T) {
	parent := t.TempDir()
	old := filepath.Join(parent, ".out.thing-old-0badc0de")
	os.Mkdir(old, 0o755)
	if err := syscall.Mount("tmpfs", old, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v)", err)
	}
	defer syscall.Unmount(old, 0)
	os.WriteFile(filepath.Join(old, "out-1"), []byte("earlier"), 0o644)
	err := spec.Write(filepath.Join(parent, "out"), fillWith("out-2"))
	if err == nil || !strings.Contains(err.Error(), "is in "+old) {
		t.Errorf("Write with a moved-aside output that cannot be put back: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(old, "out-1")); string(b) != "earlier" {
		t.Error("the moved-aside earlier output was removed")
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{".out.thing-old-0badc0de"}) {
		t.Errorf("beside: %v", got)
	}
}

// A symbolic link whose target a killed writer had moved aside: the
// target is put back (and the link still points to it) rather than the
// write failing on the dangling link.
func TestWriteDanglingSymlink(t *testing.T) {
	tmp := t.TempDir()
	link := filepath.Join(tmp, "link")
	os.Symlink("real", link) // relative, as ln -s writes it
	old := filepath.Join(tmp, ".real.thing-old-12345678")
	os.Mkdir(old, 0o755)
	os.WriteFile(filepath.Join(old, "out-1"), []byte("earlier"), 0o644)
	if err := spec.Check(link); err != nil {
		t.Fatal(err)
	}
	if err := spec.Write(link, func(string) error { return errors.New("disk full") }); err == nil || err.Error() != "disk full" {
		t.Fatalf("a failing fill: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(link, "out-1")); string(b) != "earlier" {
		t.Error("the earlier output was not put back behind the link")
	}
	if err := spec.Write(link, fillWith("out-2")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, tmp); !slices.Equal(got, []string{"link", "real"}) {
		t.Errorf("beside: %v", got)
	}
	if got := testutil.ListDir(t, link); !slices.Equal(got, []string{"out-2"}) {
		t.Errorf("through the link: %v", got)
	}
}

// A missing destination whose earlier output a killed writer moved aside:
// Write would put that back and replace it, so Check asks of it whether
// it may be replaced.
func TestCheckMovedAside(t *testing.T) {
	parent := t.TempDir()
	old := filepath.Join(parent, ".out.thing-old-12345678")
	os.Mkdir(old, 0o755)
	os.WriteFile(filepath.Join(old, "mine.txt"), nil, 0o644)
	if err := spec.Check(filepath.Join(parent, "out")); err == nil || !strings.Contains(err.Error(), "holds mine.txt") || !strings.Contains(err.Error(), old) {
		t.Errorf("Check with an unreplaceable moved-aside output: %v", err)
	}
}

// A writer of a directory around dir is found through a symbolic link
// among dir's ancestors: its lock is beside the real path.
func TestWriteInsideBusyThroughSymlink(t *testing.T) {
	tmp := t.TempDir()
	set, alias := filepath.Join(tmp, "set"), filepath.Join(tmp, "alias")
	os.Mkdir(set, 0o755)
	os.Symlink(set, alias)
	l, err := dirlock.TryLock(dirlock.Beside(set), dirlock.Options{What: "ctxdep report"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	inner := filepath.Join(alias, "layer-01")
	for _, err := range []error{spec.Check(inner), spec.Write(inner, fillWith("out-1"))} {
		if err == nil || !strings.Contains(err.Error(), "is inside "+set) {
			t.Errorf("inside a directory being written, through a link: %v", err)
		}
	}
}

// Only the names a writer makes are leftovers: a directory of the user's
// that merely starts like one is kept.
func TestLeftoversExact(t *testing.T) {
	parent := t.TempDir()
	for _, p := range []string{".out.thing-old-notes", ".out.thing-tmp-1.bak", ".out.thing-tmp-0aF"} {
		os.Mkdir(filepath.Join(parent, p), 0o755)
	}
	if err := spec.Write(filepath.Join(parent, "out"), fillWith("out-1")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{".out.thing-old-notes", ".out.thing-tmp-0aF", ".out.thing-tmp-1.bak", "out"}) {
		t.Errorf("beside: %v", got)
	}
}

// A bind mount of a directory within the same filesystem is a mount point
// too (same device as its parent): refused (needs root; skipped
// otherwise).
func TestCheckBindMount(t *testing.T) {
	tmp := t.TempDir()
	src, dir := filepath.Join(tmp, "src"), filepath.Join(tmp, "out")
	os.Mkdir(src, 0o755)
	os.Mkdir(dir, 0o755)
	if err := syscall.Mount(src, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount (%v)", err)
	}
	defer syscall.Unmount(dir, 0)
	if err := spec.Check(dir); err == nil || !strings.Contains(err.Error(), "is a mount point") {
		t.Errorf("Check of a bind mount: %v", err)
	}
}
