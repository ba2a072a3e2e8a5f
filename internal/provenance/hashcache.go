package provenance

import (
	"cmp"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
)

// HashCache remembers the SHA-256 of input files by their path and stat
// identity (size, modification and status-change times in nanoseconds,
// inode and device), as git's index does, so that an unchanged 548 MB
// model is not read again on every run. Files in the Hugging Face hub
// cache whose blob is named by its SHA-256 are not read at all.
//
// The cache is a small JSON file, rewritten atomically; one that cannot be
// read or parsed is ignored and rebuilt. It holds at most MaxHashCacheEntries
// files, the oldest dropped first. A file whose times are within a few
// seconds of the hashing is not remembered (it may still be being written,
// or be rewritten within the file system's timestamp granularity); the
// next run remembers it.
//
// A nil *HashCache, or one with an empty path, hashes every file anew.
// Methods are safe for concurrent use; several processes may share the
// file (the last writer wins, which loses entries at worst).
type HashCache struct {
	path  string
	racy  time.Duration // files changed within this of the hashing are not remembered
	mu    sync.Mutex
	reads int // files read whole, for tests
}

// MaxHashCacheEntries bounds the number of files a HashCache remembers.
const MaxHashCacheEntries = 256

// maxHashCacheBytes is the largest cache file read; a larger one is
// ignored (and replaced).
const maxHashCacheBytes = 1 << 20

const (
	hashCacheFormat  = "ctxdep-hash-cache"
	hashCacheVersion = 1
)

// NewHashCache returns a cache kept in the file path ("" disables it).
func NewHashCache(path string) *HashCache {
	return &HashCache{path: path, racy: 2 * time.Second}
}

// DefaultHashCachePath is the cache file of the user's cache directory
// ($XDG_CACHE_HOME/ctxdep/hashes.json, else ~/.cache/ctxdep/hashes.json on
// Linux), or "" when there is none.
func DefaultHashCachePath() string {
	d, err := os.UserCacheDir()
	if err != nil || d == "" {
		return ""
	}
	return filepath.Join(d, "ctxdep", "hashes.json")
}

// Path returns the cache file ("" when disabled).
func (c *HashCache) Path() string {
	if c == nil {
		return ""
	}
	return c.path
}

type hashCacheFile struct {
	Format  string           `json:"format"`
	Version int              `json:"version"`
	Entries []hashCacheEntry `json:"entries"`
}

type hashCacheEntry struct {
	Path string `json:"path"`
	statID
	SHA256 string `json:"sha256"`
	Added  int64  `json:"added"` // Unix ns when hashed: the oldest are dropped first
}

// Hash returns the provenance of path, as the package-level Hash does,
// without reading a file that the hub cache names by its SHA-256 or that
// the cache holds at the same identity.
func (c *HashCache) Hash(path string) (File, error) {
	if c == nil || c.path == "" {
		return Hash(path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return File{}, err
	}
	if sum, ok := hubBlobHash(abs); ok && fi.Mode().IsRegular() {
		return File{Path: abs, Size: fi.Size(), SHA256: sum}, nil
	}
	id, idOK := fileID(fi)
	if idOK {
		c.mu.Lock()
		entries := c.load()
		c.mu.Unlock()
		for _, e := range entries {
			if e.Path == abs && e.statID == id && validSHA256(e.SHA256) {
				return File{Path: abs, Size: fi.Size(), SHA256: e.SHA256}, nil
			}
		}
	}
	start := time.Now()
	p, err := Hash(abs)
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	if err != nil || !idOK {
		return p, err
	}
	// Remember it only if the file did not change while it was read and
	// has not changed recently.
	if fi2, err := os.Stat(abs); err != nil || fi2.Size() != p.Size {
		return p, nil
	} else if id2, ok := fileID(fi2); !ok || id2 != id {
		return p, nil
	}
	if start.Sub(time.Unix(0, max(id.MtimeNs, id.CtimeNs))) <= c.racy {
		return p, nil
	}
	c.store(hashCacheEntry{Path: abs, statID: id, SHA256: p.SHA256, Added: time.Now().UnixNano()})
	return p, nil
}

// load reads the cache file; anything unreadable reads as empty.
func (c *HashCache) load() []hashCacheEntry {
	f, err := os.Open(c.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxHashCacheBytes+1))
	if err != nil || len(raw) > maxHashCacheBytes {
		return nil
	}
	var hf hashCacheFile
	if json.Unmarshal(raw, &hf) != nil || hf.Format != hashCacheFormat || hf.Version != hashCacheVersion {
		return nil
	}
	return hf.Entries
}

// store adds e to the cache file (replacing any entry for its path),
// keeping the newest MaxHashCacheEntries. Failing to write the cache is
// not an error: the hash is still right, only not remembered.
func (c *HashCache) store(e hashCacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries := slices.DeleteFunc(c.load(), func(o hashCacheEntry) bool {
		return o.Path == e.Path || !validSHA256(o.SHA256)
	})
	entries = append(entries, e)
	if len(entries) > MaxHashCacheEntries {
		slices.SortStableFunc(entries, func(a, b hashCacheEntry) int { return cmp.Compare(b.Added, a.Added) })
		entries = entries[:MaxHashCacheEntries]
	}
	raw, err := json.MarshalIndent(hashCacheFile{Format: hashCacheFormat, Version: hashCacheVersion, Entries: entries}, "", " ")
	if err != nil {
		return
	}
	if os.MkdirAll(filepath.Dir(c.path), 0o755) != nil {
		return
	}
	_ = atomicfile.WriteFile(c.path, append(raw, '\n'))
}

// hubBlobHash returns the SHA-256 that names the file path resolves to,
// when that is a blob of the Hugging Face hub cache named by one
// (blobs/<64 hex digits>, as huggingface_hub stores git-LFS files; small
// files are named by their git SHA-1, 40 digits, and are not trusted).
func hubBlobHash(path string) (string, bool) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	name := filepath.Base(real)
	if filepath.Base(filepath.Dir(real)) != "blobs" || !validSHA256(name) {
		return "", false
	}
	return name, true
}

// validSHA256 reports whether s is 64 lowercase hex digits.
func validSHA256(s string) bool {
	return len(s) == 64 && strings.IndexFunc(s, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) < 0
}
