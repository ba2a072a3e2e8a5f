package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// gpt2Files is a small stand-in for openai-community/gpt2: a file in git,
// an LFS file (served through the CDN redirect) and a file in a folder.
func gpt2Files() map[string]*fakeFile {
	return map[string]*fakeFile{
		"config.json":         {content: []byte(`{"n_layer": 12, "n_embd": 768}`)},
		"model.safetensors":   {content: randomBytes(1, 300_000), lfs: true},
		"tokenizer/vocab.txt": {content: []byte("hello\nworld\n")},
	}
}

func names(files map[string]*fakeFile) []string {
	var out []string
	for n := range files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func etagOf(f *fakeFile) string {
	if f.lfs {
		return f.sha256()
	}
	return gitSHA1(f.content)
}

// newTestClient points a client built by NewClient at the fake hub, with
// a fresh $HF_HOME; it returns the client and $HF_HOME/hub.
func newTestClient(t *testing.T, h *fakeHub) (*Client, string) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_ENDPOINT", h.hub.URL)
	c := NewClient()
	c.Progress = io.Discard
	c.retryWait = time.Millisecond
	return c, filepath.Join(home, "hub")
}

// checkSnapshot checks the layout huggingface_hub would have written:
// every file a relative symlink into blobs/{etag} with the right bytes,
// and nothing left half-done.
func checkSnapshot(t *testing.T, repoDir, snap string, files map[string]*fakeFile) {
	t.Helper()
	if want := filepath.Join(repoDir, "snapshots", fakeCommit); snap != want {
		t.Fatalf("snapshot = %s, want %s", snap, want)
	}
	for name, f := range files {
		p := filepath.Join(snap, filepath.FromSlash(name))
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, f.content) {
			t.Errorf("%s: %d bytes (err %v), want the %d bytes served", name, len(got), err, len(f.content))
		}
		target, err := os.Readlink(p)
		if err != nil {
			t.Errorf("%s is not a symlink: %v", name, err)
			continue
		}
		if filepath.IsAbs(target) {
			t.Errorf("%s links to the absolute path %s, want a relative one", name, target)
		}
		if got, want := filepath.Join(filepath.Dir(p), target), filepath.Join(repoDir, "blobs", etagOf(f)); got != want {
			t.Errorf("%s links to %s, want %s", name, got, want)
		}
	}
	left, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.incomplete"))
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestDownload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		kind     RepoKind
		repo     string
		revision string
		folder   string
		ref      string // the refs/ file Download must write ("" for none)
	}{
		{"model at main", Model, "openai-community/gpt2", "", "models--openai-community--gpt2", "main"},
		{"dataset at a branch with slashes", Dataset, "Skylion007/openwebtext", "refs/convert/parquet", "datasets--Skylion007--openwebtext", "refs/convert/parquet"},
		{"model at a commit", Model, "openai-community/gpt2", fakeCommit, "models--openai-community--gpt2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := gpt2Files()
			h := newFakeHub(t, tc.kind, tc.repo, files)
			c, cache := newTestClient(t, h)
			var log bytes.Buffer
			c.Progress = &log
			snap, err := c.Download(context.Background(), tc.kind, tc.repo, tc.revision, names(files))
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			repoDir := filepath.Join(cache, tc.folder)
			checkSnapshot(t, repoDir, snap, files)
			refs := filepath.Join(repoDir, "refs")
			if tc.ref != "" {
				if raw, err := os.ReadFile(filepath.Join(refs, filepath.FromSlash(tc.ref))); err != nil || string(raw) != fakeCommit {
					t.Errorf("refs/%s = %q (err %v), want %s", tc.ref, raw, err, fakeCommit)
				}
			} else if _, err := os.Stat(refs); err == nil {
				t.Errorf("refs/ written for a commit revision")
			}
			if got, err := c.Snapshot(tc.kind, tc.repo, tc.revision); err != nil || got != snap {
				t.Errorf("Client.Snapshot = %q, %v; want %q", got, err, snap)
			}
			if tc.kind == Model {
				if got, err := Snapshot(tc.repo, tc.revision); err != nil || got != snap {
					t.Errorf("Snapshot = %q, %v; want %q", got, err, snap)
				}
			}
			if h.cdnAuth != 0 {
				t.Errorf("%d requests reached the CDN with a token", h.cdnAuth)
			}
			if !strings.Contains(log.String(), "model.safetensors: 300000/300000 B (100%)") || !strings.Contains(log.String(), "B/s") {
				t.Errorf("progress output lacks the summary of model.safetensors:\n%s", log.String())
			}
		})
	}
}

