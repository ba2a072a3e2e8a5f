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
// (.NAME.ctxdep.lock, internal/dirlock) keeps two writers apart, and under
// it the writer removes what a killed writer left (its temporary and
// moved-aside directories).
package atomicdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

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

// split returns dir's absolute path, its parent and its name.
func (s Spec) split(dir string) (abs, parent, name string, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", "", fmt.Errorf("%s: %w", s.What, err)
	}
	parent, name = filepath.Split(abs)
	if name == "" {
		return "", "", "", fmt.Errorf("%s: --out %s is not a directory that can be replaced: choose a new directory", s.What, dir)
	}
	return abs, parent, name, nil
}

// Check reports, before any work, whether Write could write dir: nil when
// no other writer holds it, its parent (or the nearest ancestor that
// exists, where the parents would be made) can be written, and an
// existing dir is Replaceable. Write checks again under its lock.
func (s Spec) Check(dir string) error {
	abs, parent, _, err := s.split(dir)
	if err != nil {
		return err
	}
	if h, held, err := dirlock.Probe(dirlock.Beside(abs)); err == nil && held {
		return fmt.Errorf("%s: %s is being written by %s; wait for it to finish, or use another --out", s.What, dir, h)
	}
	anc := filepath.Clean(parent)
	for {
		if _, err := os.Stat(anc); err == nil || filepath.Dir(anc) == anc {
			break
		}
		anc = filepath.Dir(anc)
	}
	// access(2) answers for this process: root's writes pass, a read-only
	// filesystem's do not.
	if err := syscall.Access(anc, 0x2|0x1); err != nil { // W_OK|X_OK
		return fmt.Errorf("%s: cannot write --out %s: %s: %w", s.What, dir, anc, err)
	}
	return s.replaceable(dir, abs)
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
	return s.Replaceable(dir)
}

// Write makes dir hold what fill writes into the directory it is given
// (new and empty, beside dir), as a whole; see the package comment. It
// returns fill's error, or why dir could not be replaced.
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
	if err := s.replaceable(dir, abs); err != nil {
		return err
	}
	s.removeLeftovers(parent, name)
	tmp, err := os.MkdirTemp(parent, s.tmpPrefix(name))
	if err != nil {
		return fmt.Errorf("%s: %w", s.What, err)
	}
	if err := fill(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	err = os.Chmod(tmp, 0o755) // MkdirTemp's is 0700
	if err == nil {
		err = s.swapInto(tmp, abs)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("%s: %w", s.What, err)
	}
	return nil
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
	old, err := os.MkdirTemp(parent, s.oldPrefix(name))
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
			return fmt.Errorf("%w; the earlier %s is in %s", errors.Join(err, rerr), s.What, old)
		}
		return err
	}
	atomicfile.SyncDir(parent)
	os.RemoveAll(old)
	return nil
}
