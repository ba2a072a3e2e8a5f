//go:build !linux

package torchfile

import "errors"

// mapping is unused off linux: Load reads the file into memory instead.
type mapping struct{ data []byte }

var errNoMmap = errors.New("mmap not available")

func mapFile(string) (*mapping, error) { return nil, errNoMmap }

func (m *mapping) release() {}
