package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/progress"
)

// Download fetches files (paths in the repository, "/"-separated) of repo
// at revision ("" means main: a branch, a tag or a commit hash) into the
// hub cache and returns the snapshot directory that holds them,
// {cache}/{kind}s--{owner}--{name}/snapshots/{commit}.
//
// A file already in that snapshot with the size the hub announces, or
// whose blob is already in the cache, is not downloaded again; with a
// commit hash as revision and every file present, no request is made at
// all; an Offline client makes no request ever, and answers from the
// cached snapshot of revision or names the files it lacks. Each new blob
// is downloaded to blobs/{etag}.incomplete (resuming
// what an earlier, interrupted run left there with a Range request),
// verified, and renamed into place. Cancelling ctx stops the transfer and
// keeps the .incomplete file for the next run. refs/{revision} is written
// once all files are in place. When the hub cannot be reached but every
// file is in the cached snapshot of revision, that snapshot is returned
// (without retrying the hub).
//
// Verification. Every file is checked by a hash when the hub gives one
// and by its size whenever the hub gives it:
//   - the hash is X-Linked-Etag (LFS files; their ETag is the pointer's)
//     or ETag, when it is a sha256 (64 hex digits) or a git blob id (40 hex
//     digits: the sha1 of "blob {size}\x00" and the contents); the size is
//     X-Linked-Size or Content-Length;
//   - when that hash is something else (a mirror's own ETag), the size is
//     missing, or the size is 0 for a file of weights or data (.safetensors,
//     .bin, .pt, .parquet…, which cannot be empty), the hub's metadata API
//     is asked (paths-info, else the revision listing): its lfs.oid
//     (sha256) or, for a file in git, its blob id, and its size; a size the
//     headers and the API tell differently is refused, as is a size of 0
//     for weights that the API does not confirm;
//   - a file no hash can verify is kept only when the hub gave its size
//     and the bytes have it, with a warning "{repo}/{file}: warning: not
//     verified: …" on Progress (even when Quiet), every time it is
//     downloaded or found in the cache; with RequireVerified it is refused
//     (ErrUnverified);
//   - an HTML page (Content-Type text/html, or a body that begins as one)
//     is never taken for a file of weights or data, nor for an unverified
//     file, and such a page found in the cache is fetched again.
//
// Bytes that do not match the hash delete the download and return
// ErrChecksum.
func (c *Client) Download(ctx context.Context, kind RepoKind, repo, revision string, files []string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := checkRepo(repo, revision); err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("hub: %s %s: no files to download", kind, repo)
	}
	for _, f := range files {
		if err := checkPath(f); err != nil {
			return "", fmt.Errorf("hub: %s %s: file %q: %w", kind, repo, f, err)
		}
	}
	if c.Offline {
		return c.offlineSnapshot(kind, repo, revision, files)
	}
	if _, err := c.checkEndpoint(); err != nil {
		return "", err
	}
	storage := filepath.Join(c.cacheDir(), repoFolder(kind, repo))
	// A commit never changes: what its snapshot holds is final.
	if commitRe.MatchString(revision) {
		if snap := filepath.Join(storage, "snapshots", revision); allPresent(snap, files) {
			return snap, nil
		}
	}
	commit := ""
	// The cached snapshot, when complete, answers for an unreachable hub:
	// no need to wait for retries then.
	cachedOK := func() bool {
		snap, err := c.Snapshot(kind, repo, revision)
		return err == nil && allPresent(snap, files)
	}
	look := &lookup{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("hub: %s %s: %w", kind, repo, err)
		}
		// The first file resolves the revision; the others are asked for at
		// that commit, so that a branch moving meanwhile cannot mix commits.
		t := target{kind: kind, repo: repo, rev: revision, file: f, asked: revision}
		if commit != "" {
			t.rev = commit
		}
		m, err := c.head(ctx, t, cachedOK)
		if err != nil {
			if errors.Is(err, ErrOffline) {
				if snap, serr := c.Snapshot(kind, repo, revision); serr == nil && allPresent(snap, files) {
					c.logf("hub: %s unreachable; using the cached snapshot %s", c.endpoint(), snap)
					return snap, nil
				}
			}
			return "", err
		}
		if commit == "" {
			commit = m.commit
		} else if m.commit != commit {
			return "", fmt.Errorf("%sthe hub answered commit %s when asked for commit %s", t.prefix(), m.commit, commit)
		}
		t.rev = commit
		if err := c.settle(ctx, t, &m, look); err != nil {
			return "", err
		}
		if err := c.fetch(ctx, storage, t, m); err != nil {
			return "", err
		}
	}
	if revision != commit {
		if err := writeRef(storage, revision, commit); err != nil {
			return "", err
		}
	}
	return filepath.Join(storage, "snapshots", commit), nil
}

