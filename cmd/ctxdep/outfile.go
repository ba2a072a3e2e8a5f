package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// --out files written as a whole (pinv-baseline, tokenize): the rules an
// --out file must meet, its lock, its missing parents, and pinv-baseline
// --layers' staging of one file per layer, put in place all or none.
// renameFile is os.Rename, for staging's commit and its rollback; tests
// make it fail where no filesystem condition can (a rename that fails
// after others succeeded, and the rollback's).
var renameFile = os.Rename

// staging is pinv-baseline --layers' files: every layer's lock is taken
// before any layer's work (add), each file is written complete under a
// temporary name beside its --out (atomicfile.TempName, so that a killed
// run's are removed by the next), and once every layer is done commit
// puts them all in place, or none.
type staging struct {
	force bool
	notef func(format string, a ...any)
	files []stagedFile
	kept  bool // a failed commit kept the staged files, named in its error
}

// stagedFile is one layer's file: staged at tmp, to become out. During a
// commit, aside is where the earlier out was moved ("" when none) and in
// says that tmp has been renamed onto out.
type stagedFile struct {
	tmp, out, aside string
	in              bool
	lock            *dirlock.Lock
}

// add takes out's lock (lockOutFile: checkOutFile's rules under it, a
// killed run's files put back or removed) and stages out.
func (s *staging) add(g *globalOptions, out string) error {
	lock, err := lockOutFile(g, out, "pinv-baseline", s.force)
	if err != nil {
		return err
	}
	s.files = append(s.files, stagedFile{tmp: atomicfile.TempName(out), out: out, lock: lock})
	return nil
}

// tmpOf returns the temporary name out is staged under.
func (s *staging) tmpOf(out string) (string, error) {
	for _, f := range s.files {
		if f.out == out {
			return f.tmp, nil
		}
	}
	return "", fmt.Errorf("internal error: %s was not staged", out)
}

// commit puts every staged file in place as a whole, as far as the
// filesystem allows: each existing --out is first moved aside (asideName,
// a name that no run removes as a leftover), then the staged files are
// renamed onto their --out, and only then are the moved-aside files
// removed. If a rename fails, what was done is undone (the new files back
// under their temporary names, the earlier ones back in place) and the
// error names the new files, which are kept; if undoing fails too, it
// names where each layer's earlier and new file is, and nothing is
// removed. A run killed between the renames leaves some --out missing,
// moved aside: the next run puts them back (lockOutFile). Locks are
// released by abort.
func (s *staging) commit() error {
	for i := range s.files {
		f := &s.files[i]
		fi, err := os.Lstat(f.out)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return s.rollback(err)
		case !fi.Mode().IsRegular():
			return s.rollback(fmt.Errorf("--out %s is no longer a regular file", f.out))
		case !s.force:
			return s.rollback(fmt.Errorf("--out %s appeared while the layers were computed (without --force it is not replaced)", f.out))
		}
		aside, err := asideName(f.out)
		if err == nil {
			err = renameFile(f.out, aside)
		}
		if err != nil {
			return s.rollback(err)
		}
		f.aside = aside
	}
	for i := range s.files {
		f := &s.files[i]
		if err := renameFile(f.tmp, f.out); err != nil {
			return s.rollback(err)
		}
		f.in = true
	}
	s.syncDirs()
	for _, f := range s.files {
		if f.aside == "" {
			continue
		}
		if err := os.Remove(f.aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.notef("cannot remove %s, the earlier file of %s, which is replaced: %v", f.aside, f.out, err)
		}
	}
	return nil
}

// rollback undoes a commit that failed with cause, in reverse order: each
// new file that is in place goes back to its temporary name, then each
// moved-aside earlier file back onto its --out. The staged files are kept
// either way (abort leaves them), and the error says where they are.
func (s *staging) rollback(cause error) error {
	s.kept = true
	var rerrs []error
	for i := len(s.files) - 1; i >= 0; i-- {
		f := &s.files[i]
		if f.in {
			if err := renameFile(f.out, f.tmp); err != nil {
				rerrs = append(rerrs, err)
				continue // the earlier file cannot take its place back
			}
			f.in = false
		}
		if f.aside != "" {
			if err := renameFile(f.aside, f.out); err != nil {
				rerrs = append(rerrs, err)
				continue
			}
			f.aside = ""
		}
	}
	s.syncDirs()
	if len(rerrs) == 0 {
		var kept []string
		for _, f := range s.files {
			kept = append(kept, f.tmp)
		}
		return fmt.Errorf("cannot put the layers' files in place (%w): nothing was replaced, and the new files are kept as %s (the next run removes them)", cause, strings.Join(kept, ", "))
	}
	var where []string
	for _, f := range s.files {
		earlier, cur := "none", f.tmp
		switch {
		case f.aside != "":
			earlier = f.aside
		case f.in:
			// Written where there was none.
		default:
			if _, err := os.Lstat(f.out); err == nil {
				earlier = f.out
			}
		}
		if f.in {
			cur = f.out
		}
		where = append(where, fmt.Sprintf("%s: earlier file %s, new file %s", f.out, earlier, cur))
	}
	return fmt.Errorf("cannot put the layers' files in place (%w), and undoing it failed too (%w); nothing was removed: %s", cause, errors.Join(rerrs...), strings.Join(where, "; "))
}

