package owt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultShuffleBuffer is the buffer size of the notebook's
// .shuffle(seed=42, buffer_size=10_000) and the CLI's default.
const DefaultShuffleBuffer = 10_000

// DefaultSeed is the notebook's shuffle seed.
const DefaultSeed = 42

// DefaultMaxDocBytes bounds one document (or one JSON line) when
// Options.MaxDocBytes is 0. The largest OpenWebText document is well under
// 1 MiB; a bigger one is almost surely a file that is not a corpus.
const DefaultMaxDocBytes = 64 << 20

// Format is a corpus layout.
type Format string

// The corpus layouts Open understands.
const (
	// FormatJSONL is JSON lines with a "text" field (.jsonl, .ndjson, or
	// .json, which may also hold one JSON array of objects), optionally
	// compressed (.gz, .zst, .xz, .bz2; detected from the bytes).
	FormatJSONL Format = "jsonl"
	// FormatParquet is parquet with a top-level string column "text".
	FormatParquet Format = "parquet"
	// FormatTar is the original OpenWebText urlsf_subsetNN.tar: a tar of
	// .xz members, each an xz tar of .txt documents.
	FormatTar Format = "owt-tar"
	// FormatTxt is .txt files, one document each.
	FormatTxt Format = "txt"
)

// Options configures Open.
type Options struct {
	// ShuffleBuffer is the Hugging Face shuffle's buffer_size. 0 (the zero
	// value) disables shuffling altogether: files in name order, documents
	// in file order. 1 permutes the files but keeps each file's documents
	// in order (a one-item buffer shuffles nothing).
	ShuffleBuffer int
	// Seed is the shuffle seed (numpy.random.default_rng(Seed)).
	Seed uint64
	// Format forces a layout; "" detects it from the path. For a
	// directory, a forced format also picks which files are read.
	Format Format
	// MaxDocBytes bounds one document or JSON line; 0 means
	// DefaultMaxDocBytes. A larger one is an error, not a skip.
	MaxDocBytes int
}

// Stats counts what a Reader has read so far.
type Stats struct {
	Files     int   // files opened
	Read      int64 // documents taken from the files (returned or still in the shuffle buffer)
	Documents int64 // documents returned by Next
	Bytes     int64 // UTF-8 bytes of the documents returned
	Empty     int64 // documents returned that are empty strings (kept, as HF keeps them)
	// Replaced counts documents (JSON records) whose bytes were not valid
	// UTF-8; each ill-formed sequence became U+FFFD as with Python's
	// errors="replace".
	Replaced int64
	// Skipped counts records, archive members and directory entries that
	// are not documents, by reason (for example "blank line", "null text",
	// "tar member not .xz").
	Skipped map[string]int64
}

// Reader streams the documents of a corpus in the order the Hugging Face
// streaming pipeline would yield them (see the package comment). It is not
// safe for concurrent use.
type Reader struct {
	path   string
	opts   Options
	format Format
	shards []string // files in stream order (after the shard permutation)
	next   int      // index in shards of the next file to open

	src   docSource // the open file, or nil
	shuf  *bufferShuffle[string]
	tail  []string // the shuffled buffer, yielded in order at the end
	tailI int
	ended bool // the files are exhausted

	stats Stats
	err   error // sticky
}

// docSource yields one file's documents in order.
type docSource interface {
	next() (string, error) // io.EOF after the last document
	close() error
}

