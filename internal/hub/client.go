package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the hub's address when $HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// Errors that Client methods wrap, for errors.Is.
var (
	// ErrOffline: the hub (or the mirror in $HF_ENDPOINT) could not be reached.
	ErrOffline = errors.New("hub unreachable")
	// ErrUnauthorized: the hub answered 401 or 403 (private or gated
	// repository, missing or refused token; also a missing repository when
	// no token is sent, as the hub does not tell the two apart).
	ErrUnauthorized = errors.New("not authorized")
	// ErrNotFound: the hub answered 404 for a repository, revision or file.
	ErrNotFound = errors.New("not found")
	// ErrChecksum: downloaded bytes did not match the hash the hub announced.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrUnverified: the hub gave nothing to check a file against (no
	// SHA-256 or git blob id in its headers or its metadata API), and the
	// client was told not to keep such files (RequireVerified), or the
	// size was not given either.
	ErrUnverified = errors.New("cannot be verified")
)

// stallTimeout bounds how long a request may go without the server sending
// anything (headers or body bytes) before it is abandoned and, for a
// download, resumed: long enough for a slow CDN, short enough that a dead
// connection does not hang the command.
const stallTimeout = 60 * time.Second

// Client downloads files from the Hugging Face hub into the local hub
// cache. The zero value works (the public hub, no token, no progress, the
// default cache, no retries); NewClient fills it from the environment.
type Client struct {
	// Endpoint is the hub's base URL ("" means DefaultEndpoint).
	Endpoint string
	// Token, when set, is sent as "Authorization: Bearer" to Endpoint (never
	// to the CDN that large files are redirected to).
	Token string
	// HTTP is the client requests go through (nil means http.DefaultClient).
	HTTP *http.Client
	// Progress receives per-file progress (bytes, bytes/s) and notes such as
	// "cached"; nil silences it.
	Progress io.Writer
	// Quiet silences Progress, except warnings (a file kept unverified).
	Quiet bool
	// CacheDir is the hub cache ("" means CacheDir()).
	CacheDir string
	// Retries is how many times a download whose connection broke is resumed
	// (with a Range request) before Download gives up; the count restarts
	// whenever data arrives. A HEAD (a file's commit, hash and size) that
	// gets no answer, or a 5xx or 429 one, is asked again as often.
	Retries int
	// RequireVerified refuses a file that nothing can verify (see
	// Download) instead of keeping it, with a warning, when its size
	// matches.
	RequireVerified bool
	// Offline makes no request at all (HF_HUB_OFFLINE): Download answers
	// from the cache or names what it lacks, ListFiles lists the cached
	// snapshot.
	Offline bool

	retryWait time.Duration // first pause before resuming (0 means 1s); tests shorten it
}

// backoff is the pause before the fails-th retry of a request: 1, 2, 3…
// times retryWait.
func (c *Client) backoff(fails int) time.Duration {
	wait := c.retryWait
	if wait <= 0 {
		wait = time.Second
	}
	return wait * time.Duration(fails)
}

// NewClient returns a client configured as huggingface_hub configures
// itself: offline when $HF_HUB_OFFLINE says so (OfflineFromEnv), $HF_ENDPOINT, the token in $HF_TOKEN or else in the file that
// `huggingface-cli login` writes ($HF_TOKEN_PATH, default $HF_HOME/token),
// the cache of CacheDir(), progress on stderr and 5 retries.
func NewClient() *Client {
	return &Client{
		Endpoint: os.Getenv("HF_ENDPOINT"),
		Token:    envToken(),
		Progress: os.Stderr,
		CacheDir: CacheDir(),
		Retries:  5,
		Offline:  OfflineFromEnv(),
	}
}

func envToken() string {
	if t := strings.TrimSpace(os.Getenv("HF_TOKEN")); t != "" {
		return t
	}
	path := os.Getenv("HF_TOKEN_PATH")
	if path == "" {
		// $HF_HOME/token, independently of $HF_HUB_CACHE.
		home := hfHome()
		if home == "" {
			return ""
		}
		path = filepath.Join(home, "token")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "" // no login: anonymous access, which public repositories allow
	}
	return strings.TrimSpace(string(raw))
}

func (c *Client) cacheDir() string {
	if c.CacheDir != "" {
		return c.CacheDir
	}
	return CacheDir()
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimRight(c.Endpoint, "/")
}

