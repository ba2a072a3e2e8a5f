package hub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests of what Download trusts (issue 18, row 8): every file is verified
// by a hash when the hub gives one (headers or metadata API) and by size
// always; an error page is never stored as a file; HEAD is retried as GET
// is; an error names the file once.

const gpt2 = "openai-community/gpt2"

// errorPage is what a proxy, a captive portal or a misconfigured mirror
// answers with 200.
var errorPage = []byte("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><p>Please sign in to continue.</p></body></html>\n")

// mustFail checks that Download failed with a message containing want,
// and that nothing of file was left in the cache: no blob, no
// .incomplete, no snapshot entry, no ref.
func mustFail(t *testing.T, err error, cache, file string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Download succeeded, want an error containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Download error = %q, want it to contain %q", err, w)
		}
	}
	if n := strings.Count(err.Error(), "hub: "+file+": "); n != 1 || !strings.HasPrefix(err.Error(), "hub: "+file+": ") {
		t.Errorf("Download error = %q: want it to start with %q, once (found %d)", err, "hub: "+file+": ", n)
	}
	repoDir := filepath.Join(cache, "models--openai-community--gpt2")
	if _, serr := os.Lstat(filepath.Join(repoDir, "snapshots", fakeCommit, file)); serr == nil {
		t.Errorf("%s is in the snapshot after a refused download", file)
	}
	if _, serr := os.Lstat(filepath.Join(repoDir, "refs", "main")); serr == nil {
		t.Error("refs/main written by a refused download")
	}
	blobs, _ := os.ReadDir(filepath.Join(repoDir, "blobs"))
	for _, b := range blobs {
		t.Errorf("blobs/%s left after a refused download", b.Name())
	}
}

// An error page served with 200 under a file's name, by a server whose
// ETag is not a hash: it was stored as model.safetensors (exit 0).
func TestDownloadRefusesErrorPage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		ctype string
		noAPI bool
		want  []string
	}{
		{"weights as text/html, no metadata API", "model.safetensors", "text/html; charset=utf-8", true,
			[]string{"HTML page", "text/html"}},
		{"weights as octet-stream, no metadata API", "model.safetensors", "application/octet-stream", true,
			[]string{"HTML page"}},
		{"weights, the metadata API tells the real size", "model.safetensors", "text/html", false,
			[]string{"metadata API", "300000 bytes"}},
		{"an unverifiable config.json", "config.json", "text/html", true,
			[]string{"HTML page"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]*fakeFile{tc.file: {content: randomBytes(1, 300_000), etag: "mirror-etag-1", body: errorPage, ctype: tc.ctype}}
			h := newFakeHub(t, Model, gpt2, files)
			h.noAPI = tc.noAPI
			c, cache := newTestClient(t, h)
			_, err := c.Download(context.Background(), Model, gpt2, "", []string{tc.file})
			mustFail(t, err, cache, tc.file, tc.want...)
		})
	}
}

// A hub answer of 0 bytes for a file that cannot be empty is refused
// unless the metadata API says so too; the empty file it confirms is
// fetched.
func TestDownloadZeroSize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		f     *fakeFile
		noAPI bool
		want  []string // "" for success
	}{
		{"Content-Length: 0, no metadata API", &fakeFile{content: randomBytes(1, 300_000), etag: "mirror-etag-1", headSize: "0"}, true,
			[]string{"0 bytes", "cannot be empty"}},
		{"Content-Length: 0, the metadata API says 300000", &fakeFile{content: randomBytes(1, 300_000), etag: "mirror-etag-1", headSize: "0"}, false,
			[]string{"0 bytes", "300000"}},
		{"X-Linked-Size: 0 of an LFS file", &fakeFile{content: randomBytes(1, 300_000), lfs: true, headSize: "0"}, false,
			[]string{"0 bytes"}},
		{"X-Linked-Size: 0, no metadata API", &fakeFile{content: randomBytes(1, 300_000), lfs: true, headSize: "0"}, true,
			[]string{"0 bytes", "cannot be empty"}},
		{"an empty file the metadata API confirms", &fakeFile{content: []byte{}, etag: "mirror-etag-1"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]*fakeFile{"model.safetensors": tc.f}
			h := newFakeHub(t, Model, gpt2, files)
			h.noAPI = tc.noAPI
			c, cache := newTestClient(t, h)
			snap, err := c.Download(context.Background(), Model, gpt2, "", []string{"model.safetensors"})
			if tc.want != nil {
				mustFail(t, err, cache, "model.safetensors", tc.want...)
				return
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			if st, err := os.Stat(filepath.Join(snap, "model.safetensors")); err != nil || st.Size() != 0 {
				t.Errorf("model.safetensors: %v, %v; want an empty file", st, err)
			}
		})
	}
}