// syncDirs makes the renames in the staged files' directories durable.
func (s *staging) syncDirs() {
	done := map[string]bool{}
	for _, f := range s.files {
		if d := filepath.Dir(f.out); !done[d] {
			atomicfile.SyncDir(d)
			done[d] = true
		}
	}
}

// abort removes the staged files (unless a failed commit kept them) and
// releases the locks.
func (s *staging) abort() {
	for _, f := range s.files {
		if !s.kept {
			os.Remove(f.tmp)
		}
		f.lock.Release()
	}
	s.files = nil
}

// asideName returns an unused name beside path, .BASE.old-XXXXXXXX, for
// the earlier file that a commit moves aside. Unlike atomicfile.TempName's
// it is not a leftover that the next run removes: a run killed before it
// replaced path leaves path's only copy there (putBackAside).
func asideName(path string) (string, error) {
	dir, base := filepath.Split(path)
	for range 100 {
		p := filepath.Join(dir, fmt.Sprintf(".%s.old-%08x", base, rand.Uint32()))
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", errors.New("cannot find an unused name to move " + path + " aside")
}

// asideRe matches the names asideName gives; its group is the name of
// the file moved aside.
var asideRe = regexp.MustCompile(`^\.(.+)\.old-[0-9a-f]{8}$`)

// asideOf returns the name of the file that name, one of asideName's,
// holds the earlier copy of.
func asideOf(name string) (string, bool) {
	m := asideRe.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// asides returns the files beside path that asideName names, newest
// (modification time) first.
func asides(path string) []string {
	dir, base := filepath.Split(filepath.Clean(path))
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	type aside struct {
		path string
		mod  time.Time
	}
	var found []aside
	for _, e := range entries {
		if of, ok := asideOf(e.Name()); !ok || of != base || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			found = append(found, aside{filepath.Join(dir, e.Name()), fi.ModTime()})
		}
	}
	slices.SortFunc(found, func(a, b aside) int { return b.mod.Compare(a.mod) })
	var out []string
	for _, a := range found {
		out = append(out, a.path)
	}
	return out
}

// putBackAside, under path's lock, puts back the earlier file of path
// that a killed commit moved aside when path is missing, and names the
// moved-aside files it keeps (path is there: a killed commit had put the
// new file in place). It removes none of them; when putting back fails,
// it says where the file is.
func putBackAside(g *globalOptions, path string) error {
	found := asides(path)
	if len(found) == 0 {
		return nil
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(found[0], path); err != nil {
			return fmt.Errorf("--out %s is missing, and its earlier file, which a killed run moved aside, is %s; putting it back failed (%w): move it back by hand, or elsewhere to keep it", path, found[0], err)
		}
		atomicfile.SyncDir(filepath.Dir(path))
		g.notef("put back %s, which a killed run had moved aside (%s)", path, filepath.Base(found[0]))
		found = found[1:]
	}
	for _, a := range found {
		g.notef("kept %s beside %s: an earlier file of it that a run moved aside and did not remove (killed, or the removal failed); remove it once you no longer need it", filepath.Base(a), path)
	}
	return nil
}

// checkOutFile applies the rules of an --out file (pinv-baseline,
// tokenize) before any work: never a file inside an activation cache (its
// manifest.json or a shard, not even with --force), never a directory or
// anything else that is not a regular file, nor a path below a file (bad
// arguments: usage errors), and an existing file only with --force. The
// file is written atomically (a temporary file renamed into place), so a
// failed run leaves an existing one as it was. A missing parent directory
// is made (makeDirs), as fit, cache build and report make theirs.
func checkOutFile(path string, force bool) error {
	if err := actcache.CheckOutside("--out "+path, path); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case errors.Is(err, syscall.ENOTDIR):
		if anc := fileAncestor(path); anc != "" {
			return usagef("--out %s: %s is not a directory", path, anc)
		}
		return err
	case err != nil:
		return err
	case fi.IsDir():
		return usagef("--out %s is a directory: give the path of a file", path)
	case !fi.Mode().IsRegular():
		return usagef("--out %s exists and is not a regular file; choose another path", path)
	case !force:
		return fmt.Errorf("--out %s already exists: pass --force to replace it, or choose another path", path)
	}
	return nil
}