// binaryExts are formats of weights and data: such a file is never empty
// and never an HTML page.
var binaryExts = map[string]bool{
	".safetensors": true, ".bin": true, ".pt": true, ".pth": true, ".ckpt": true,
	".parquet": true, ".arrow": true, ".npy": true, ".npz": true, ".h5": true,
	".msgpack": true, ".onnx": true, ".gguf": true,
}

func binaryFile(name string) bool { return binaryExts[strings.ToLower(path.Ext(name))] }

// refuseHTML says whether an HTML page must not be taken for the file:
// weights and data never are one, and an unverified file (nothing but its
// size to go by) is not taken to be one unless it is named so.
func refuseHTML(file string, m meta) bool {
	if binaryFile(file) {
		return true
	}
	ext := strings.ToLower(path.Ext(file))
	return m.unverified != "" && ext != ".html" && ext != ".htm"
}

// lookup holds what the metadata API told during one Download: the
// revision listing, fetched at most once, for when paths-info fails.
type lookup struct {
	listed  bool
	files   map[string]FileInfo
	listErr error
}

// fileInfo asks the metadata API about t.file at commit t.rev: paths-info,
// else the revision listing.
func (c *Client) fileInfo(ctx context.Context, t target, l *lookup) (FileInfo, error) {
	f, err := c.pathInfo(ctx, t)
	if err == nil {
		return f, nil
	}
	if !l.listed {
		l.listed = true
		files, sha, lerr := c.ListFiles(ctx, t.kind, t.repo, t.rev)
		switch {
		case lerr != nil:
			l.listErr = errors.New(strings.TrimPrefix(lerr.Error(), "hub: "))
		case sha != t.rev:
			l.listErr = fmt.Errorf("the revision listing is of commit %s, not %s", sha, t.rev)
		default:
			l.files = make(map[string]FileInfo, len(files))
			for _, fi := range files {
				l.files[fi.Path] = fi
			}
		}
	}
	if l.listErr != nil {
		return FileInfo{}, fmt.Errorf("%v; revision listing: %v", err, l.listErr)
	}
	fi, ok := l.files[t.file]
	if !ok {
		return FileInfo{}, fmt.Errorf("%v; the revision listing does not list it", err)
	}
	return fi, nil
}

