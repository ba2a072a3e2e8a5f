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

// Listing identifies a corpus too large to hash by content: the SHA-256 of
// its files' names (relative to root), sizes and modification times, one
// "name\tsize\tmtime\n" line each in the given order. Size is the total.
// It detects added, removed, resized, touched or reordered files, not an
// edit that keeps size and time.
func Listing(root string, files []string) (File, error) {
	h := sha256.New()
	var total int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return File{}, err
		}
		rel, err := filepath.Rel(root, f)
		if err != nil || rel == "." {
			rel = filepath.Base(f)
		}
		fmt.Fprintf(h, "%s\t%d\t%d\n", rel, st.Size(), st.ModTime().UnixNano())
		total += st.Size()
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	return File{Path: abs, Size: total, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
