// Package provenance identifies the inputs of a result: a file's path, size
// and SHA-256 content hash. Every artifact ctxdep writes records the
// provenance of the model, transcoder and data it came from, so a mismatch
// is detected before work starts.
package provenance

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File identifies one input file.
type File struct {
	Path   string `json:"path"`   // absolute path when it was read
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // hex content hash
}

// Hash reads path and returns its provenance.
func Hash(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return File{Path: abs, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Same reports whether a and b have the same content (paths may differ:
// a moved file is the same input).
func Same(a, b File) bool { return a.SHA256 == b.SHA256 && a.Size == b.Size }
