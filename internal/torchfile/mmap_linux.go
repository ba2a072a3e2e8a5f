//go:build linux

package torchfile

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// mapping is a read-only memory map of a whole file. Storages slice it; a
// cleanup unmaps it once nothing refers to the mapping any more.
type mapping struct {
	data []byte
	once *sync.Once
}

var errNoMmap = errors.New("mmap not available")

func mapFile(path string) (*mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 || size > int64(maxInt) {
		return nil, errNoMmap // let the caller read it (or report it empty)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoMmap, err)
	}
	m := &mapping{data: data, once: new(sync.Once)}
	runtime.AddCleanup(m, unmap, cleanupArg{data, m.once})
	return m, nil
}

type cleanupArg struct {
	data []byte
	once *sync.Once
}

// unmap runs at most once per mapping. Its error is dropped on purpose:
// munmap of a range we mapped only fails on a bug, and a cleanup has no one
// to report to.
func unmap(a cleanupArg) { a.once.Do(func() { _ = syscall.Munmap(a.data) }) }

// release unmaps now, for a load that failed and handed out no tensors.
func (m *mapping) release() { unmap(cleanupArg{m.data, m.once}) }
