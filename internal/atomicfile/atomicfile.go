package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// TempName returns a fresh random name next to path, .BASE.tmp-XXXXXXXX,
// for a temporary file or link to be renamed onto path. The leading dot
// keeps it out of ordinary listings and the suffix makes leftovers
// recognisable.
func TempName(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, fmt.Sprintf(".%s.tmp-%08x", base, rand.Uint32()))
}

// CreateTemp creates a new file named TempName(path) whose permissions
// follow the umask, as os.Create's would.
func CreateTemp(path string) (*os.File, error) {
	for range 100 {
		f, err := os.OpenFile(TempName(path), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, errors.New("cannot find an unused temporary file name")
}

// SyncDir makes a rename in dir durable. It is best effort: the file is
// complete either way, and some filesystems refuse to fsync a directory.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Commit puts f, a temporary file from CreateTemp holding the complete
// contents, in place at path: it fsyncs and closes f, renames it onto path
// and syncs the directory. On error f is closed and removed, and path is
// left as it was. A caller that gives up before Commit closes and removes
// f itself.
func Commit(f *os.File, path string) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return err
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte) error {
	f, err := CreateTemp(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return Commit(f, path)
}

// ParseTempName reports whether name, a base name, is one that TempName
// makes (.BASE.tmp-XXXXXXXX), and returns BASE: the file it was to become.
// A crash between CreateTemp and Commit leaves such a file behind.
func ParseTempName(name string) (base string, ok bool) {
	i := strings.LastIndex(name, ".tmp-")
	if len(name) < 2 || name[0] != '.' || i < 2 || len(name)-i != len(".tmp-")+8 {
		return "", false
	}
	for _, c := range name[i+len(".tmp-"):] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", false
		}
	}
	return name[1:i], true
}

// Leftovers returns the temporary files in dir (names made by TempName)
// whose destination's base name satisfies mine, sorted by name.
func Leftovers(dir string, mine func(base string) bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if base, ok := ParseTempName(e.Name()); ok && e.Type().IsRegular() && mine(base) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// RemoveLeftovers removes the Leftovers of dir that mine claims and
// returns the names it removed. The caller holds the lock of what it
// writes there, so that no live writer's temporary file is among them. A
// failure to remove one (other than its being gone already) is returned,
// joined with the others, after trying them all.
func RemoveLeftovers(dir string, mine func(base string) bool) ([]string, error) {
	names, err := Leftovers(dir, mine)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