// settle decides how the file of m will be verified (see Download),
// asking the metadata API where the HEAD leaves a doubt, and refuses what
// cannot be taken.
func (c *Client) settle(ctx context.Context, t target, m *meta, l *lookup) error {
	verifiable := func() bool { return m.sha256 != "" || (m.blobID != "" && m.size >= 0) }
	weights := binaryFile(t.file)
	if verifiable() && m.size >= 0 && !(m.size == 0 && weights) {
		return nil
	}
	info, apiErr := c.fileInfo(ctx, t, l)
	if apiErr == nil {
		if sum := strings.ToLower(info.SHA256); sha256Re.MatchString(sum) {
			if m.sha256 != "" && m.sha256 != sum {
				return fmt.Errorf("%s%s %s and the metadata API's sha256 %s differ: the hub describes the file two ways", t.prefix(), m.etagOf, m.sha256, sum)
			}
			if m.sha256 == "" {
				m.sha256, m.hashOf = sum, "the metadata API's lfs.oid"
			}
		} else if id := strings.ToLower(info.BlobID); info.SHA256 == "" && commitRe.MatchString(id) && m.sha256 == "" {
			// A file in git: its blob id is the contents' (an LFS file's
			// would be its pointer's).
			if m.blobID != "" && m.blobID != id {
				return fmt.Errorf("%s%s %s and the metadata API's git blob id %s differ: the hub describes the file two ways", t.prefix(), m.etagOf, m.blobID, id)
			}
			if m.blobID == "" {
				m.blobID, m.hashOf = id, "the metadata API's blob id"
			}
		}
		if info.Size >= 0 {
			if m.size >= 0 && m.size != info.Size {
				return fmt.Errorf("%s%s says %d bytes, the hub's metadata API says %d bytes: the hub describes the file two ways (a mirror's error page?)", t.prefix(), m.sizeOf, m.size, info.Size)
			}
			m.size, m.sizeOf = info.Size, "the metadata API"
		}
	}
	api := "no hash"
	if apiErr != nil {
		api = apiErr.Error()
	}
	if m.size == 0 && weights && (apiErr != nil || info.Size != 0) {
		return fmt.Errorf("%s%s says 0 bytes, but a %s file cannot be empty and the hub's metadata API does not confirm it (%s)", t.prefix(), m.sizeOf, path.Ext(t.file), api)
	}
	if verifiable() {
		return nil
	}
	why := fmt.Sprintf("the hub gave no SHA-256 or git blob id for it (%s %q; metadata API: %s)", m.etagOf, m.etag, api)
	switch {
	case m.size < 0:
		return &hubError{msg: fmt.Sprintf("%scannot be verified: %s, nor its size", t.prefix(), why), errs: []error{ErrUnverified}}
	case c.RequireVerified:
		return &hubError{msg: fmt.Sprintf("%snot verified, so refused: %s", t.prefix(), why), errs: []error{ErrUnverified}}
	}
	m.blobID = "" // without a size it checks nothing
	m.unverified = why
	return nil
}

// fetch puts one file into snapshots/{commit}: nothing to do when it is
// there, a link when its blob is there, else a download.
func (c *Client) fetch(ctx context.Context, storage string, t target, m meta) error {
	pointer := filepath.Join(storage, "snapshots", t.rev, filepath.FromSlash(t.file))
	blob := filepath.Join(storage, "blobs", m.etag)
	label := t.repo + "/" + t.file
	noHTML := refuseHTML(t.file, m)
	good := func(p string) bool { return !noHTML || !fileLooksHTML(p) }
	defer func() {
		if m.unverified != "" { // cleared when the file is not kept
			c.warnf("%s: warning: not verified: %s; kept because its size matches (%d bytes, from %s)", label, m.unverified, m.size, m.sizeOf)
		}
	}()
	if pointerOK(pointer, m) && good(pointer) {
		c.logf("%s: cached", label)
		return nil
	}
	if !blobOK(blob, m.size) || !good(blob) {
		unlock, err := c.lock(ctx, filepath.Join(c.cacheDir(), ".locks", filepath.Base(storage), m.etag+".lock"), label)
		if err != nil {
			return fmt.Errorf("%s%w", t.prefix(), err)
		}
		defer unlock()
		// Another process may have finished it while we waited.
		if !blobOK(blob, m.size) || !good(blob) {
			if err := c.transfer(ctx, t, m, blob, label); err != nil {
				m.unverified = "" // no warning about a file not kept
				return err
			}
		}
	} else {
		c.logf("%s: cached (blob %s)", label, m.etag)
	}
	if err := link(blob, pointer); err != nil {
		m.unverified = ""
		return fmt.Errorf("%s%w", t.prefix(), err)
	}
	return nil
}