// checkEndpoint rejects an endpoint that is not an http(s) URL before any
// request is made, so that a typo in $HF_ENDPOINT does not read as "offline".
func (c *Client) checkEndpoint() (*url.URL, error) {
	u, err := url.Parse(c.endpoint())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub: endpoint %q is not an http(s) URL (check $HF_ENDPOINT)", c.endpoint())
	}
	return u, nil
}

func (c *Client) logf(format string, a ...any) {
	if c.Quiet || c.Progress == nil {
		return
	}
	fmt.Fprintf(c.Progress, format+"\n", a...)
}

// warnf writes to Progress even when Quiet.
func (c *Client) warnf(format string, a ...any) {
	if c.Progress == nil {
		return
	}
	fmt.Fprintf(c.Progress, format+"\n", a...)
}

// httpClient returns the client for GETs: redirects are followed (the hub
// sends large files to a CDN) but the token is dropped as soon as a
// redirect leaves the endpoint's host, as huggingface_hub does: the CDN
// URL is signed and some storage services reject a second credential.
func (c *Client) httpClient() *http.Client {
	base := c.HTTP
	if base == nil {
		base = http.DefaultClient
	}
	cl := *base
	if c.Offline {
		cl.Transport = offlineTransport{}
	}
	cl.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if req.URL.Host != via[0].URL.Host {
			req.Header.Del("Authorization")
		}
		if base.CheckRedirect != nil {
			return base.CheckRedirect(req, via)
		}
		return nil
	}
	return &cl
}

// newRequest builds a request with the headers every hub call carries. The
// identity encoding keeps Content-Length the file's size and the bytes the
// ones the ETag hashes.
func (c *Client) newRequest(ctx context.Context, method, rawURL string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, fmt.Errorf("hub: %s %s: %w", method, rawURL, err)
	}
	req.Header.Set("User-Agent", "ctxdep (go; hub)")
	req.Header.Set("Accept-Encoding", "identity")
	if c.Token != "" && c.onEndpoint(req.URL) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c *Client) onEndpoint(u *url.URL) bool {
	ep, err := url.Parse(c.endpoint())
	return err == nil && strings.EqualFold(ep.Host, u.Host)
}

// offline wraps a transport error (no answer at all) as ErrOffline.
func (c *Client) offline(err error) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return &hubError{
		msg:  fmt.Sprintf("hub: cannot reach %s (%v): are you offline? set HF_ENDPOINT for a mirror", c.endpoint(), cause),
		errs: []error{ErrOffline, err},
	}
}

// hubError carries a complete message and the errors it wraps (a sentinel
// and the cause), so that the message reads as one sentence while
// errors.Is still sees both.
type hubError struct {
	msg  string
	errs []error
}

func (e *hubError) Error() string   { return e.msg }
func (e *hubError) Unwrap() []error { return e.errs }

// target names what a request was about, for error messages: the file (if
// any) first, as in "hub: config.json: …".
type target struct {
	kind            RepoKind
	repo, rev, file string // rev as sent in URLs
	asked           string // the revision asked for, when rev is its commit
}

func (t target) prefix() string {
	if t.file == "" {
		return "hub: "
	}
	return "hub: " + t.file + ": "
}

// bare is err's message without t's prefix, for a message that gives the
// prefix itself: "hub: f: download stopped …: <bare>", not "hub: f: … hub: f: …".
func (t target) bare(err error) string {
	return strings.TrimPrefix(err.Error(), t.prefix())
}

func (t target) repoAt() string {
	if t.asked != "" && t.asked != t.rev {
		return fmt.Sprintf("%s %s at revision %s (commit %s)", t.kind, t.repo, t.asked, t.rev)
	}
	return fmt.Sprintf("%s %s at revision %s", t.kind, t.repo, t.rev)
}

