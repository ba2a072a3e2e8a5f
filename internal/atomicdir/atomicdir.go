// Package atomicdir writes an output directory as a whole: every file goes
// into a temporary directory beside it (.NAME.WHAT-tmp-*), which is renamed
// onto its name only once complete. A failure, a full disk or a killed
// process leaves the directory as it was, and a rerun leaves no file of
// the earlier output behind. ctxdep's report, report --layers and
// connections write their --out so.
//
// Invariants: the temporary directory is in the destination's parent, so
// the renames stay within one filesystem; an existing destination is
// replaced only when the Spec's Replaceable says it may be (it holds
// nothing but an earlier output of the same kind), and is moved aside
// (.NAME.WHAT-old-*) before the new one takes its name, then removed, or
// put back when that rename fails; a lock beside the destination
// (.NAME.ctxdep.lock, internal/dirlock) keeps two writers apart (and a
// writer out of a directory inside one being written), and under it the
// writer puts back an earlier output that a killed writer had moved aside
// and not replaced, then removes what such a writer left (its temporary
// and moved-aside directories). A symbolic link as the destination is
// followed; a mount point is refused (it cannot be renamed).
package atomicdir

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// Spec says what kind of output directory is written.
type Spec struct {
	// What names the output in messages, the lock ("ctxdep WHAT") and the
	// temporary names: "report".
	What string
	// Replaceable returns nil when the existing directory dir may be
	// replaced, else an error that says why not (it holds other files).
	Replaceable func(dir string) error
}

func (s Spec) tmpPrefix(name string) string { return "." + name + "." + s.What + "-tmp-" }
func (s Spec) oldPrefix(name string) string { return "." + name + "." + s.What + "-old-" }

// split returns dir's absolute path, its parent and its name. An existing
// dir that is a symbolic link is followed: the directory it points to is
// the one replaced, and the link keeps pointing to it.
func (s Spec) split(dir string) (abs, parent, name string, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", "", fmt.Errorf("%s: %w", s.What, err)
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if abs, err = filepath.EvalSymlinks(abs); err != nil {
			return "", "", "", fmt.Errorf("%s: --out %s: %w", s.What, dir, err)
		}
	}
	parent, name = filepath.Split(abs)
	if name == "" {
		return "", "", "", fmt.Errorf("%s: --out %s is not a directory that can be replaced: choose a new directory", s.What, dir)
	}
	return abs, parent, name, nil
}

// Check reports, before any work, whether Write could write dir: nil when
// no other writer holds it or a directory around it, dir is not a mount
// point (which cannot be renamed), its parent (or the nearest ancestor
// that exists, where the parents would be made) can be written, and an
// existing dir is Replaceable. Write checks again under its lock.
func (s Spec) Check(dir string) error {
	abs, parent, _, err := s.split(dir)
	if err != nil {
		return err
	}
	if h, held, err := dirlock.Probe(dirlock.Beside(abs)); err == nil && held {
		return fmt.Errorf("%s: %s is being written by %s; wait for it to finish, or use another --out", s.What, dir, h)
	}
	if err := s.outside(dir, abs); err != nil {
		return err
	}
	anc := filepath.Clean(parent)
	for {
		if _, err := os.Stat(anc); err == nil || filepath.Dir(anc) == anc {
			break
		}
		anc = filepath.Dir(anc)
	}
	if fi, err := os.Stat(anc); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s: cannot write --out %s: %s is not a directory", s.What, dir, anc)
	}
	// access(2) answers for this process: root's writes pass, a read-only
	// filesystem's do not.
	if err := syscall.Access(anc, 0x2|0x1); err != nil { // W_OK|X_OK
		return fmt.Errorf("%s: cannot write --out %s: %s: %w (the output is made beside --out and renamed into place: give a directory where that can be done, such as one inside --out)", s.What, dir, anc, err)
	}
	return s.replaceable(dir, abs)
}

// outside refuses dir when a writer of a directory around it is running
// (one that will replace that directory as a whole, dir included).
func (s Spec) outside(dir, abs string) error {
	for p := filepath.Dir(abs); filepath.Dir(p) != p; p = filepath.Dir(p) {
		if h, held, err := dirlock.Probe(dirlock.Beside(p)); err == nil && held {
			return fmt.Errorf("%s: --out %s is inside %s, which %s is writing as a whole; wait for it to finish, or use another --out", s.What, dir, p, h)
		}
	}
	return nil
}

