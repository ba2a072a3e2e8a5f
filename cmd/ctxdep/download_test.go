package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// `download transcoders` against a local stand-in for the hub (plain git
// files: ETag = sha256, X-Repo-Commit), into a temporary $HF_HOME; then the
// default --transcoders lookup finds the files. The stand-in serves the
// tiny layer-1 transcoder under the released file names.
func TestDownloadThenDefaultLookup(t *testing.T) {
	content, err := os.ReadFile(filepath.Join(tinyTC, transcoder.FileName(1, 64)))
	if err != nil {
		t.Fatal(err)
	}
	sparsity, _ := os.ReadFile(filepath.Join(tinyTC, transcoder.SparsityName(1, 64)))
	files := map[string][]byte{transcoder.FileName(1, 24576): content, transcoder.SparsityName(1, 24576): sparsity}
	const commit = "4f3ca345572ce2d75018a60d10b4dca8bd899e99"
	var gets int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /{repo}/resolve/{main or the commit}/{file}
		rest, isRepo := strings.CutPrefix(r.URL.Path, "/"+transcodersRepo+"/resolve/")
		rev, name, _ := strings.Cut(rest, "/")
		body, ok := files[name]
		if !isRepo || (rev != "main" && rev != commit) || !ok {
			w.Header().Set("X-Error-Code", "EntryNotFound")
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		sum := sha256.Sum256(body)
		w.Header().Set("X-Repo-Commit", commit)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			gets++
			w.Write(body)
		}
	}))
	defer srv.Close()
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("CTXDEP_TRANSCODERS", "")

	code, out, errs := ctxdep(t, "download", "transcoders", "--layers", "1", "-q")
	if code != 0 {
		t.Fatalf("download: %d %s", code, errs)
	}
	snap := filepath.Join(home, "hub", "models--pchlenski--gpt2-transcoders", "snapshots", commit)
	if !strings.Contains(out, snap) {
		t.Errorf("download printed %q, want the snapshot %s", out, snap)
	}
	if gets != 2 {
		t.Errorf("%d GETs, want 2", gets)
	}
	// Found by default, and used: cache build --with-acts with no --transcoders.
	dir := filepath.Join(t.TempDir(), "c")
	code, _, errs = ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy, "--with-acts", "--out", dir)
	if code != 0 {
		t.Fatalf("cache build with downloaded transcoders: %d %s", code, errs)
	}
	// A second download fetches nothing.
	if code, _, errs := ctxdep(t, "download", "transcoders", "--layers", "1", "-q"); code != 0 || gets != 2 {
		t.Errorf("second download: %d %s, %d GETs", code, errs, gets)
	}
	code, _, errs = ctxdep(t, "download", "transcoders", "--layers", "12")
	expectError(t, code, errs, 2, "--layers")
	code, _, errs = ctxdep(t, "download", "model", "-q")
	expectError(t, code, errs, 1, "config.json")
}
