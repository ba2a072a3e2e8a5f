//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package safetensors

import (
	"fmt"
	"io"
)

// mapFile reads the whole file into memory on systems where ctxdep does not
// use mmap. release is nil: the garbage collector frees the buffer.
func mapFile(path string) (buf []byte, release func() error, err error) {
	fh, size, err := statRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	buf = make([]byte, size)
	if _, err := io.ReadFull(fh, buf); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf, nil, nil
}
