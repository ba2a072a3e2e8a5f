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
	if h := hfHome(); h != "" {
		return filepath.Join(h, "hub")
	}
	return filepath.Join(".cache", "huggingface", "hub")
}

// hfHome returns $HF_HOME, defaulting as huggingface_hub's constants.py has
// it: $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface; "" when there
// is no home directory.
func hfHome() string {
	if d := os.Getenv("HF_HOME"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "huggingface")
}

// RepoKind says what a repository holds. Models and datasets live in
// different namespaces: their URLs and cache folders differ.
type RepoKind int

const (
	// Model is a model repository (https://huggingface.co/{repo}).
	Model RepoKind = iota
	// Dataset is a dataset repository (https://huggingface.co/datasets/{repo}).
	Dataset
)

// String returns "model" or "dataset", as huggingface_hub's repo_type.
func (k RepoKind) String() string {
	if k == Dataset {
		return "dataset"
	}
	return "model"
}

// repoFolder is the cache folder name of a repository:
// {kind}s--{owner}--{name}.
func repoFolder(kind RepoKind, repo string) string {
	return kind.String() + "s--" + strings.ReplaceAll(repo, "/", "--")
}

// ErrNotCached is returned when a repository has no snapshot in the cache.
var ErrNotCached = errors.New("not in the Hugging Face cache")

// Snapshot returns the snapshot directory of repo for revision ("" means
// main: the revision refs/main names, or the only snapshot there is).
func Snapshot(repo, revision string) (string, error) {
	return snapshotIn(CacheDir(), Model, repo, revision)
}

// Snapshot returns the snapshot directory of a model or dataset repository
// in the client's cache, as the package-level Snapshot does for models.
func (c *Client) Snapshot(kind RepoKind, repo, revision string) (string, error) {
	return snapshotIn(c.cacheDir(), kind, repo, revision)
}

func snapshotIn(cache string, kind RepoKind, repo, revision string) (string, error) {
	dir := filepath.Join(cache, repoFolder(kind, repo))
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
	if revision == "main" {
		entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
		if err == nil && len(entries) == 1 && entries[0].IsDir() {
			return filepath.Join(dir, "snapshots", entries[0].Name()), nil
		}
	}
	return "", fmt.Errorf("%s (looked in %s): %w", repo, dir, ErrNotCached)
}
