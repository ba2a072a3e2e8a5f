package provenance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// testCache is a HashCache in a temporary directory that remembers files
// however recently they changed (the test writes them just before).
func testCache(t *testing.T) *HashCache {
	t.Helper()
	c := NewHashCache(filepath.Join(t.TempDir(), "cache", "hashes.json"))
	c.racy = -time.Hour
	return c
}

func mustHash(t *testing.T, c *HashCache, path string) File {
	t.Helper()
	p, err := c.Hash(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// forge replaces the remembered hash of every entry, so that a result
// read from the cache is told apart from one read from the file.
func forge(t *testing.T, c *HashCache, sum string) {
	t.Helper()
	raw, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	var hf hashCacheFile
	if err := json.Unmarshal(raw, &hf); err != nil {
		t.Fatal(err)
	}
	for i := range hf.Entries {
		hf.Entries[i].SHA256 = sum
	}
	raw, _ = json.Marshal(hf)
	if err := os.WriteFile(c.path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestHashCacheRemembersUnchangedFiles(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("no file identity on", runtime.GOOS)
	}
	c := testCache(t)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	os.WriteFile(path, []byte("weights"), 0o644)
	p := mustHash(t, c, path)
	if p.SHA256 != sha([]byte("weights")) || p.Size != 7 || !filepath.IsAbs(p.Path) || c.reads != 1 {
		t.Fatalf("first Hash = %+v after %d reads", p, c.reads)
	}
	// A second Hash takes the remembered value: the file is not read.
	fake := strings.Repeat("ab", 32)
	forge(t, c, fake)
	if p := mustHash(t, c, path); p.SHA256 != fake || c.reads != 1 {
		t.Fatalf("unchanged file: Hash = %+v after %d reads, want the remembered %s", p, c.reads, fake)
	}
	// Another HashCache on the same file (the next run) remembers too.
	c2 := NewHashCache(c.path)
	if p := mustHash(t, c2, path); p.SHA256 != fake || c2.reads != 0 {
		t.Fatalf("next run: Hash = %+v after %d reads", p, c2.reads)
	}

	// Changed size: hashed again.
	os.WriteFile(path, []byte("weights2"), 0o644)
	if p := mustHash(t, c, path); p.SHA256 != sha([]byte("weights2")) || c.reads != 2 {
		t.Fatalf("resized file: Hash = %+v after %d reads", p, c.reads)
	}
	// Same size, modification time set back: the times differ (mtime, or
	// the change time Chtimes sets), so hashed again.
	forge(t, c, fake)
	fi, _ := os.Stat(path)
	os.WriteFile(path, []byte("weights3"), 0o644)
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	if p := mustHash(t, c, path); p.SHA256 != sha([]byte("weights3")) || c.reads != 3 {
		t.Fatalf("rewritten file of the same size: Hash = %+v after %d reads", p, c.reads)
	}
	// Changed modification time alone: hashed again.
	forge(t, c, fake)
	os.Chtimes(path, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
	if p := mustHash(t, c, path); p.SHA256 != sha([]byte("weights3")) || c.reads != 4 {
		t.Fatalf("touched file: Hash = %+v after %d reads", p, c.reads)
	}
	// Replaced by another file (another inode) at the same path.
	forge(t, c, fake)
	tmp := path + ".new"
	os.WriteFile(tmp, []byte("weights4"), 0o644)
	os.Rename(tmp, path)
	if p := mustHash(t, c, path); p.SHA256 != sha([]byte("weights4")) || c.reads != 5 {
		t.Fatalf("replaced file: Hash = %+v after %d reads", p, c.reads)
	}
}

// A file changed within the racy window of its hashing is not remembered.
func TestHashCacheSkipsRecentFiles(t *testing.T) {
	c := NewHashCache(filepath.Join(t.TempDir(), "hashes.json"))
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("x"), 0o644)
	mustHash(t, c, path)
	mustHash(t, c, path)
	if c.reads != 2 {
		t.Errorf("a file written just now was remembered (%d reads of 2 Hash calls)", c.reads)
	}
	if _, err := os.Stat(c.path); err == nil {
		t.Error("the cache file was written for a file written just now")
	}
}

// A cache file that is not one (garbage, truncated, another format) is
// ignored and replaced.
func TestHashCacheIgnoresCorruptFile(t *testing.T) {
	for _, junk := range []string{"\x00\xff garbage", `{"format":"ctxdep-hash-cache","version":1,"entries":[{"path":`, `{"format":"other","version":1}`, `[1,2,3]`} {
		c := testCache(t)
		os.MkdirAll(filepath.Dir(c.path), 0o755)
		os.WriteFile(c.path, []byte(junk), 0o644)
		path := filepath.Join(t.TempDir(), "f")
		os.WriteFile(path, []byte("abc"), 0o644)
		if p := mustHash(t, c, path); p.SHA256 != sha([]byte("abc")) {
			t.Fatalf("corrupt cache %q: Hash = %+v", junk, p)
		}
		if runtime.GOOS == "linux" {
			if len(c.load()) != 1 {
				t.Errorf("corrupt cache %q was not rebuilt: %d entries", junk, len(c.load()))
			}
		}
	}
	// An entry whose hash is not 64 hex digits is not used.
	c := testCache(t)
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("abc"), 0o644)
	mustHash(t, c, path)
	forge(t, c, "not-a-hash")
	if p := mustHash(t, c, path); p.SHA256 != sha([]byte("abc")) {
		t.Errorf("malformed entry used: %+v", p)
	}
}

func TestHashCacheIsBounded(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("file identity tested on Linux")
	}
	c := testCache(t)
	dir := t.TempDir()
	for i := range MaxHashCacheEntries + 5 {
		path := filepath.Join(dir, fmt.Sprint(i))
		os.WriteFile(path, []byte(fmt.Sprint(i)), 0o644)
		mustHash(t, c, path)
	}
	es := c.load()
	if len(es) != MaxHashCacheEntries {
		t.Fatalf("%d entries, want %d", len(es), MaxHashCacheEntries)
	}
	for _, e := range es {
		if e.Path == filepath.Join(dir, "0") {
			t.Error("the oldest entry was kept")
		}
	}
}

// A file in the hub cache whose blob is named by a SHA-256 is not read;
// one named by a git SHA-1 (a small file) is.
func TestHashCacheHubBlobName(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "models--openai-community--gpt2")
	blobs, snap := filepath.Join(repo, "blobs"), filepath.Join(repo, "snapshots", "607a30d783dfa663caf39e06633721c8d4cfcd7e")
	os.MkdirAll(blobs, 0o755)
	os.MkdirAll(snap, 0o755)
	// The blob's name is not its content's hash here, to show it is not read.
	lfs := strings.Repeat("0123456789abcdef", 4)
	os.WriteFile(filepath.Join(blobs, lfs), []byte("weights"), 0o644)
	if err := os.Symlink(filepath.Join("..", "..", "blobs", lfs), filepath.Join(snap, "model.safetensors")); err != nil {
		t.Skip("no symlinks:", err)
	}
	git := strings.Repeat("0123456789", 4)
	os.WriteFile(filepath.Join(blobs, git), []byte("{}"), 0o644)
	os.Symlink(filepath.Join("..", "..", "blobs", git), filepath.Join(snap, "config.json"))

	c := testCache(t)
	p := mustHash(t, c, filepath.Join(snap, "model.safetensors"))
	if p.SHA256 != lfs || p.Size != 7 || p.Path != filepath.Join(snap, "model.safetensors") || c.reads != 0 {
		t.Errorf("LFS blob: Hash = %+v after %d reads, want the blob name %s", p, c.reads, lfs)
	}
	if p := mustHash(t, c, filepath.Join(snap, "config.json")); p.SHA256 != sha([]byte("{}")) || c.reads != 1 {
		t.Errorf("git blob: Hash = %+v after %d reads, want the content hash", p, c.reads)
	}
	// Upper-case hex is not a name huggingface_hub writes.
	upper := filepath.Join(blobs, strings.ToUpper(lfs))
	os.WriteFile(upper, []byte("weights"), 0o644)
	if p, ok := hubBlobHash(upper); ok {
		t.Errorf("trusted %s", p)
	}
	// A disabled cache reads everything.
	if p, _ := NewHashCache("").Hash(filepath.Join(snap, "model.safetensors")); p.SHA256 != sha([]byte("weights")) {
		t.Errorf("disabled cache: Hash = %+v", p)
	}
	var nilCache *HashCache
	if p, _ := nilCache.Hash(filepath.Join(snap, "model.safetensors")); p.SHA256 != sha([]byte("weights")) {
		t.Errorf("nil cache: Hash = %+v", p)
	}
}

func TestHashCacheMissingFile(t *testing.T) {
	c := testCache(t)
	if _, err := c.Hash(filepath.Join(t.TempDir(), "nope")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
