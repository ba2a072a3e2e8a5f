//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package safetensors

import (
	"fmt"
	"syscall"
)

// mapFile maps the whole file read-only. release unmaps it (nil when there
// is nothing to unmap).
func mapFile(path string) (buf []byte, release func() error, err error) {
	fh, size, err := statRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close() // the mapping outlives the descriptor
	if size == 0 {
		return []byte{}, nil, nil // mmap rejects length 0; parse reports the empty file
	}
	buf, err = syscall.Mmap(int(fh.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return buf, func() error { return syscall.Munmap(buf) }, nil
}
