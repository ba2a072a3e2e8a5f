// Package atomicfile writes files so that they appear under their final
// name only when complete: data goes to a temporary file next to the
// destination, which is synced and then renamed into place. A crash or an
// error leaves the destination as it was.
package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// CreateTemp creates a new file next to path (named .BASE.tmp-XXXXXXXX)
// whose permissions follow the umask, as os.Create's would.
func CreateTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	for range 100 {
		name := filepath.Join(dir, fmt.Sprintf(".%s.tmp-%08x", base, rand.Uint32()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
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

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte) error {
	f, err := CreateTemp(path)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	SyncDir(filepath.Dir(path))
	return nil
}