// A connection cut mid-body is resumed with a Range request, within the
// same call when retries are allowed, else by the next call from the
// .incomplete file.
func TestDownloadResume(t *testing.T) {
	const cut = 100_000
	for _, tc := range []struct {
		name        string
		retries     int
		ignoreRange bool
	}{
		{"retry in the same call", 2, false},
		{"resume in the next call", 0, false},
		{"server without Range support", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := gpt2Files()
			big := files["model.safetensors"]
			big.cutAt = cut
			h := newFakeHub(t, Model, "openai-community/gpt2", files)
			h.ignoreRange = tc.ignoreRange
			c, cache := newTestClient(t, h)
			c.Retries = tc.retries
			repoDir := filepath.Join(cache, "models--openai-community--gpt2")
			incomplete := filepath.Join(repoDir, "blobs", big.sha256()+".incomplete")

			snap, err := c.Download(context.Background(), Model, "openai-community/gpt2", "main", names(files))
			if tc.retries == 0 {
				if err == nil || !strings.Contains(err.Error(), "run again to resume") {
					t.Fatalf("Download with a cut connection and no retries: err = %v, want one that says to run again", err)
				}
				if st, serr := os.Stat(incomplete); serr != nil || st.Size() != cut {
					t.Fatalf("after the cut, %s: %v, want %d bytes kept", incomplete, serr, cut)
				}
				if _, serr := os.Stat(filepath.Join(repoDir, "blobs", big.sha256())); serr == nil {
					t.Fatal("the blob exists under its final name after a failed download")
				}
				snap, err = c.Download(context.Background(), Model, "openai-community/gpt2", "main", names(files))
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			checkSnapshot(t, repoDir, snap, files)
			gets := h.requests("GET /repos/")
			// Every case asks to resume, even of a server that then ignores it.
			if !slices.ContainsFunc(gets, func(e string) bool { return strings.HasSuffix(e, "bytes=100000-") }) {
				t.Errorf("CDN GETs %v: no Range from byte %d was sent", gets, cut)
			}
		})
	}
}

// Bytes that do not match the announced hash are an error, and nothing is
// left under the final name, nor as .incomplete.
func TestDownloadChecksum(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string
	}{
		{"model.safetensors", "hub: model.safetensors: sha256 mismatch: got "},
		{"config.json", "hub: config.json: git-sha1 mismatch: got "},
	} {
		t.Run(tc.file, func(t *testing.T) {
			files := gpt2Files()
			files[tc.file].corrupt = true
			h := newFakeHub(t, Model, "openai-community/gpt2", files)
			c, cache := newTestClient(t, h)
			_, err := c.Download(context.Background(), Model, "openai-community/gpt2", "", []string{tc.file})
			if !errors.Is(err, ErrChecksum) || !strings.HasPrefix(err.Error(), tc.want) || !strings.Contains(err.Error(), ", want "+etagOf(files[tc.file])) {
				t.Fatalf("Download(corrupt %s) error = %v, want ErrChecksum %q…", tc.file, err, tc.want)
			}
			repoDir := filepath.Join(cache, "models--openai-community--gpt2")
			for _, p := range []string{
				filepath.Join(repoDir, "blobs", etagOf(files[tc.file])),
				filepath.Join(repoDir, "blobs", etagOf(files[tc.file])+".incomplete"),
				filepath.Join(repoDir, "snapshots", fakeCommit, tc.file),
				filepath.Join(repoDir, "refs", "main"),
			} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s exists after a checksum mismatch", p)
				}
			}
		})
	}
}