// Open opens a corpus: a file, or a directory of files of one layout
// (hidden files, names starting with "." or "__", and subdirectories are
// ignored). It lists and orders the files but reads no document yet.
func Open(path string, o Options) (*Reader, error) {
	if o.ShuffleBuffer < 0 {
		return nil, fmt.Errorf("owt: shuffle buffer %d is negative", o.ShuffleBuffer)
	}
	if o.MaxDocBytes < 0 {
		return nil, fmt.Errorf("owt: max document size %d is negative", o.MaxDocBytes)
	}
	if o.MaxDocBytes == 0 {
		o.MaxDocBytes = DefaultMaxDocBytes
	}
	switch o.Format {
	case "", FormatJSONL, FormatParquet, FormatTar, FormatTxt:
	default:
		return nil, fmt.Errorf("owt: unknown format %q (want %s, %s, %s or %s)", o.Format, FormatJSONL, FormatParquet, FormatTar, FormatTxt)
	}
	r := &Reader{path: path, opts: o, stats: Stats{Skipped: map[string]int64{}}}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("owt: open corpus: %w", err)
	}
	if fi.IsDir() {
		r.format, r.shards, err = listDir(path, o.Format, r.stats.Skipped)
	} else {
		r.format, err = fileFormat(path, o.Format)
		r.shards = []string{path}
	}
	if err != nil {
		return nil, err
	}
	if o.ShuffleBuffer > 0 {
		perm := ShardOrder(len(r.shards), o.Seed)
		shuffled := make([]string, len(perm))
		for k, i := range perm {
			shuffled[k] = r.shards[i]
		}
		r.shards = shuffled
		// Both consumers start from copies of the same fresh generator.
		r.shuf = newBufferShuffle[string](NewGenerator(o.Seed), o.ShuffleBuffer)
	}
	return r, nil
}

// Format returns the layout being read.
func (r *Reader) Format() Format { return r.format }

// Files returns the corpus files in the order they are read (after the
// shard permutation).
func (r *Reader) Files() []string { return slices.Clone(r.shards) }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.Skipped = maps.Clone(r.stats.Skipped)
	return s
}

// Next returns the next document, or io.EOF after the last one. A corpus
// that yields no document at all ends with an error instead. Errors are
// sticky.
func (r *Reader) Next() (string, error) {
	if r.err != nil {
		return "", r.err
	}
	doc, err := r.advance()
	if err != nil {
		if err != io.EOF && errors.Is(err, io.EOF) {
			// Never let a failure read as the end of the corpus.
			err = fmt.Errorf("%s (unexpected end of data)", err)
		}
		r.err = err
		return "", err
	}
	r.stats.Documents++
	r.stats.Bytes += int64(len(doc))
	if doc == "" {
		r.stats.Empty++
	}
	return doc, nil
}

func (r *Reader) advance() (string, error) {
	for {
		if r.ended {
			if r.tailI < len(r.tail) {
				d := r.tail[r.tailI]
				r.tail[r.tailI] = "" // let the buffer's memory go as it drains
				r.tailI++
				return d, nil
			}
			if r.stats.Documents == 0 {
				return "", fmt.Errorf("owt: %s: no documents in %d %s%s", r.path, r.stats.Files, plural(r.stats.Files, "file", "files"), skippedSummary(r.stats.Skipped))
			}
			return "", io.EOF
		}
		doc, err := r.fromFiles()
		if err == io.EOF {
			r.ended = true
			if r.shuf != nil {
				r.tail = r.shuf.Finish()
				r.shuf = nil
			}
			continue
		}
		if err != nil {
			return "", err
		}
		r.stats.Read++
		if r.shuf == nil {
			return doc, nil
		}
		if out, ok := r.shuf.Add(doc); ok {
			return out, nil
		}
	}
}

// fromFiles returns the next document of the unshuffled stream.
func (r *Reader) fromFiles() (string, error) {
	for {
		if r.src == nil {
			if r.next == len(r.shards) {
				return "", io.EOF
			}
			src, err := r.openFile(r.shards[r.next])
			if err != nil {
				return "", err
			}
			r.next++
			r.stats.Files++
			r.src = src
		}
		doc, err := r.src.next()
		if err == nil {
			return doc, nil
		}
		cerr := r.src.close()
		r.src = nil
		if err != io.EOF {
			return "", err
		}
		if cerr != nil {
			return "", cerr
		}
	}
}

func (r *Reader) openFile(path string) (docSource, error) {
	switch r.format {
	case FormatJSONL:
		return openFileStream(path, r.opts.MaxDocBytes, &r.stats, newJSONSource)
	case FormatParquet:
		return openParquet(path, &r.stats)
	case FormatTar:
		return openFileStream(path, r.opts.MaxDocBytes, &r.stats, newTarSource)
	case FormatTxt:
		return openTxt(path, r.opts.MaxDocBytes, &r.stats)
	}
	panic("owt: unknown format " + string(r.format))
}