// statusError turns a hub answer of 4xx or 5xx into an error that says what
// to do. The hub's X-Error-Code header (RepoNotFound, RevisionNotFound,
// EntryNotFound, GatedRepo) refines 401, 403 and 404, as huggingface_hub
// reads it.
func (c *Client) statusError(resp *http.Response, t target) error {
	code := resp.Header.Get("X-Error-Code")
	msg := resp.Header.Get("X-Error-Message")
	if msg == "" && resp.Body != nil {
		// The API puts its message in a JSON body: {"error": "..."}.
		var body struct {
			Error string `json:"error"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(raw, &body) == nil {
			msg = body.Error
		}
	}
	status := strconv.Itoa(resp.StatusCode)
	if code != "" {
		status += " " + code
	}
	if msg != "" {
		status += ": " + msg
	}
	fromHub := resp.Request == nil || c.onEndpoint(resp.Request.URL)
	switch {
	case fromHub && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		page := c.endpoint() + "/" + t.repo
		if t.kind == Dataset {
			page = c.endpoint() + "/datasets/" + t.repo
		}
		var m string
		switch {
		case c.Token == "":
			m = fmt.Sprintf("%s%s needs a token (set HF_TOKEN): it is private or gated, or does not exist (%s)", t.prefix(), t.repoAt(), status)
		case code == "GatedRepo":
			m = fmt.Sprintf("%s%s is gated and HF_TOKEN's account has no access: ask for it at %s (%s)", t.prefix(), t.repoAt(), page, status)
		default:
			m = fmt.Sprintf("%s%s refused HF_TOKEN: check the token, and that the repository exists and the token may read it (%s)", t.prefix(), t.repoAt(), status)
		}
		return &hubError{msg: m, errs: []error{ErrUnauthorized}}
	case resp.StatusCode == http.StatusNotFound:
		var m string
		switch code {
		case "RevisionNotFound":
			m = fmt.Sprintf("%srevision %s not found in %s %s (%s)", t.prefix(), t.rev, t.kind, t.repo, status)
		case "RepoNotFound":
			m = fmt.Sprintf("%s%s %s not found (revision %s; %s)", t.prefix(), t.kind, t.repo, t.rev, status)
		default:
			m = fmt.Sprintf("%snot found in %s (%s)", t.prefix(), t.repoAt(), status)
		}
		return &hubError{msg: m, errs: []error{ErrNotFound}}
	case fromHub:
		return fmt.Errorf("%s%s: the hub answered %s", t.prefix(), t.repoAt(), status)
	default:
		return fmt.Errorf("%s%s: the download server %s answered %s", t.prefix(), t.repoAt(), resp.Request.URL.Host, status)
	}
}

// fileURL is the resolve URL of a file, escaped as huggingface_hub's
// hf_hub_url escapes it: the revision as one path segment ("refs/pr/1"
// becomes "refs%2Fpr%2F1"), the file name segment by segment.
func (c *Client) fileURL(kind RepoKind, repo, rev, file string) string {
	segs := strings.Split(file, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	prefix := ""
	if kind == Dataset {
		prefix = "datasets/"
	}
	return c.endpoint() + "/" + prefix + repo + "/resolve/" + url.PathEscape(rev) + "/" + strings.Join(segs, "/")
}

// meta is what the hub tells of a file: its HEAD, completed by the
// metadata API where the HEAD does not say enough (see Client.settle).
type meta struct {
	commit string // the commit the revision resolved to
	etag   string // the hub's ETag (X-Linked-Etag, else ETag): the blob's name
	etagOf string // the header it came from, for messages
	sha256 string // sha256 of the contents, when known
	blobID string // git blob sha1 of the contents, when known (files in git)
	hashOf string // where sha256 or blobID came from, for messages
	size   int64  // -1 when the hub did not say
	sizeOf string // where size came from, for messages

	// unverified, when set, says why no hash checks the file: only its
	// size does.
	unverified string
}

// hash is what the contents are checked against: the sha256, else the
// git blob id, else "" (size only).
func (m meta) hash() string {
	if m.sha256 != "" {
		return m.sha256
	}
	return m.blobID
}

var (
	commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
	etagRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// normalizeETag strips the weak-validator prefix and the quotes, as
// huggingface_hub's _normalize_etag does.
func normalizeETag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

// head asks the hub for a file's commit, ETag and size, retrying as a
// download does: an answer of 5xx or 429, or none at all, is asked again up
// to c.Retries times after pauses of 1, 2, 3… retry waits. When offlineOK
// reports true (the caller has what it needs in the cache), a hub that
// cannot be reached is not asked again.
func (c *Client) head(ctx context.Context, t target, offlineOK func() bool) (meta, error) {
	for fails := 1; ; fails++ {
		m, err := c.headOnce(ctx, t)
		var r *retryable
		if err == nil || !errors.As(err, &r) {
			return m, err
		}
		if fails > c.Retries || (r.offline && offlineOK != nil && offlineOK()) {
			if fails == 1 {
				return meta{}, r.err
			}
			return meta{}, &hubError{msg: fmt.Sprintf("%s (asked %d times)", r.err, fails), errs: []error{r.err}}
		}
		pause := c.backoff(fails)
		c.logf("%s/%s: %s; asking again in %v (%d/%d)", t.repo, t.file, t.bare(r.err), pause, fails, c.Retries)
		select {
		case <-ctx.Done():
			return meta{}, fmt.Errorf("%s%w", t.prefix(), ctx.Err())
		case <-time.After(pause):
		}
	}
}

// headOnce is one HEAD of a file. Like huggingface_hub it does not follow
// the redirect to the CDN (whose answer lacks the hub's headers) but reads
// the redirect itself, which carries X-Repo-Commit, X-Linked-Etag and
// X-Linked-Size. A redirect without X-Repo-Commit (a renamed repository, or
// a mirror's own hop) is followed. Failures worth asking again are
// *retryable.
func (c *Client) headOnce(ctx context.Context, t target) (meta, error) {
	cl := *c.httpClient()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := c.fileURL(t.kind, t.repo, t.rev, t.file)
	for hop := 0; ; hop++ {
		hctx, cancel := context.WithTimeout(ctx, stallTimeout)
		req, err := c.newRequest(hctx, http.MethodHead, u, nil)
		if err != nil {
			cancel()
			return meta{}, err
		}
		resp, err := cl.Do(req)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return meta{}, fmt.Errorf("%s%w", t.prefix(), ctx.Err())
			}
			return meta{}, &retryable{err: c.offline(err), offline: true}
		}
		resp.Body.Close()
		h := resp.Header
		redirect := resp.StatusCode >= 300 && resp.StatusCode < 400
		if redirect && h.Get("X-Repo-Commit") == "" {
			loc, err := resp.Location()
			if err != nil || hop >= 10 {
				return meta{}, fmt.Errorf("%s%s: bad redirect from %s (%d, Location %q)", t.prefix(), t.repoAt(), u, resp.StatusCode, h.Get("Location"))
			}
			u = loc.String()
			continue
		}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return meta{}, &retryable{err: c.statusError(resp, t)}
		}
		if resp.StatusCode >= 400 {
			return meta{}, c.statusError(resp, t)
		}
		if !redirect && resp.StatusCode != http.StatusOK {
			return meta{}, fmt.Errorf("%s%s: unexpected answer %s to HEAD %s", t.prefix(), t.repoAt(), resp.Status, u)
		}
		m := meta{commit: h.Get("X-Repo-Commit"), size: -1}
		if !commitRe.MatchString(m.commit) {
			return meta{}, fmt.Errorf("%s%s: %s sent no commit hash (X-Repo-Commit %q): is it a Hugging Face hub? check HF_ENDPOINT", t.prefix(), t.repoAt(), c.endpoint(), m.commit)
		}
		// An LFS file's ETag is the git blob id of its pointer, not of its
		// contents: X-Linked-Etag, when there, is the contents' hash.
		m.etag, m.etagOf = normalizeETag(h.Get("X-Linked-Etag")), "X-Linked-Etag"
		if m.etag == "" {
			m.etag, m.etagOf = normalizeETag(h.Get("ETag")), "ETag"
		}
		if !etagRe.MatchString(m.etag) {
			return meta{}, fmt.Errorf("%s%s: the hub sent no usable ETag (%q), so the download cannot be named or verified", t.prefix(), t.repoAt(), m.etag)
		}
		switch lower := strings.ToLower(m.etag); {
		case sha256Re.MatchString(lower):
			m.etag, m.sha256, m.hashOf = lower, lower, m.etagOf
		case commitRe.MatchString(lower):
			m.etag, m.blobID, m.hashOf = lower, lower, m.etagOf
		}
		if s := h.Get("X-Linked-Size"); s != "" {
			m.size, err = strconv.ParseInt(s, 10, 64)
			if err != nil || m.size < 0 {
				return meta{}, fmt.Errorf("%s%s: bad X-Linked-Size %q", t.prefix(), t.repoAt(), s)
			}
			m.sizeOf = "X-Linked-Size"
		} else if !redirect && resp.ContentLength >= 0 {
			// A redirect's Content-Length is that of its own body, not the file's.
			m.size, m.sizeOf = resp.ContentLength, "Content-Length"
		}
		return m, nil
	}
}

// pathInfo asks the hub's metadata API about one file at t.rev:
// POST /api/{models|datasets}/{repo}/paths-info/{rev} with the form
// paths={file}, as huggingface_hub's get_paths_info does. Its answer gives
// the size, the git blob id (oid) and, for LFS files, lfs.oid (the
// sha256) and lfs.size.
func (c *Client) pathInfo(ctx context.Context, t target) (FileInfo, error) {
	u := c.endpoint() + "/api/" + t.kind.String() + "s/" + t.repo + "/paths-info/" + url.PathEscape(t.rev)
	rctx, cancel := context.WithTimeout(ctx, stallTimeout)
	defer cancel()
	req, err := c.newRequest(rctx, http.MethodPost, u, strings.NewReader(url.Values{"paths": {t.file}}.Encode()))
	if err != nil {
		return FileInfo{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return FileInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return FileInfo{}, fmt.Errorf("paths-info answered %s", resp.Status)
	}
	var entries []struct {
		Type string `json:"type"`
		Path string `json:"path"`
		OID  string `json:"oid"`
		Size *int64 `json:"size"`
		LFS  *struct {
			OID  string `json:"oid"`
			Size int64  `json:"size"`
		} `json:"lfs"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&entries); err != nil {
		return FileInfo{}, fmt.Errorf("paths-info: %w", err)
	}
	for _, e := range entries {
		if e.Path != t.file || (e.Type != "" && e.Type != "file") {
			continue
		}
		f := FileInfo{Path: e.Path, Size: -1, BlobID: e.OID}
		if e.Size != nil {
			f.Size = *e.Size
		}
		if e.LFS != nil {
			f.SHA256, f.Size = e.LFS.OID, e.LFS.Size
		}
		return f, nil
	}
	return FileInfo{}, fmt.Errorf("paths-info does not list %s", t.file)
}

// FileInfo describes a file of a repository at a revision.
type FileInfo struct {
	Path   string // path in the repository, "/"-separated
	Size   int64  // bytes; -1 when the hub did not say
	BlobID string // git blob sha1 (of the LFS pointer, for LFS files)
	SHA256 string // sha256 of the contents, for LFS files only
}

// ListFiles lists the files of a repository at revision ("" means main)
// and the commit the revision resolves to, from the hub's API
// (GET /api/{models|datasets}/{repo}/revision/{revision}?blobs=true).
// Files come sorted by path.
func (c *Client) ListFiles(ctx context.Context, kind RepoKind, repo, revision string) ([]FileInfo, string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := checkRepo(repo, revision); err != nil {
		return nil, "", err
	}
	if c.Offline {
		return c.offlineList(kind, repo, revision)
	}
	if _, err := c.checkEndpoint(); err != nil {
		return nil, "", err
	}
	t := target{kind: kind, repo: repo, rev: revision}
	u := c.endpoint() + "/api/" + kind.String() + "s/" + repo + "/revision/" + url.PathEscape(revision) + "?blobs=true"
	rctx, cancel := context.WithTimeout(ctx, stallTimeout)
	defer cancel()
	req, err := c.newRequest(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("hub: list %s: %w", repo, ctx.Err())
		}
		return nil, "", c.offline(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", c.statusError(resp, t)
	}
	var info struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
			Size      *int64 `json:"size"`
			BlobID    string `json:"blobId"`
			LFS       *struct {
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
			} `json:"lfs"`
		} `json:"siblings"`
	}
	// The listing of a large dataset runs to megabytes; 256 MiB bounds a
	// misbehaving server without limiting any real repository.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&info); err != nil {
		return nil, "", fmt.Errorf("hub: list %s: decode %s: %w", t.repoAt(), u, err)
	}
	if !commitRe.MatchString(info.SHA) {
		return nil, "", fmt.Errorf("hub: list %s: the answer has no commit hash (sha %q)", t.repoAt(), info.SHA)
	}
	files := make([]FileInfo, 0, len(info.Siblings))
	for _, s := range info.Siblings {
		f := FileInfo{Path: s.RFilename, Size: -1, BlobID: s.BlobID}
		if s.Size != nil {
			f.Size = *s.Size
		}
		if s.LFS != nil {
			f.SHA256 = s.LFS.SHA256
			f.Size = s.LFS.Size
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, info.SHA, nil
}