// looksHTML says whether bytes begin as an HTML page does.
func looksHTML(b []byte) bool {
	return strings.HasPrefix(http.DetectContentType(b), "text/html")
}

// fileLooksHTML says whether the file at p begins as an HTML page.
func fileLooksHTML(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := io.ReadFull(f, b)
	return n > 0 && looksHTML(b[:n])
}

// isHTMLType says whether a Content-Type is that of an HTML page.
func isHTMLType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "text/html" || mt == "application/xhtml+xml")
}

// pointerOK reports whether the snapshot entry exists and resolves to a
// file of the announced size; a symlink must point at the announced blob
// (huggingface_hub's layout), a plain file (a cache without symlinks) is
// judged by its size.
func pointerOK(pointer string, m meta) bool {
	st, err := os.Stat(pointer)
	if err != nil || !st.Mode().IsRegular() || (m.size >= 0 && st.Size() != m.size) {
		return false
	}
	target, err := os.Readlink(pointer)
	return err != nil || filepath.Base(target) == m.etag
}

func blobOK(blob string, size int64) bool {
	st, err := os.Stat(blob)
	return err == nil && st.Mode().IsRegular() && (size < 0 || st.Size() == size)
}

func allPresent(snap string, files []string) bool {
	for _, f := range files {
		if st, err := os.Stat(filepath.Join(snap, filepath.FromSlash(f))); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// link makes pointer a relative symlink to blob, replacing what was there
// in one rename.
func link(blob, pointer string) error {
	dir := filepath.Dir(pointer)
	rel, err := filepath.Rel(dir, blob)
	if err != nil {
		return fmt.Errorf("link %s: %w", pointer, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("link %s: %w", pointer, err)
	}
	tmp := atomicfile.TempName(pointer)
	if err := os.Symlink(rel, tmp); err != nil {
		return fmt.Errorf("link %s: %w", pointer, err)
	}
	if err := os.Rename(tmp, pointer); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", pointer, err)
	}
	return nil
}

// writeRef records that revision (a branch or tag, possibly with slashes
// as in refs/convert/parquet) points at commit.
func writeRef(storage, revision, commit string) error {
	path := filepath.Join(storage, "refs", filepath.FromSlash(revision))
	if raw, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(raw)) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("hub: write ref %s: %w", path, err)
	}
	// No newline: huggingface_hub writes the bare hash.
	if err := atomicfile.WriteFile(path, []byte(commit)); err != nil {
		return fmt.Errorf("hub: write ref %s: %w", path, err)
	}
	return nil
}

// lock takes the per-blob lock huggingface_hub also takes
// (.locks/{repo folder}/{etag}.lock, an flock), so that two processes,
// Python or Go, never write the same .incomplete file at once.
func (c *Client) lock(ctx context.Context, path, label string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l, err := dirlock.Wait(ctx, path, dirlock.Options{What: "ctxdep download", Subject: "lock " + path, KeepFile: true, Notice: func(string) {}},
		func(*dirlock.Holder) { c.logf("%s: waiting for another download of it to finish (%s)", label, path) })
	if err != nil {
		return nil, err
	}
	return func() { l.Release() }, nil
}

// verifier checks the bytes of a download against a hash: a 64-hex one is
// the sha256 of the contents (LFS files), a 40-hex one the git blob sha1
// (sha1 of "blob {size}\x00" and the contents). Anything else checks
// nothing (Client.settle decides whether such a file may be kept; the
// transfer checks its size).
type verifier struct {
	algo string
	want string
	from string // where want came from, for the message
	size int64
	h    hash.Hash
}

func newVerifier(etag string, size int64) *verifier {
	v := &verifier{want: etag, size: size}
	switch {
	case sha256Re.MatchString(etag):
		v.algo = "sha256"
	case commitRe.MatchString(etag) && size >= 0:
		v.algo = "git-sha1"
	}
	v.reset()
	return v
}

