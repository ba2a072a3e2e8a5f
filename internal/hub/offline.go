package hub

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// OfflineFromEnv reports whether the environment asks for no network, as
// huggingface_hub reads it: $HF_HUB_OFFLINE, or when that is unset the
// legacy $TRANSFORMERS_OFFLINE, is 1, ON, YES or TRUE (any case).
func OfflineFromEnv() bool {
	v := os.Getenv("HF_HUB_OFFLINE")
	if v == "" {
		v = os.Getenv("TRANSFORMERS_OFFLINE")
	}
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// errOfflineRequest is what an offline client's transport answers: no
// request leaves the machine, whatever path of the code makes it.
var errOfflineRequest = errors.New("HF_HUB_OFFLINE is set: no network")

type offlineTransport struct{}

func (offlineTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errOfflineRequest
}

// offlineError is the error of an offline client for what the cache lacks.
func offlineError(format string, a ...any) error {
	return &hubError{msg: "hub: HF_HUB_OFFLINE is set: " + fmt.Sprintf(format, a...), errs: []error{ErrOffline}}
}

// offlineSnapshot answers Download without the network: the cached
// snapshot of revision, when it holds every file; else an error that names
// the files missing and where they were looked for.
func (c *Client) offlineSnapshot(kind RepoKind, repo, revision string, files []string) (string, error) {
	snap, err := c.Snapshot(kind, repo, revision)
	if err != nil {
		return "", offlineError("%s %s at revision %s is not in the hub cache %s (missing: %s); download it without HF_HUB_OFFLINE first",
			kind, repo, revision, c.cacheDir(), strings.Join(files, ", "))
	}
	var missing []string
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(snap, filepath.FromSlash(f))); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return "", offlineError("%s %s at revision %s: %s not in the cached snapshot %s; download without HF_HUB_OFFLINE first",
			kind, repo, revision, strings.Join(missing, ", "), snap)
	}
	c.logf("hub: offline (HF_HUB_OFFLINE): using the cached snapshot %s", snap)
	return snap, nil
}

// offlineList answers ListFiles without the network: the files of the
// cached snapshot of revision (paths and sizes; no hashes) and its commit.
func (c *Client) offlineList(kind RepoKind, repo, revision string) ([]FileInfo, string, error) {
	snap, err := c.Snapshot(kind, repo, revision)
	if err != nil {
		return nil, "", offlineError("%s %s at revision %s is not in the hub cache %s; list it without HF_HUB_OFFLINE first", kind, repo, revision, c.cacheDir())
	}
	var files []FileInfo
	err = filepath.WalkDir(snap, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := os.Stat(p) // through the symlink to the blob
		if err != nil {
			return nil // a dangling link: not in the cache
		}
		rel, _ := filepath.Rel(snap, p)
		files = append(files, FileInfo{Path: filepath.ToSlash(rel), Size: st.Size()})
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("hub: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, filepath.Base(snap), nil
}