func TestDownloadErrors(t *testing.T) {
	closed := newFakeHub(t, Model, "x/y", nil)
	closed.hub.Close()
	for _, tc := range []struct {
		name     string
		repo     string
		revision string
		files    []string
		token    string // the fake hub requires it
		client   string // the client sends it
		endpoint string // overrides the fake hub's
		is       error
		want     []string // substrings of the message
	}{
		{"missing file", "openai-community/gpt2", "main", []string{"config.json", "nope.bin"}, "", "", "", ErrNotFound,
			[]string{"hub: nope.bin: not found in model openai-community/gpt2 at revision main (commit " + fakeCommit + ")", "404 EntryNotFound"}},
		{"missing revision", "openai-community/gpt2", "v9", []string{"config.json"}, "", "", "", ErrNotFound,
			[]string{"hub: config.json: revision v9 not found in model openai-community/gpt2", "404 RevisionNotFound"}},
		{"unknown repository", "someone/else", "", []string{"config.json"}, "", "", "", ErrUnauthorized,
			[]string{"model someone/else at revision main needs a token (set HF_TOKEN)"}},
		{"gated without token", "openai-community/gpt2", "", []string{"config.json"}, "hf_secret", "", "", ErrUnauthorized,
			[]string{"hub: config.json: model openai-community/gpt2 at revision main needs a token (set HF_TOKEN)", "401 GatedRepo"}},
		{"gated with a wrong token", "openai-community/gpt2", "", []string{"config.json"}, "hf_secret", "hf_wrong", "", ErrUnauthorized,
			[]string{"is gated and HF_TOKEN's account has no access: ask for it at " /* + endpoint */}},
		{"offline", "openai-community/gpt2", "", []string{"config.json"}, "", "", closed.hub.URL, ErrOffline,
			[]string{"hub: cannot reach " + closed.hub.URL + " (", "): are you offline? set HF_ENDPOINT for a mirror"}},
		{"bad repository id", "../etc", "", []string{"config.json"}, "", "", "", nil, []string{`hub: bad repository id "../etc"`}},
		{"file escaping the snapshot", "openai-community/gpt2", "", []string{"../../x"}, "", "", "", nil, []string{`file "../../x"`}},
		{"revision escaping refs", "openai-community/gpt2", "a/../../b", []string{"config.json"}, "", "", "", nil, []string{`bad revision "a/../../b"`}},
		{"no files", "openai-community/gpt2", "", nil, "", "", "", nil, []string{"no files to download"}},
		{"bad endpoint", "openai-community/gpt2", "", []string{"config.json"}, "", "", "huggingface.co", nil, []string{`endpoint "huggingface.co" is not an http(s) URL`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHub(t, Model, "openai-community/gpt2", gpt2Files())
			h.token = tc.token
			c, cache := newTestClient(t, h)
			c.Token = tc.client
			if tc.endpoint != "" {
				c.Endpoint = tc.endpoint
			}
			_, err := c.Download(context.Background(), Model, tc.repo, tc.revision, tc.files)
			if err == nil {
				t.Fatal("Download succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Download error %q is not %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Download error = %q, want it to contain %q", err, w)
				}
			}
			if tc.is == nil && len(h.requests("")) > 0 {
				t.Errorf("invalid input reached the server: %v", h.requests(""))
			}
			if _, serr := os.Stat(filepath.Join(cache, "models--openai-community--gpt2", "refs")); serr == nil {
				t.Error("refs/ written by a failed download")
			}
		})
	}
}

// The token is taken from $HF_TOKEN or from the file `huggingface-cli
// login` writes, sent to the hub, and kept from the CDN.
func TestDownloadToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(t *testing.T, home string)
	}{
		{"HF_TOKEN", func(t *testing.T, home string) { t.Setenv("HF_TOKEN", "hf_secret") }},
		{"$HF_HOME/token", func(t *testing.T, home string) {
			if err := os.WriteFile(filepath.Join(home, "token"), []byte("hf_secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := gpt2Files()
			h := newFakeHub(t, Model, "openai-community/gpt2", files)
			h.token = "hf_secret"
			_, cache := newTestClient(t, h)
			tc.set(t, filepath.Dir(cache))
			c := NewClient()
			c.Progress = io.Discard
			if c.Token != "hf_secret" {
				t.Fatalf("NewClient().Token = %q, want hf_secret", c.Token)
			}
			snap, err := c.Download(context.Background(), Model, "openai-community/gpt2", "", names(files))
			if err != nil {
				t.Fatalf("Download with the token: %v", err)
			}
			checkSnapshot(t, filepath.Join(cache, "models--openai-community--gpt2"), snap, files)
			if h.cdnAuth != 0 {
				t.Errorf("the token reached the CDN %d times", h.cdnAuth)
			}
		})
	}
}

// What is in the cache is not downloaded again, whoever put it there.
func TestDownloadReuse(t *testing.T) {
	const repo = "openai-community/gpt2"
	for _, tc := range []struct {
		name     string
		revision string
		prepare  func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile)
		heads    int // HEAD requests expected in the second call (-1: any)
		gets     int // GET requests expected in the second call
	}{
		{"second download", "", func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile) {
			download(t, c, "", files)
		}, 3, 0},
		{"pinned commit already there", fakeCommit, func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile) {
			download(t, c, "", files)
		}, 0, 0},
		{"offline with everything cached", "", func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile) {
			download(t, c, "", files)
			h.hub.Close()
		}, 0, 0},
		{"blobs from Python, no snapshot", "", func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile) {
			os.MkdirAll(filepath.Join(repoDir, "blobs"), 0o755)
			for _, f := range files {
				if err := os.WriteFile(filepath.Join(repoDir, "blobs", etagOf(f)), f.content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}, 3, 0},
		{"stale plain file in the snapshot", "", func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile) {
			download(t, c, "", files)
			p := filepath.Join(repoDir, "snapshots", fakeCommit, "config.json")
			os.Remove(p)
			if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 3, 0}, // the blob is still there: relinked, not fetched
		{"blob of the wrong size", "", func(t *testing.T, c *Client, h *fakeHub, repoDir string, files map[string]*fakeFile) {
			download(t, c, "", files)
			p := filepath.Join(repoDir, "blobs", etagOf(files["config.json"]))
			if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := gpt2Files()
			h := newFakeHub(t, Model, repo, files)
			c, cache := newTestClient(t, h)
			repoDir := filepath.Join(cache, "models--openai-community--gpt2")
			tc.prepare(t, c, h, repoDir, files)
			h.resetLog()
			snap, err := c.Download(context.Background(), Model, repo, tc.revision, names(files))
			if err != nil {
				t.Fatalf("second Download: %v", err)
			}
			checkSnapshot(t, repoDir, snap, files)
			if got := len(h.requests("HEAD ")); tc.heads >= 0 && got != tc.heads {
				t.Errorf("HEAD requests = %d, want %d: %v", got, tc.heads, h.requests(""))
			}
			if got := len(h.requests("GET ")); got != tc.gets {
				t.Errorf("GET requests = %d, want %d: %v", got, tc.gets, h.requests(""))
			}
		})
	}
}