// fileAncestor returns the nearest existing ancestor of path when it is
// not a directory (so that path cannot be made), else "".
func fileAncestor(path string) string {
	for d := filepath.Dir(filepath.Clean(path)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if fi.IsDir() {
				return ""
			}
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// checkOutParent refuses, as a usage error, an --out that cannot be made
// because a file stands where one of its parent directories would be.
func checkOutParent(out string) error {
	if anc := fileAncestor(out); anc != "" {
		return usagef("--out %s cannot be made: %s is a file, not a directory; choose another --out", out, anc)
	}
	return nil
}

// checkOutDir applies, before any work, the rules of an --out directory
// that a command makes (fit): a file there, or where a parent directory
// would be, is a usage error. holds says what the command writes in it.
func checkOutDir(out, command, holds string) error {
	if fi, err := os.Stat(filepath.Clean(out)); err == nil && !fi.IsDir() {
		return usagef("--out %s is a file: %s writes a directory (%s); choose another --out", out, command, holds)
	}
	return checkOutParent(out)
}

// madeDirs are the directories makeDirs made, outermost first.
type madeDirs []string

// makeDirs makes dir and its missing parents for --out path, as fit,
// cache build and report make their --out's, and returns those it made,
// so that a failed command removes them (removeIfFailed). An ancestor
// that is a file is a usage error.
func makeDirs(dir, path string) (madeDirs, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return nil, usagef("--out %s: %s is not a directory", path, d)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("--out %s: %w", path, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var made madeDirs
	for i := len(missing) - 1; i >= 0; i-- {
		err := os.Mkdir(missing[i], 0o755)
		if err != nil && !errors.Is(err, os.ErrExist) {
			made.remove()
			return nil, fmt.Errorf("--out %s: %w", path, err)
		}
		if err == nil {
			made = append(made, missing[i])
		}
	}
	return made, nil
}

// removeIfFailed is for a deferred call: when *err is set, it removes the
// directories that were made, innermost first, each only while empty.
func (m madeDirs) removeIfFailed(err *error) {
	if *err != nil {
		m.remove()
	}
}

func (m madeDirs) remove() {
	for i := len(m) - 1; i >= 0; i-- {
		os.Remove(m[i])
	}
}

// layerFileRe matches a layer's file of pinv-baseline --layers.
var layerFileRe = regexp.MustCompile(`^layer-[0-9]{2,}\.safetensors$`)

// putBackLayers puts back, before anything can be refused, every layer
// file in dir that a killed pinv-baseline --layers commit moved aside
// (each under its lock, as lockOutFile would), whichever layers this run
// covers: a refusal of one layer must not leave another missing.
func putBackLayers(g *globalOptions, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // no directory: nothing was moved aside in it
	}
	done := map[string]bool{}
	for _, e := range entries {
		base, ok := asideOf(e.Name())
		if !ok || !layerFileRe.MatchString(base) || done[base] {
			continue
		}
		done[base] = true
		path := filepath.Join(dir, base)
		lock, err := dirlock.TryLock(dirlock.Beside(path), dirlock.Options{What: "ctxdep pinv-baseline", Subject: path})
		if err != nil {
			return err
		}
		err = putBackAside(g, path)
		lock.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// lockOutFile takes the lock beside the --out file path (a second run
// that writes it is refused, naming the first), puts back an earlier file
// of path that a killed pinv-baseline --layers had moved aside
// (putBackAside), applies checkOutFile's rules again under the lock, and
// removes the temporary files of path that a killed run left (a full
// tokenize's can be gigabytes). The caller writes path, then releases the
// lock.
func lockOutFile(g *globalOptions, path, what string, force bool) (*dirlock.Lock, error) {
	lock, err := dirlock.TryLock(dirlock.Beside(path), dirlock.Options{What: "ctxdep " + what, Subject: path})
	if err != nil {
		return nil, err
	}
	if err := putBackAside(g, path); err != nil {
		lock.Release()
		return nil, err
	}
	if err := checkOutFile(path, force); err != nil {
		lock.Release()
		return nil, err
	}
	dir, base := filepath.Split(filepath.Clean(path))
	removed, err := atomicfile.RemoveLeftovers(filepath.Clean(dir), func(b string) bool {
		staged, ok := atomicfile.ParseTempName(b) // a file being staged, itself written through a temporary file
		return b == base || ok && staged == base
	})
	if len(removed) > 0 {
		g.notef("removed %s that a killed run left beside %s (%s)", plural(len(removed), "temporary file"), path, strings.Join(removed, ", "))
	}
	if err != nil {
		g.notef("cannot remove the temporary files that a killed run left beside %s: %v", path, err)
	}
	return lock, nil
}