func (v *verifier) reset() {
	switch v.algo {
	case "sha256":
		v.h = sha256.New()
	case "git-sha1":
		v.h = sha1.New()
		fmt.Fprintf(v.h, "blob %d\x00", v.size)
	default:
		v.h = nil
	}
}

func (v *verifier) Write(p []byte) (int, error) {
	if v.h != nil {
		v.h.Write(p)
	}
	return len(p), nil
}

func (v *verifier) check(file string) error {
	if v.h == nil {
		return nil
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
		from := ""
		if v.from != "" {
			from = " (" + v.from + ")"
		}
		return &hubError{msg: fmt.Sprintf("hub: %s: %s mismatch: got %s, want %s%s", file, v.algo, got, v.want, from), errs: []error{ErrChecksum}}
	}
	return nil
}

// retryable marks a failure that resuming may get past: a broken or
// stalled connection, a 5xx or 429 answer.
type retryable struct {
	err     error
	offline bool // no answer at all, rather than an answer cut short
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

var errStalled = fmt.Errorf("no data for %v", stallTimeout)

// transfer is one blob's download into its .incomplete file.
type transfer struct {
	c    *Client
	t    target
	url  string
	f    *os.File
	v    *verifier
	off  int64 // bytes in f
	size int64 // -1 when unknown
	bar  *progress.Bar
	buf  []byte

	noHTML  bool // an HTML page is not the file (refuseHTML)
	discard bool // what the .incomplete file holds is not worth resuming
}

func (c *Client) transfer(ctx context.Context, t target, m meta, blob, label string) error {
	incomplete := blob + ".incomplete"
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fmt.Errorf("%s%w", t.prefix(), err)
	}
	// A blob of the wrong size under the final name is not ours to trust.
	if err := os.Remove(blob); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s%w", t.prefix(), err)
	}
	f, err := os.OpenFile(incomplete, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%s%w", t.prefix(), err)
	}
	closed := false
	defer func() {
		if !closed {
			f.Close()
		}
	}()
	tr := &transfer{c: c, t: t, url: c.fileURL(t.kind, t.repo, t.rev, t.file), f: f, v: newVerifier(m.hash(), m.size), size: m.size, buf: make([]byte, 1<<20),
		noHTML: refuseHTML(t.file, m)}
	tr.v.from = m.hashOf
	// An .incomplete file that holds nothing, or bytes refused, is not
	// left for a next run.
	defer func() {
		if !closed && (tr.off == 0 || tr.discard) {
			f.Close()
			closed = true
			os.Remove(incomplete)
		}
	}()
	if err := tr.resumeFrom(); err != nil {
		return fmt.Errorf("%s%s: %w", t.prefix(), incomplete, err)
	}
	w := c.Progress
	quiet := c.Quiet || w == nil
	if w == nil {
		w = io.Discard
	}
	total := m.size
	if total >= 0 {
		total -= tr.off
	}
	tr.bar = progress.New(w, label, total, "B", quiet)
	if tr.off > 0 {
		tr.bar.Logf("%s: resuming at %d of %d bytes", label, tr.off, m.size)
	}
	fails, lastFailAt := 0, tr.off
	for tr.size < 0 || tr.off < tr.size {
		err := tr.get(ctx)
		if err == nil {
			if tr.size < 0 {
				break
			}
			if tr.off < tr.size {
				err = &retryable{err: fmt.Errorf("the body ended at %d of %d bytes", tr.off, tr.size)}
			}
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			tr.bar.Finish()
			return fmt.Errorf("%sinterrupted at %d of %d bytes (run again to resume): %w", t.prefix(), tr.off, m.size, ctx.Err())
		}
		var r *retryable
		if !errors.As(err, &r) {
			tr.bar.Finish()
			return err
		}
		if tr.off > lastFailAt {
			fails = 0 // data arrived since the last failure: a fresh budget
		}
		fails++
		lastFailAt = tr.off
		if fails > c.Retries {
			tr.bar.Finish()
			errs := []error{r.err}
			if r.offline {
				errs = append(errs, ErrOffline)
			}
			return &hubError{msg: fmt.Sprintf("%sdownload stopped at %d of %d bytes (run again to resume): %s", t.prefix(), tr.off, m.size, t.bare(r.err)), errs: errs}
		}
		pause := c.backoff(fails)
		tr.bar.Logf("%s: %s; resuming at byte %d in %v (%d/%d)", label, t.bare(r.err), tr.off, pause, fails, c.Retries)
		select {
		case <-ctx.Done():
			tr.bar.Finish()
			return fmt.Errorf("%sinterrupted at %d of %d bytes (run again to resume): %w", t.prefix(), tr.off, m.size, ctx.Err())
		case <-time.After(pause):
		}
	}
	tr.bar.Finish()
	if err := tr.v.check(t.file); err != nil {
		f.Close()
		closed = true
		if rerr := os.Remove(incomplete); rerr != nil {
			return fmt.Errorf("%w (and removing %s: %v)", err, incomplete, rerr)
		}
		return err
	}
	err = f.Sync()
	closed = true
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(incomplete, blob)
	}
	if err != nil {
		return fmt.Errorf("%s%w", t.prefix(), err)
	}
	atomicfile.SyncDir(filepath.Dir(blob))
	return nil
}

