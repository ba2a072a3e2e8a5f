package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHub mimics what Download and ListFiles use of huggingface.co, as
// huggingface_hub's file_download.py and hf_api.py read it:
//
//   - HEAD/GET {endpoint}/[datasets/]{repo}/resolve/{rev}/{file}: for a file
//     in git, 200 with ETag = git blob sha1, Content-Length, X-Repo-Commit;
//     for an LFS file, 302 to the CDN (another server, so another host) with
//     X-Linked-Etag = sha256, X-Linked-Size, X-Repo-Commit and the ETag of
//     the pointer file.
//   - GET on the CDN: the bytes, with Range support (206, Content-Range).
//   - GET {endpoint}/api/{models|datasets}/{repo}/revision/{rev}?blobs=true
//     (siblings with size, blobId and lfs.sha256) and POST
//     {endpoint}/api/{models|datasets}/{repo}/paths-info/{rev} with the
//     form paths={file} (entries with oid, size and lfs.oid), as
//     huggingface_hub's model_info and get_paths_info ask for them.
//   - Errors as the hub sends them: 401 with X-Error-Code RepoNotFound or
//     GatedRepo, 404 with RevisionNotFound or EntryNotFound.
type fakeHub struct {
	hub, cdn *httptest.Server
	kind     RepoKind
	repo     string
	commit   string
	branches map[string]string // branch or tag → commit
	token    string            // when set, required on the hub (not the CDN)

	mu          sync.Mutex
	files       map[string]*fakeFile
	log         []string // "HEAD /path", "GET /path bytes=N-"
	cdnAuth     int      // requests that reached the CDN with a token
	ignoreRange bool     // answer Range requests with the whole file (200)

	// Faults of a misbehaving hub or mirror.
	noAPI       bool // the metadata API answers 404 (a mirror without it)
	noPathsInfo bool // paths-info answers 404; the revision listing works
	headFails   int  // the next headFails HEADs on the hub answer 500
	getStatus   int  // when set, every GET of contents answers this status
}

type fakeFile struct {
	content []byte
	lfs     bool
	corrupt bool // serve other bytes than the announced hash covers
	cutAt   int  // > 0: the first GET breaks the connection after cutAt bytes
	hang    chan struct{}
	// hang != nil: the first GET sends half the file, closes hang, then
	// waits until the client goes away.
	slow   time.Duration // the first GET pauses this long half-way
	served int           // GETs of the contents so far

	// What a misbehaving hub says about the file, instead of the truth.
	etag     string // the hash header: ETag of a git file, X-Linked-Etag of an LFS file
	headSize string // the size header of HEAD: Content-Length or X-Linked-Size
	body     []byte // what GET serves instead of content (an error page)
	ctype    string // the Content-Type of GET's answer
}

// pointer is the Git LFS pointer file git stores for an LFS file; its
// git blob id is what the hub reports as the file's blobId and oid.
func (f *fakeFile) pointer() []byte {
	return []byte("version https://git-lfs.github.com/spec/v1\noid sha256:" + f.sha256() + "\nsize " + strconv.Itoa(len(f.content)) + "\n")
}

func (f *fakeFile) sha256() string {
	s := sha256.Sum256(f.content)
	return hex.EncodeToString(s[:])
}

// gitSHA1 computes the git blob id independently of the code under test.
func gitSHA1(b []byte) string {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.Itoa(len(b)) + "\x00"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

const fakeCommit = "607a30d783dfa663caf39e06633721c8d4cfcd7e"

// randomBytes returns n seeded pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newFakeHub(t *testing.T, kind RepoKind, repo string, files map[string]*fakeFile) *fakeHub {
	t.Helper()
	h := &fakeHub{kind: kind, repo: repo, commit: fakeCommit, files: files,
		branches: map[string]string{"main": fakeCommit, "refs/convert/parquet": fakeCommit}}
	h.hub = httptest.NewServer(http.HandlerFunc(h.serveHub))
	h.cdn = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(func() {
		h.hub.Close()
		h.cdn.Close()
	})
	return h
}