func download(t *testing.T, c *Client, revision string, files map[string]*fakeFile) {
	t.Helper()
	if _, err := c.Download(context.Background(), Model, "openai-community/gpt2", revision, names(files)); err != nil {
		t.Fatalf("first Download: %v", err)
	}
}

// Cancelling ctx mid-transfer returns ctx's error and keeps the
// .incomplete file, which the next call resumes.
func TestDownloadCancel(t *testing.T) {
	files := gpt2Files()
	big := files["model.safetensors"]
	big.hang = make(chan struct{})
	h := newFakeHub(t, Model, "openai-community/gpt2", files)
	c, cache := newTestClient(t, h)
	repoDir := filepath.Join(cache, "models--openai-community--gpt2")
	incomplete := filepath.Join(repoDir, "blobs", big.sha256()+".incomplete")
	half := int64(len(big.content) / 2)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-big.hang
		// Cancel once the client has written what the server sent.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if st, err := os.Stat(incomplete); err == nil && st.Size() == half {
				break
			}
		}
		cancel()
	}()
	_, err := c.Download(ctx, Model, "openai-community/gpt2", "", []string{"model.safetensors"})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run again to resume") {
		t.Fatalf("cancelled Download error = %v, want context.Canceled and a hint to resume", err)
	}
	if st, err := os.Stat(incomplete); err != nil || st.Size() != half {
		t.Fatalf("after cancelling, %s: %v, want %d bytes", incomplete, err, half)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "blobs", big.sha256())); err == nil {
		t.Fatal("the blob exists under its final name after cancelling")
	}

	snap, err := c.Download(context.Background(), Model, "openai-community/gpt2", "", []string{"model.safetensors"})
	if err != nil {
		t.Fatalf("resumed Download: %v", err)
	}
	checkSnapshot(t, repoDir, snap, map[string]*fakeFile{"model.safetensors": big})
	if gets := h.requests("GET /repos/"); !slices.ContainsFunc(gets, func(e string) bool { return strings.HasSuffix(e, "bytes=150000-") }) {
		t.Errorf("CDN GETs %v: no Range request from byte %d", gets, half)
	}
}

// Two downloads of one blob at once: the lock makes the second wait and
// then find the blob, so it is fetched once.
func TestDownloadConcurrent(t *testing.T) {
	files := gpt2Files()
	files["model.safetensors"].slow = 300 * time.Millisecond // so that the two overlap
	h := newFakeHub(t, Model, "openai-community/gpt2", files)
	c, cache := newTestClient(t, h)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	snaps := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			snaps[i], errs[i] = c.Download(context.Background(), Model, "openai-community/gpt2", "", names(files))
		})
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("Download %d: %v", i, errs[i])
		}
		checkSnapshot(t, filepath.Join(cache, "models--openai-community--gpt2"), snaps[i], files)
	}
	if gets := h.requests("GET /repos/"); len(gets) != 1 {
		t.Errorf("the LFS blob was fetched %d times, want once: %v", len(gets), gets)
	}
}