// HEAD is retried as GET is: a 500 that passes is not an error; one that
// lasts is, after c.Retries more tries, named once.
func TestDownloadHeadRetry(t *testing.T) {
	files := gpt2Files()
	h := newFakeHub(t, Model, gpt2, files)
	h.headFails = 1
	c, cache := newTestClient(t, h)
	var log bytes.Buffer
	c.Progress = &log
	snap, err := c.Download(context.Background(), Model, gpt2, "", names(files))
	if err != nil {
		t.Fatalf("Download after one HEAD answered 500: %v", err)
	}
	checkSnapshot(t, filepath.Join(cache, "models--openai-community--gpt2"), snap, files)
	if heads := h.requests("HEAD "); len(heads) != len(files)+1 {
		t.Errorf("HEAD requests = %d, want %d (one retried): %v", len(heads), len(files)+1, heads)
	}
	if !strings.Contains(log.String(), "500") || !strings.Contains(log.String(), "(1/5)") {
		t.Errorf("the retry is not logged:\n%s", log.String())
	}

	h = newFakeHub(t, Model, gpt2, gpt2Files())
	h.headFails = 1000
	c, cache = newTestClient(t, h)
	c.Retries = 2
	_, err = c.Download(context.Background(), Model, gpt2, "", []string{"model.safetensors"})
	mustFail(t, err, cache, "model.safetensors", "answered 500", "asked 3 times")
	if heads := h.requests("HEAD "); len(heads) != 3 {
		t.Errorf("HEAD requests = %d, want 3: %v", len(heads), heads)
	}
}

