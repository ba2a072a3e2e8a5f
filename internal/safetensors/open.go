package safetensors

import (
	"fmt"
	"os"
)

// Open maps the file at path read-only and parses it (see Parse). Errors name
// the path. The File must be closed to release the mapping.
func Open(path string) (*File, error) {
	buf, release, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := parse(buf)
	if err != nil {
		if release != nil {
			// The parse error is the one worth reporting; an unmap failure
			// of a read-only mapping leaks address space at worst.
			_ = release()
		}
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f.path, f.release = path, release
	return f, nil
}

// statRegular opens path and checks that it is a regular file whose size
// fits in an int.
func statRegular(path string) (*os.File, int, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		fh.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() != int64(int(fi.Size())) {
		fh.Close()
		return nil, 0, fmt.Errorf("%s: %d bytes is too large to map", path, fi.Size())
	}
	return fh, int(fi.Size()), nil
}
