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
// and not replaced (stopping, with where it is, when that fails), then
// removes what such a writer left (its temporary and moved-aside
// directories, by their exact names). Symbolic links are resolved: one
// as the destination is followed, even to a missing target; the lock
// probes go by real paths. A mount point, a bind mount included, is
// refused (it cannot be renamed).
package atomicdir

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// ErrNotDir is wrapped by Check's and Write's error for an --out that
// exists and is not a directory, or lies below a file: a bad argument
// rather than a state of the filesystem to fix.
var ErrNotDir = errors.New("is not a directory")

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

// split returns dir's absolute path, its parent and its name, with
// symbolic links resolved: those among the ancestors that exist (so that a
// writer of a directory around dir is found by its real path), and dir
// itself when it is one, even one whose target is missing (a killed
// writer may have moved the target aside): the directory it points to is
// the one replaced, and the link keeps pointing to it.
func (s Spec) split(dir string) (abs, parent, name string, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", "", fmt.Errorf("%s: %w", s.What, err)
	}
	for hops := 0; ; hops++ {
		if abs, err = realParent(abs); err != nil {
			return "", "", "", fmt.Errorf("%s: --out %s: %w", s.What, dir, err)
		}
		fi, err := os.Lstat(abs)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		if hops == 40 {
			return "", "", "", fmt.Errorf("%s: --out %s: too many levels of symbolic links", s.What, dir)
		}
		target, err := os.Readlink(abs)
		if err != nil {
			return "", "", "", fmt.Errorf("%s: --out %s: %w", s.What, dir, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(abs), target)
		}
		abs = filepath.Clean(target)
	}
	parent, name = filepath.Split(abs)
	if name == "" {
		return "", "", "", fmt.Errorf("%s: --out %s is not a directory that can be replaced: choose a new directory", s.What, dir)
	}
	return abs, parent, name, nil
}

// realParent returns the absolute path abs with the symbolic links of its
// nearest existing ancestor (abs's parent or above) resolved; abs's last
// element is kept as it is.
func realParent(abs string) (string, error) {
	anc, rest := filepath.Dir(abs), filepath.Base(abs)
	for {
		if _, err := os.Lstat(anc); err == nil || filepath.Dir(anc) == anc {
			break
		}
		anc, rest = filepath.Dir(anc), filepath.Join(filepath.Base(anc), rest)
	}
	real, err := filepath.EvalSymlinks(anc)
	if err != nil {
		return "", err
	}
	return filepath.Join(real, rest), nil
}

// Check reports, before any work, whether Write could write dir: nil when
// no other writer holds it or a directory around it, dir is not a mount
// point (which cannot be renamed), its parent (or the nearest ancestor
// that exists, where the parents would be made) can be written, and an
// existing dir is Replaceable. Write checks again under its lock.
func (s Spec) Check(dir string) error {
	abs, parent, name, err := s.split(dir)
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
		return fmt.Errorf("%s: cannot write --out %s: %s %w", s.What, dir, anc, ErrNotDir)
	}
	// access(2) answers for this process: root's writes pass, a read-only
	// filesystem's do not.
	if err := syscall.Access(anc, 0x2|0x1); err != nil { // W_OK|X_OK
		return fmt.Errorf("%s: cannot write --out %s: %s: %w (the output is made beside --out and renamed into place: give a directory where that can be done, such as one inside --out)", s.What, dir, anc, err)
	}
	if old := s.movedAside(parent, name); old != "" {
		// Write puts it back first, and then replaces it.
		if err := s.Replaceable(old); err != nil {
			return fmt.Errorf("%s: --out %s is missing, and the earlier output a killed writer moved aside (%s), which would be put back and replaced, cannot be replaced: %w", s.What, dir, old, err)
		}
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
		return fmt.Errorf("%s: --out %s exists and %w; choose another --out", s.What, dir, ErrNotDir)
	}
	if mountPoint(abs, fi) {
		return fmt.Errorf("%s: --out %s is a mount point, which cannot be replaced as a whole: give a directory inside it", s.What, dir)
	}
	return s.Replaceable(dir)
}

// mountPoint reports whether the directory abs (fi its Lstat) is the
// root of a mount: by statx(2)'s STATX_ATTR_MOUNT_ROOT (Linux 5.8 and
// later), which also finds a bind mount of a directory within the same
// filesystem, else by its device differing from its parent's.
func mountPoint(abs string, fi os.FileInfo) bool {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, abs, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err == nil && st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
	}
	pi, err := os.Stat(filepath.Dir(abs))
	if err != nil {
		return false
	}
	sa, ok1 := pi.Sys().(*syscall.Stat_t)
	sb, ok2 := fi.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev != sb.Dev
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
	if err := s.recover(parent, name); err != nil {
		return err
	}
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

// leftover matches the names of what a writer of parent/NAME leaves
// beside it while it runs, and a killed one leaves behind: its temporary
// (kind "tmp") and moved-aside ("old") directories, named by mkdirTemp.
func (s Spec) leftover(name string) *regexp.Regexp {
	return regexp.MustCompile(`^\.` + regexp.QuoteMeta(name) + `\.` + regexp.QuoteMeta(s.What) + `-(tmp|old)-[0-9a-f]+$`)
}

// movedAside returns the newest earlier output that a writer killed
// between its two renames (or whose rollback failed) left moved aside
// when parent/name is missing, or "" when there is none.
func (s Spec) movedAside(parent, name string) string {
	if _, err := os.Lstat(filepath.Join(parent, name)); !errors.Is(err, os.ErrNotExist) {
		return ""
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return ""
	}
	re := s.leftover(name)
	var newest string
	var when time.Time
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); !e.IsDir() || m == nil || m[1] != "old" {
			continue
		}
		if fi, err := e.Info(); err == nil && (newest == "" || fi.ModTime().After(when)) {
			newest, when = e.Name(), fi.ModTime()
		}
	}
	if newest == "" {
		return ""
	}
	return filepath.Join(parent, newest)
}

// recover puts back the earlier output that movedAside finds, before
// removeLeftovers would remove it. When that fails it says where the
// output is, and nothing is removed.
func (s Spec) recover(parent, name string) error {
	old := s.movedAside(parent, name)
	if old == "" {
		return nil
	}
	if err := os.Rename(old, filepath.Join(parent, name)); err != nil {
		return fmt.Errorf("%s: the earlier output, which a killed writer moved aside, is in %s; putting it back failed (%w): move it back by hand, or move it elsewhere to keep it", s.What, old, err)
	}
	return nil
}

// removeLeftovers removes the temporary and moved-aside directories that
// a killed writer of parent/name left (under the lock, after recover).
func (s Spec) removeLeftovers(parent, name string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	re := s.leftover(name)
	for _, e := range entries {
		if e.IsDir() && re.MatchString(e.Name()) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
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
