package owt

import (
	"fmt"
	"io"
	"os"
)

// txtSource is one .txt file holding one document, cleaned up like the
// archive's documents: the 2022 openwebtext script applied the
// same re.sub and strip to the extracted files.
type txtSource struct {
	path   string
	maxDoc int
	stats  *Stats
	done   bool
}

func openTxt(path string, maxDoc int, st *Stats) (docSource, error) {
	return &txtSource{path: path, maxDoc: maxDoc, stats: st}, nil
}

func (s *txtSource) close() error { return nil }

func (s *txtSource) next() (string, error) {
	if s.done {
		return "", io.EOF
	}
	s.done = true
	f, err := os.Open(s.path)
	if err != nil {
		return "", fmt.Errorf("owt: open corpus: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit to tell a file at the limit from a
	// bigger one without trusting Stat.
	b, err := io.ReadAll(io.LimitReader(f, int64(s.maxDoc)+1))
	if err != nil {
		return "", fmt.Errorf("owt: read %s: %w", s.path, err)
	}
	if len(b) > s.maxDoc {
		return "", fmt.Errorf("owt: %s is more than the %d-byte document limit", s.path, s.maxDoc)
	}
	text, bad := normalizeDoc(b)
	if bad > 0 {
		s.stats.Replaced++
	}
	return text, nil
}