// resumeFrom positions the transfer after what an earlier run left in the
// .incomplete file, hashing those bytes; a file longer than the blob
// cannot be a prefix of it and is started over.
func (tr *transfer) resumeFrom() error {
	st, err := tr.f.Stat()
	if err != nil {
		return err
	}
	tr.off = st.Size()
	if tr.size >= 0 && tr.off > tr.size {
		return tr.restart()
	}
	if tr.noHTML && tr.off > 0 && fileLooksHTML(tr.f.Name()) {
		return tr.restart() // an error page an older version kept
	}
	if tr.off > 0 {
		if _, err := io.CopyBuffer(tr.v, io.NewSectionReader(tr.f, 0, tr.off), tr.buf); err != nil {
			return err
		}
	}
	_, err = tr.f.Seek(tr.off, io.SeekStart)
	return err
}

func (tr *transfer) restart() error {
	if err := tr.f.Truncate(0); err != nil {
		return err
	}
	if _, err := tr.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr.off = 0
	tr.v.reset()
	return nil
}

var contentRangeRe = regexp.MustCompile(`^bytes (\d+)-(\d+)/(\d+|\*)$`)

// get makes one GET from tr.off on (a Range request when resuming) and
// appends what arrives until the body ends or fails. A watchdog abandons
// the request when nothing arrives for stallTimeout.
func (tr *transfer) get(ctx context.Context) error {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer timer.Stop()
	transient := func(err error) error {
		if context.Cause(rctx) == errStalled {
			return &retryable{err: errStalled}
		}
		return &retryable{err: err}
	}

	req, err := tr.c.newRequest(rctx, http.MethodGet, tr.url, nil)
	if err != nil {
		return err
	}
	if tr.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(tr.off, 10)+"-")
	}
	resp, err := tr.c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if context.Cause(rctx) == errStalled {
			return &retryable{err: errStalled}
		}
		return &retryable{err: err, offline: true}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		cr := contentRangeRe.FindStringSubmatch(resp.Header.Get("Content-Range"))
		if cr == nil {
			return fmt.Errorf("%sbad Content-Range %q in the answer to a Range request", tr.t.prefix(), resp.Header.Get("Content-Range"))
		}
		start, _ := strconv.ParseInt(cr[1], 10, 64)
		if start != tr.off {
			return fmt.Errorf("%sasked for bytes from %d, the server sent from %d", tr.t.prefix(), tr.off, start)
		}
		if total, err := strconv.ParseInt(cr[3], 10, 64); err == nil && tr.size >= 0 && total != tr.size {
			return fmt.Errorf("%sthe server's copy has %d bytes, the hub announced %d", tr.t.prefix(), total, tr.size)
		}
	case resp.StatusCode == http.StatusOK:
		if tr.off > 0 {
			// The server ignored the Range header: start over.
			tr.bar.Logf("%s: the server does not resume; starting over", tr.t.repo+"/"+tr.t.file)
			if err := tr.restart(); err != nil {
				return fmt.Errorf("%s%w", tr.t.prefix(), err)
			}
		}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return &retryable{err: tr.c.statusError(resp, tr.t)}
	default:
		return tr.c.statusError(resp, tr.t)
	}
	host := resp.Request.URL.Host
	if ct := resp.Header.Get("Content-Type"); tr.noHTML && isHTMLType(ct) {
		tr.discard = true
		return fmt.Errorf("%sthe download server %s sent an HTML page (Content-Type %s), not the file: an error page of a proxy or mirror? check HF_ENDPOINT", tr.t.prefix(), host, ct)
	}
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 && tr.size >= 0 && resp.ContentLength != tr.size {
		tr.discard = true
		return fmt.Errorf("%sthe download server %s sends %d bytes, the hub announced %d", tr.t.prefix(), host, resp.ContentLength, tr.size)
	}
	sniff := tr.noHTML && tr.off == 0
	for {
		var n int
		var rerr error
		if sniff {
			// The first bytes, enough to tell an HTML page.
			sniff = false
			want := 512
			if tr.size >= 0 && tr.size < int64(want) {
				want = int(tr.size)
			}
			n, rerr = io.ReadAtLeast(resp.Body, tr.buf, want)
			if rerr == io.ErrUnexpectedEOF {
				rerr = io.EOF
			}
			if n > 0 && looksHTML(tr.buf[:n]) {
				tr.discard = true
				return fmt.Errorf("%sthe download server %s sent an HTML page, not the file (it begins %q): an error page of a proxy or mirror? check HF_ENDPOINT", tr.t.prefix(), host, tr.buf[:min(n, 48)])
			}
		} else {
			n, rerr = resp.Body.Read(tr.buf)
		}
		if n > 0 {
			timer.Reset(stallTimeout)
			if tr.size >= 0 && tr.off+int64(n) > tr.size {
				return fmt.Errorf("%sthe server sent more than the %d bytes the hub announced", tr.t.prefix(), tr.size)
			}
			if _, err := tr.f.Write(tr.buf[:n]); err != nil {
				return fmt.Errorf("%swrite %s: %w", tr.t.prefix(), tr.f.Name(), err)
			}
			tr.v.Write(tr.buf[:n])
			tr.off += int64(n)
			tr.bar.Add(int64(n), "")
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return transient(rerr)
		}
	}
}

// checkRepo validates a repository id and a revision before they become
// URLs and paths: "owner/name" (or a legacy "name") of letters, digits,
// '-', '_', '.', without "--" or ".." (which the hub forbids and which
// would make cache folder names ambiguous); a revision of non-empty path
// segments, none "." or "..".
func checkRepo(repo, revision string) error {
	if !repoRe.MatchString(repo) || strings.Contains(repo, "--") || strings.Contains(repo, "..") {
		return fmt.Errorf("hub: bad repository id %q: want owner/name", repo)
	}
	if err := checkPath(revision); err != nil {
		return fmt.Errorf("hub: %s: bad revision %q: %w", repo, revision, err)
	}
	return nil
}

var repoRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)

// checkPath rejects what could escape the cache folder once joined to a
// path: absolute paths, "." and ".." segments, empty segments,
// backslashes and control characters.
func checkPath(p string) error {
	if p == "" || len(p) > 1024 {
		return errors.New("empty or too long")
	}
	if strings.ContainsAny(p, "\\") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return errors.New("backslash or control character")
	}
	for _, s := range strings.Split(p, "/") {
		if s == "" || s == "." || s == ".." {
			return errors.New(`empty, "." or ".." path segment`)
		}
	}
	return nil
}