// With everything cached, an unreachable hub is not retried: the cached
// snapshot is used at once.
func TestDownloadOfflineNoWait(t *testing.T) {
	files := gpt2Files()
	h := newFakeHub(t, Model, gpt2, files)
	c, _ := newTestClient(t, h)
	download(t, c, "", files)
	h.hub.Close()
	c.retryWait = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Download(ctx, Model, gpt2, "", names(files)); err != nil {
		t.Fatalf("offline Download with everything cached: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("offline Download took %v: it waited to retry", d)
	}
}

// The hash of an LFS file is X-Linked-Etag (its ETag is that of the
// pointer); when that is no hash (some mirrors send their storage's ETag),
// the metadata API's lfs.oid is: paths-info, else the revision listing.
func TestDownloadLinkedEtag(t *testing.T) {
	other := randomBytes(9, 10)
	otherFile := &fakeFile{content: other}
	for _, tc := range []struct {
		name        string
		etag        string // X-Linked-Etag sent ("" the true sha256)
		corrupt     bool
		noPathsInfo bool
		wantErr     bool
	}{
		{"true X-Linked-Etag", "", false, false, false},
		{"true X-Linked-Etag, corrupt bytes", "", true, false, true},
		{"X-Linked-Etag of other bytes", otherFile.sha256(), false, false, true},
		{"non-hex X-Linked-Etag", "d41d8cd98f00b204e9800998ecf8427e-3", false, false, false},
		{"non-hex X-Linked-Etag, corrupt bytes", "d41d8cd98f00b204e9800998ecf8427e-3", true, false, true},
		{"non-hex X-Linked-Etag, corrupt bytes, no paths-info", "d41d8cd98f00b204e9800998ecf8427e-3", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeFile{content: randomBytes(1, 300_000), lfs: true, etag: tc.etag, corrupt: tc.corrupt}
			h := newFakeHub(t, Model, gpt2, map[string]*fakeFile{"model.safetensors": f})
			h.noPathsInfo = tc.noPathsInfo
			c, cache := newTestClient(t, h)
			var log bytes.Buffer
			c.Progress = &log
			snap, err := c.Download(context.Background(), Model, gpt2, "", []string{"model.safetensors"})
			if tc.wantErr {
				want := f.sha256()
				if tc.etag != "" && sha256Re.MatchString(tc.etag) {
					want = tc.etag
				}
				if !errors.Is(err, ErrChecksum) {
					t.Errorf("Download error = %v, want ErrChecksum", err)
				}
				mustFail(t, err, cache, "model.safetensors", "sha256 mismatch", "want "+want)
				return
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			got, err := os.ReadFile(filepath.Join(snap, "model.safetensors"))
			if err != nil || !bytes.Equal(got, f.content) {
				t.Errorf("model.safetensors: %d bytes (%v), want the %d served", len(got), err, len(f.content))
			}
			name := tc.etag
			if name == "" {
				name = f.sha256()
			}
			if _, err := os.Stat(filepath.Join(cache, "models--openai-community--gpt2", "blobs", name)); err != nil {
				t.Errorf("the blob is not named by X-Linked-Etag as huggingface_hub names it: %v", err)
			}
			if strings.Contains(log.String(), "not verified") {
				t.Errorf("a verified file is reported unverified:\n%s", log.String())
			}
			if posts := h.requests("POST "); tc.etag == "" && len(posts) > 0 {
				t.Errorf("the metadata API was asked although X-Linked-Etag is a sha256: %v", posts)
			}
		})
	}
}

// A file in git whose ETag is not its git blob id is checked against the
// blob id of the metadata API.
func TestDownloadGitBlobFromAPI(t *testing.T) {
	for _, noPathsInfo := range []bool{false, true} {
		files := gpt2Files()
		files["config.json"].etag = "mirror-etag-1"
		files["config.json"].corrupt = true
		h := newFakeHub(t, Model, gpt2, files)
		h.noPathsInfo = noPathsInfo
		c, cache := newTestClient(t, h)
		_, err := c.Download(context.Background(), Model, gpt2, "", []string{"config.json"})
		if !errors.Is(err, ErrChecksum) {
			t.Errorf("noPathsInfo %v: Download error = %v, want ErrChecksum", noPathsInfo, err)
		}
		mustFail(t, err, cache, "config.json", "git-sha1 mismatch", "want "+gitSHA1(files["config.json"].content))
	}
}

// What nothing can verify is kept when its size matches, with a warning
// that -q does not silence, and refused under RequireVerified.
func TestDownloadUnverified(t *testing.T) {
	newHub := func(t *testing.T) (*fakeHub, map[string]*fakeFile) {
		files := gpt2Files()
		for i, name := range names(files) {
			files[name].lfs = false
			files[name].etag = "mirror-etag-" + strconv.Itoa(i+1)
		}
		h := newFakeHub(t, Model, gpt2, files)
		h.noAPI = true
		return h, files
	}
	h, files := newHub(t)
	c, cache := newTestClient(t, h)
	var log bytes.Buffer
	c.Progress, c.Quiet = &log, true
	snap, err := c.Download(context.Background(), Model, gpt2, "", []string{"config.json", "model.safetensors"})
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	for _, name := range []string{"config.json", "model.safetensors"} {
		if got, err := os.ReadFile(filepath.Join(snap, name)); err != nil || !bytes.Equal(got, files[name].content) {
			t.Errorf("%s: %d bytes (%v), want the %d served", name, len(got), err, len(files[name].content))
		}
		if !strings.Contains(log.String(), gpt2+"/"+name+": warning: not verified") {
			t.Errorf("no warning that %s is not verified:\n%s", name, log.String())
		}
	}
	// The second time it is found in the cache, still unverified.
	log.Reset()
	if _, err := c.Download(context.Background(), Model, gpt2, "", []string{"config.json"}); err != nil {
		t.Fatalf("second Download: %v", err)
	}
	if !strings.Contains(log.String(), "warning: not verified") {
		t.Errorf("the cached copy is not reported unverified:\n%s", log.String())
	}

	h, _ = newHub(t)
	c, cache = newTestClient(t, h)
	c.RequireVerified = true
	_, err = c.Download(context.Background(), Model, gpt2, "", []string{"config.json"})
	if !errors.Is(err, ErrUnverified) {
		t.Errorf("Download with RequireVerified: %v, want ErrUnverified", err)
	}
	mustFail(t, err, cache, "config.json", "mirror-etag-1", "metadata API")
}

// An error page an older version stored under a blob's name, of the right
// size, is fetched again rather than linked.
func TestDownloadReplacesCachedErrorPage(t *testing.T) {
	content := randomBytes(1, 3000)
	page := append(append([]byte(nil), errorPage...), bytes.Repeat([]byte(" "), len(content)-len(errorPage))...)
	files := map[string]*fakeFile{"model.safetensors": {content: content, etag: "mirror-etag-1"}}
	h := newFakeHub(t, Model, gpt2, files)
	h.noAPI = true
	c, cache := newTestClient(t, h)
	repoDir := filepath.Join(cache, "models--openai-community--gpt2")
	blob := filepath.Join(repoDir, "blobs", "mirror-etag-1")
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, page, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := link(blob, filepath.Join(repoDir, "snapshots", fakeCommit, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Download(context.Background(), Model, gpt2, "", []string{"model.safetensors"})
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(snap, "model.safetensors")); !bytes.Equal(got, content) {
		t.Errorf("model.safetensors still holds the cached error page")
	}
	if gets := h.requests("GET /" + gpt2 + "/resolve/"); len(gets) != 1 {
		t.Errorf("GETs of the file = %v, want one", gets)
	}
}

// A failure the transfer retries until it gives up names the file once,
// whether the hub or the CDN answered.
func TestDownloadErrorPrefixOnce(t *testing.T) {
	for _, file := range []string{"model.safetensors", "config.json"} {
		h := newFakeHub(t, Model, gpt2, gpt2Files())
		h.getStatus = 500
		c, cache := newTestClient(t, h)
		c.Retries = 1
		_, err := c.Download(context.Background(), Model, gpt2, "", []string{file})
		mustFail(t, err, cache, file, "download stopped at 0 of", "answered 500")
	}
}

// Files the hub's headers verify cost no metadata request.
func TestDownloadNoAPIWhenHeadersSuffice(t *testing.T) {
	files := gpt2Files()
	h := newFakeHub(t, Model, gpt2, files)
	c, _ := newTestClient(t, h)
	download(t, c, "", files)
	for _, e := range h.requests("") {
		if strings.Contains(e, "/api/") {
			t.Errorf("metadata request %q although every ETag is a hash", e)
		}
	}
}