// Close releases the open file. The Reader cannot be used afterwards.
func (r *Reader) Close() error {
	var err error
	if r.src != nil {
		err = r.src.close()
		r.src = nil
	}
	if r.err == nil {
		r.err = errors.New("owt: reader is closed")
	}
	r.shuf, r.tail = nil, nil
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func skippedSummary(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return "; skipped " + strings.Join(parts, ", ")
}

// compressionExts are the suffixes that may follow a JSON or tar name.
var compressionExts = []string{".gz", ".zst", ".zstd", ".xz", ".bz2"}

// formatByName classifies a file name by its extension, or "".
func formatByName(name string) Format {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".parquet"):
		return FormatParquet
	case strings.HasSuffix(lower, ".txt"):
		return FormatTxt
	case strings.HasSuffix(lower, ".tgz"), strings.HasSuffix(lower, ".txz"):
		return FormatTar
	}
	base := lower
	for _, ext := range compressionExts {
		if strings.HasSuffix(base, ext) {
			base = strings.TrimSuffix(base, ext)
			break
		}
	}
	switch filepath.Ext(base) {
	case ".jsonl", ".json", ".ndjson":
		return FormatJSONL
	case ".tar":
		return FormatTar
	}
	return ""
}

// fileFormat picks the layout of a single file: forced, by name, or by its
// first bytes.
func fileFormat(path string, forced Format) (Format, error) {
	if forced != "" {
		return forced, nil
	}
	if f := formatByName(path); f != "" {
		return f, nil
	}
	if strings.HasSuffix(strings.ToLower(path), ".bin") {
		return "", fmt.Errorf("owt: %s is a nanoGPT token file, not text documents; ctxdep reads token rows from a .npy (cache build --tokens)", path)
	}
	head := make([]byte, 512)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("owt: open corpus: %w", err)
	}
	n, err := io.ReadFull(f, head)
	f.Close()
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return "", fmt.Errorf("owt: read %s: %w", path, err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("PAR1")):
		return FormatParquet, nil
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return FormatTar, nil
	}
	if t := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return FormatJSONL, nil
	}
	return "", fmt.Errorf("owt: %s: cannot tell the corpus format from the name or the first bytes (want .jsonl, .json, .parquet, .tar, .txt or a directory of them)", path)
}

// hidden reports whether a base name is one the Hugging Face file
// iterators skip.
func hidden(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "__")
}

// listDir returns the files of one layout in a directory, sorted by name.
func listDir(dir string, forced Format, skipped map[string]int64) (Format, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, fmt.Errorf("owt: list %s: %w", dir, err)
	}
	byFormat := map[Format][]string{}
	for _, e := range entries {
		name := e.Name()
		if hidden(name) {
			skipped["hidden file"]++
			continue
		}
		path := filepath.Join(dir, name)
		if !e.Type().IsRegular() {
			fi, err := os.Stat(path) // follow symbolic links
			if err != nil {
				return "", nil, fmt.Errorf("owt: list %s: %w", dir, err)
			}
			if !fi.Mode().IsRegular() {
				skipped["directory entry not a file"]++
				continue
			}
		}
		f := formatByName(name)
		if f == "" || (forced != "" && f != forced) {
			skipped["file of another format"]++
			continue
		}
		byFormat[f] = append(byFormat[f], path)
	}
	switch len(byFormat) {
	case 0:
		return "", nil, fmt.Errorf("owt: %s: no corpus files (want .jsonl, .json, .parquet, .tar or .txt files%s)", dir, skippedSummary(skipped))
	case 1:
	default:
		var kinds []string
		for _, f := range slices.Sorted(maps.Keys(byFormat)) {
			kinds = append(kinds, fmt.Sprintf("%d %s", len(byFormat[f]), f))
		}
		return "", nil, fmt.Errorf("owt: %s mixes corpus formats (%s); pass one file, a directory of one format, or a format", dir, strings.Join(kinds, ", "))
	}
	f := slices.Collect(maps.Keys(byFormat))[0]
	return f, byFormat[f], nil // in name order, as ReadDir lists them
}