func (s Spec) replaceable(dir, abs string) error {
	fi, err := os.Lstat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.What, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: --out %s exists and is not a directory; choose another --out", s.What, dir)
	}
	if pi, err := os.Stat(filepath.Dir(abs)); err == nil && !sameDevice(pi, fi) {
		return fmt.Errorf("%s: --out %s is a mount point, which cannot be replaced as a whole: give a directory inside it", s.What, dir)
	}
	return s.Replaceable(dir)
}

// sameDevice reports whether a and b are on one filesystem (true when
// that cannot be told).
func sameDevice(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || sa.Dev == sb.Dev
}

// Write makes dir hold what fill writes into the directory it is given
// (new and empty, beside dir, with the permissions the umask gives a new
// directory), as a whole; see the package comment. It returns fill's
// error, or why dir could not be replaced.
func (s Spec) Write(dir string, fill func(tmp string) error) error {
	abs, parent, name, err := s.split(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("%s: %w", s.What, err)
	}
	lock, err := dirlock.TryLock(dirlock.Beside(abs), dirlock.Options{What: "ctxdep " + s.What, Subject: dir})
	if err != nil {
		return fmt.Errorf("%s: %w", s.What, err)
	}
	defer lock.Release()
	if err := s.outside(dir, abs); err != nil {
		return err
	}
	s.recover(parent, name)
	if err := s.replaceable(dir, abs); err != nil {
		return err
	}
	s.removeLeftovers(parent, name)
	tmp, err := mkdirTemp(parent, s.tmpPrefix(name))
	if err != nil {
		return fmt.Errorf("%s: %w", s.What, err)
	}
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := s.swapInto(tmp, abs); err != nil {
		var stuck *stuckError
		if !errors.As(err, &stuck) {
			os.RemoveAll(tmp)
		}
		return fmt.Errorf("%s: %w", s.What, err)
	}
	return nil
}

// mkdirTemp makes a new directory parent/prefix+random with mode 0777
// less the umask (os.MkdirTemp's is 0700), so that the output has the
// permissions any new directory of the user's would.
func mkdirTemp(parent, prefix string) (string, error) {
	for range 100 {
		p := filepath.Join(parent, fmt.Sprintf("%s%08x", prefix, rand.Uint32()))
		err := os.Mkdir(p, 0o777)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return p, err
	}
	return "", errors.New("cannot find an unused temporary directory name")
}

// recover puts back the earlier output that a writer killed between its
// two renames (or whose rollback failed) left moved aside: when
// parent/name is missing and such a directory is there, the newest is
// renamed back, before removeLeftovers would remove it.
func (s Spec) recover(parent, name string) {
	if _, err := os.Lstat(filepath.Join(parent, name)); !errors.Is(err, os.ErrNotExist) {
		return
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	var newest string
	var when time.Time
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), s.oldPrefix(name)) {
			continue
		}
		if fi, err := e.Info(); err == nil && (newest == "" || fi.ModTime().After(when)) {
			newest, when = e.Name(), fi.ModTime()
		}
	}
	if newest != "" {
		os.Rename(filepath.Join(parent, newest), filepath.Join(parent, name))
	}
}

// removeLeftovers removes the temporary directories that a killed writer
// of parent/name left (under the lock).
func (s Spec) removeLeftovers(parent, name string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() && (strings.HasPrefix(n, s.tmpPrefix(name)) || strings.HasPrefix(n, s.oldPrefix(name))) {
			os.RemoveAll(filepath.Join(parent, n))
		}
	}
}

// stuckError is a swap whose rollback failed too: the earlier output is
// in Old and the new one, complete, in New; both are kept.
type stuckError struct {
	err, rerr error
	Old, New  string
}

func (e *stuckError) Error() string {
	return fmt.Sprintf("%v; putting the earlier output back failed too (%v): it is in %s, and the new one in %s", e.err, e.rerr, e.Old, e.New)
}

// swapInto puts the complete directory tmp in place at dir: an existing
// dir is moved aside, tmp renamed onto its name, and the old one removed;
// if the second rename fails, the old one is put back.
func (s Spec) swapInto(tmp, dir string) error {
	parent, name := filepath.Split(dir)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		atomicfile.SyncDir(parent)
		return nil
	}
	old, err := mkdirTemp(parent, s.oldPrefix(name))
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil { // only the name was wanted
		return err
	}
	if err := os.Rename(dir, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if rerr := os.Rename(old, dir); rerr != nil {
			return &stuckError{err: err, rerr: rerr, Old: old, New: tmp}
		}
		return err
	}
	atomicfile.SyncDir(parent)
	os.RemoveAll(old)
	return nil
}
