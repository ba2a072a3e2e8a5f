// Package hub finds files in the local Hugging Face hub cache
// ($HF_HOME/hub, default ~/.cache/huggingface/hub), whose layout is
// models--{owner}--{name}/snapshots/{revision}/… with refs/{branch} naming
// the revision a branch points at. Files Python users already downloaded
// are found there.
package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CacheDir returns the hub cache directory: $HF_HUB_CACHE, else
// $HF_HOME/hub, else ~/.cache/huggingface/hub.
func CacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cache", "huggingface", "hub")
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

// RepoDir returns the cache folder of a model repository ("owner/name").
func RepoDir(repo string) string {
	return filepath.Join(CacheDir(), "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// ErrNotCached is returned when a repository has no snapshot in the cache.
var ErrNotCached = errors.New("not in the Hugging Face cache")

// Snapshot returns the snapshot directory of repo for revision ("" means
// main: the revision refs/main names, or the only snapshot there is).
func Snapshot(repo, revision string) (string, error) {
	dir := RepoDir(repo)
	if revision == "" {
		revision = "main"
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "refs", revision)); err == nil {
		revision = strings.TrimSpace(string(raw))
	}
	snap := filepath.Join(dir, "snapshots", revision)
	if st, err := os.Stat(snap); err == nil && st.IsDir() {
		return snap, nil
	}
	if revision == "main" || revision == "" {
		entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
		if err == nil && len(entries) == 1 && entries[0].IsDir() {
			return filepath.Join(dir, "snapshots", entries[0].Name()), nil
		}
	}
	return "", fmt.Errorf("%s (looked in %s): %w", repo, dir, ErrNotCached)
}