func (h *fakeHub) record(r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := r.Method + " " + r.URL.EscapedPath()
	if rg := r.Header.Get("Range"); rg != "" {
		e += " " + rg
	}
	h.log = append(h.log, e)
}

// requests returns the log entries that start with prefix ("GET ", "HEAD ").
func (h *fakeHub) requests(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.log {
		if strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

func (h *fakeHub) resetLog() {
	h.mu.Lock()
	h.log = nil
	h.mu.Unlock()
}

func writeHubError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Error-Code", code)
	w.Header().Set("X-Error-Message", msg)
	w.WriteHeader(status)
}

func (h *fakeHub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	for i, s := range segs {
		var err error
		if segs[i], err = url.PathUnescape(s); err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
	}
	if h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token {
		writeHubError(w, http.StatusUnauthorized, "GatedRepo", "Access to this repository is restricted. You must be authenticated to access it.")
		return
	}
	api := len(segs) > 0 && segs[0] == "api"
	if api {
		segs = segs[1:]
	}
	kind := Model
	if len(segs) > 0 && segs[0] == "datasets" {
		kind, segs = Dataset, segs[1:]
	} else if api && len(segs) > 0 && segs[0] == "models" {
		segs = segs[1:]
	}
	if api && (h.noAPI || (h.noPathsInfo && len(segs) > 2 && segs[2] == "paths-info")) {
		http.NotFound(w, r)
		return
	}
	verbOK := len(segs) >= 5 && segs[2] == "resolve"
	if api {
		verbOK = len(segs) == 4 && (segs[2] == "revision" && r.Method == http.MethodGet || segs[2] == "paths-info" && r.Method == http.MethodPost)
	}
	if !verbOK {
		http.NotFound(w, r)
		return
	}
	if kind != h.kind || segs[0]+"/"+segs[1] != h.repo {
		writeHubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		return
	}
	rev := segs[3]
	commit, ok := h.branches[rev]
	if rev == h.commit {
		commit, ok = h.commit, true
	}
	if !ok {
		writeHubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
		return
	}
	if api && segs[2] == "paths-info" {
		h.servePathsInfo(w, r)
		return
	}
	if api {
		h.serveAPI(w, r, commit)
		return
	}
	if r.Method == http.MethodHead {
		h.mu.Lock()
		fail := h.headFails > 0
		if fail {
			h.headFails--
		}
		h.mu.Unlock()
		if fail {
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			return
		}
	}
	name := strings.Join(segs[4:], "/")
	h.mu.Lock()
	f := h.files[name]
	h.mu.Unlock()
	w.Header().Set("X-Repo-Commit", commit)
	if f == nil {
		writeHubError(w, http.StatusNotFound, "EntryNotFound", "Entry not found")
		return
	}
	if f.lfs {
		sum := f.sha256()
		etag, size := sum, strconv.Itoa(len(f.content))
		if f.etag != "" {
			etag = f.etag
		}
		if f.headSize != "" {
			size = f.headSize
		}
		w.Header().Set("X-Linked-Etag", `"`+etag+`"`)
		w.Header().Set("X-Linked-Size", size)
		w.Header().Set("ETag", `"`+gitSHA1(f.pointer())+`"`)
		w.Header().Set("Location", h.cdn.URL+"/repos/"+sum+"?X-Amz-Signature=x")
		w.WriteHeader(http.StatusFound)
		return
	}
	etag := gitSHA1(f.content)
	if f.etag != "" {
		etag = f.etag
	}
	w.Header().Set("ETag", `"`+etag+`"`)
	h.serveContent(w, r, f)
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	h.mu.Lock()
	if r.Header.Get("Authorization") != "" {
		h.cdnAuth++
	}
	var f *fakeFile
	for _, ff := range h.files {
		if ff.lfs && r.URL.Path == "/repos/"+ff.sha256() {
			f = ff
		}
	}
	h.mu.Unlock()
	if f == nil {
		http.NotFound(w, r)
		return
	}
	h.serveContent(w, r, f)
}

// serveContent answers HEAD and GET with Range support ("bytes=N-", the
// form Download sends), and the faults a test asked for.
func (h *fakeHub) serveContent(w http.ResponseWriter, r *http.Request, f *fakeFile) {
	h.mu.Lock()
	data := f.content
	if f.body != nil {
		data = f.body
	}
	if f.corrupt {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	first := r.Method == http.MethodGet && f.served == 0
	if r.Method == http.MethodGet {
		f.served++
	}
	ignoreRange, getStatus := h.ignoreRange, h.getStatus
	h.mu.Unlock()
	if r.Method == http.MethodGet && getStatus != 0 {
		http.Error(w, http.StatusText(getStatus), getStatus)
		return
	}

	start, status := 0, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !ignoreRange {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		if err != nil || n >= len(data) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = n, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
	if f.ctype != "" {
		w.Header().Set("Content-Type", f.ctype)
	}
	if r.Method == http.MethodHead {
		if f.headSize != "" {
			w.Header().Set("Content-Length", f.headSize)
		}
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)
	body := data[start:]
	switch {
	case first && f.cutAt > 0:
		w.Write(body[:f.cutAt])
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // the server closes the connection mid-body
	case first && f.slow > 0:
		w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		time.Sleep(f.slow)
		w.Write(body[len(body)/2:])
		return
	case first && f.hang != nil:
		w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		close(f.hang)
		<-r.Context().Done()
		return
	}
	w.Write(body)
}

func (h *fakeHub) serveAPI(w http.ResponseWriter, r *http.Request, commit string) {
	type lfs struct {
		SHA256      string `json:"sha256"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type sibling struct {
		RFilename string `json:"rfilename"`
		Size      *int   `json:"size,omitempty"`
		BlobID    string `json:"blobId,omitempty"`
		LFS       *lfs   `json:"lfs,omitempty"`
	}
	blobs := r.URL.Query().Get("blobs") == "true"
	info := struct {
		ID       string    `json:"id"`
		SHA      string    `json:"sha"`
		Siblings []sibling `json:"siblings"`
	}{ID: h.repo, SHA: commit, Siblings: []sibling{}}
	h.mu.Lock()
	for name, f := range h.files {
		s := sibling{RFilename: name}
		if blobs {
			n := len(f.content)
			s.Size = &n
			s.BlobID = gitSHA1(f.content)
			if f.lfs {
				s.BlobID = gitSHA1(f.pointer())
				s.LFS = &lfs{SHA256: f.sha256(), Size: n, PointerSize: len(f.pointer())}
			}
		}
		info.Siblings = append(info.Siblings, s)
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(info)
}

// servePathsInfo answers POST .../paths-info/{rev} (form paths=…, repeated)
// as the hub does: one entry per file that exists, with the git blob id as
// oid and, for LFS files, lfs.oid the sha256 of the contents.
func (h *fakeHub) servePathsInfo(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	type lfs struct {
		OID         string `json:"oid"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type entry struct {
		Type string `json:"type"`
		OID  string `json:"oid"`
		Size int    `json:"size"`
		Path string `json:"path"`
		LFS  *lfs   `json:"lfs,omitempty"`
	}
	out := []entry{}
	h.mu.Lock()
	for _, p := range r.PostForm["paths"] {
		f := h.files[p]
		if f == nil {
			continue
		}
		e := entry{Type: "file", OID: gitSHA1(f.content), Size: len(f.content), Path: p}
		if f.lfs {
			ptr := f.pointer()
			e.OID = gitSHA1(ptr)
			e.LFS = &lfs{OID: f.sha256(), Size: len(f.content), PointerSize: len(ptr)}
		}
		out = append(out, e)
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