func TestListFiles(t *testing.T) {
	files := map[string]*fakeFile{
		"plain_text/train/0000.parquet": {content: randomBytes(2, 5000), lfs: true},
		"plain_text/train/0001.parquet": {content: randomBytes(3, 7000), lfs: true},
		"README.md":                     {content: []byte("# OpenWebText\n")},
	}
	h := newFakeHub(t, Dataset, "Skylion007/openwebtext", files)
	c, _ := newTestClient(t, h)
	got, commit, err := c.ListFiles(context.Background(), Dataset, "Skylion007/openwebtext", "refs/convert/parquet")
	if err != nil {
		t.Fatalf("ListFiles: %v", err)
	}
	if commit != fakeCommit {
		t.Errorf("ListFiles commit = %s, want %s", commit, fakeCommit)
	}
	want := []FileInfo{
		{Path: "README.md", Size: 14, BlobID: gitSHA1(files["README.md"].content)},
		{Path: "plain_text/train/0000.parquet", Size: 5000, BlobID: gitSHA1(files["plain_text/train/0000.parquet"].pointer()), SHA256: files["plain_text/train/0000.parquet"].sha256()},
		{Path: "plain_text/train/0001.parquet", Size: 7000, BlobID: gitSHA1(files["plain_text/train/0001.parquet"].pointer()), SHA256: files["plain_text/train/0001.parquet"].sha256()},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListFiles = %+v, want %+v", got, want)
	}
	if reqs := h.requests("GET "); len(reqs) != 1 || reqs[0] != "GET /api/datasets/Skylion007/openwebtext/revision/refs%2Fconvert%2Fparquet" {
		t.Errorf("requests = %v", reqs)
	}
	if _, _, err := c.ListFiles(context.Background(), Dataset, "Skylion007/openwebtext", "v9"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "revision v9 not found in dataset Skylion007/openwebtext") {
		t.Errorf("ListFiles(v9) error = %v, want ErrNotFound naming the revision", err)
	}
	if _, _, err := c.ListFiles(context.Background(), Model, "Skylion007/openwebtext", ""); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("ListFiles(as a model) error = %v, want ErrUnauthorized (the hub's answer for an unknown repository)", err)
	}
}

// The verifier against hashes computed by other tools: `git hash-object`
// for the git blob ids, sha256sum for sha256.
func TestVerifier(t *testing.T) {
	for _, tc := range []struct {
		data, etag string
		ok         bool
	}{
		{"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", true},        // git hash-object /dev/null
		{"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a", true}, // echo hello | git hash-object --stdin
		{"hello\n", "ce013625030ba8dba906f756967f9e9ca394464b", false},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", true}, // FIPS 180-2 sha256("abc")
		{"abd", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", false},
		{"anything", "mirror-etag-1", true}, // not a hash: only the size is checked
	} {
		v := newVerifier(tc.etag, int64(len(tc.data)))
		v.Write([]byte(tc.data))
		if err := v.check("f"); (err == nil) != tc.ok {
			t.Errorf("verify(%q, %s) = %v, want ok %v", tc.data, tc.etag, err, tc.ok)
		}
	}
}

func TestFileURL(t *testing.T) {
	c := &Client{Endpoint: "https://hf-mirror.example/"}
	for _, tc := range []struct {
		kind            RepoKind
		repo, rev, file string
		want            string
	}{
		{Model, "openai-community/gpt2", "main", "model.safetensors", "https://hf-mirror.example/openai-community/gpt2/resolve/main/model.safetensors"},
		{Dataset, "Skylion007/openwebtext", "refs/convert/parquet", "plain_text/train/0000.parquet", "https://hf-mirror.example/datasets/Skylion007/openwebtext/resolve/refs%2Fconvert%2Fparquet/plain_text/train/0000.parquet"},
		{Model, "o/n", "main", "a b/c#d?.txt", "https://hf-mirror.example/o/n/resolve/main/a%20b/c%23d%3F.txt"},
	} {
		if got := c.fileURL(tc.kind, tc.repo, tc.rev, tc.file); got != tc.want {
			t.Errorf("fileURL(%v, %s, %s, %s) = %s, want %s", tc.kind, tc.repo, tc.rev, tc.file, got, tc.want)
		}
	}
}

func TestNormalizeETag(t *testing.T) {
	for in, want := range map[string]string{
		`"abc123"`:   "abc123",
		`W/"abc123"`: "abc123",
		`abc123`:     "abc123",
		` "x" `:      "x",
	} {
		if got := normalizeETag(in); got != want {
			t.Errorf("normalizeETag(%q) = %q, want %q", in, got, want)
		}
	}
}
