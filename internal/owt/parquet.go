package owt

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"

	"github.com/ctxdep/ctxdep/internal/pyutf8"
)

// parquetSource reads the top-level "text" column of a parquet file page by
// page, row groups in order: memory is one decoded page, not the file.
type parquetSource struct {
	path  string
	f     *os.File
	pages parquet.Pages
	page  parquet.Page        // the current page, or nil
	vr    parquet.ValueReader // its values
	vals  []parquet.Value     // (parquetBatch) decoded values of the page
	n, i  int                 // vals[i:n] are unread
	// pageDone: the page has no values beyond vals[:n]; release it once
	// they are used.
	pageDone bool
	stats    *Stats
}

// parquetBatch is how many values are decoded from a page at a time.
const parquetBatch = 256

func openParquet(path string, st *Stats) (src docSource, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("owt: open corpus: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	defer recoverParquet(path, &err)
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("owt: open corpus: %w", err)
	}
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("owt: %s: not a readable parquet file: %w", path, err)
	}
	col := pf.Root().Column("text")
	if col == nil {
		var names []string
		for _, c := range pf.Root().Columns() {
			names = append(names, fmt.Sprintf("%q", c.Name()))
		}
		return nil, fmt.Errorf("owt: %s: no \"text\" column (columns: %v)", path, names)
	}
	switch {
	case !col.Leaf():
		return nil, fmt.Errorf("owt: %s: column \"text\" is a group (a list, map or struct), want a string", path)
	case col.Repeated():
		return nil, fmt.Errorf("owt: %s: column \"text\" is repeated, want one string per row", path)
	case col.Type().Kind() != parquet.ByteArray:
		return nil, fmt.Errorf("owt: %s: column \"text\" is %s, want a (possibly optional) string", path, col.Type())
	}
	return &parquetSource{path: path, f: f, pages: col.Pages(), vals: make([]parquet.Value, parquetBatch), stats: st}, nil
}

// recoverParquet turns a panic inside parquet-go (possible on corrupt
// files) into an error naming the file.
func recoverParquet(path string, err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("owt: %s: corrupt parquet file (parquet-go: %v)", path, p)
	}
}

func (s *parquetSource) close() error {
	s.releasePage()
	perr := s.pages.Close()
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("owt: close %s: %w", s.path, err)
	}
	if perr != nil {
		return fmt.Errorf("owt: close %s: %w", s.path, perr)
	}
	return nil
}

func (s *parquetSource) releasePage() {
	if s.page != nil {
		parquet.Release(s.page)
		s.page, s.vr = nil, nil
	}
}

func (s *parquetSource) next() (doc string, err error) {
	defer recoverParquet(s.path, &err)
	for {
		for s.i < s.n {
			v := s.vals[s.i]
			s.i++
			if v.IsNull() {
				s.stats.Skipped["null text"]++
				continue
			}
			text, bad := pyutf8.Bytes(v.ByteArray())
			if bad > 0 {
				s.stats.Replaced++
			}
			return text, nil
		}
		if s.pageDone {
			s.releasePage() // its values have all been copied out
			s.pageDone = false
		}
		if s.vr == nil {
			s.page, err = s.pages.ReadPage()
			if err == io.EOF {
				return "", io.EOF
			}
			if err != nil {
				return "", s.wrap(err)
			}
			s.vr = s.page.Values()
		}
		s.n, err = s.vr.ReadValues(s.vals)
		s.i = 0
		if err == io.EOF {
			s.pageDone, err = true, nil
		}
		if err != nil {
			return "", s.wrap(err)
		}
	}
}

func (s *parquetSource) wrap(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("owt: %s: truncated parquet file: %w", s.path, err)
	}
	return fmt.Errorf("owt: %s: read column \"text\": %w", s.path, err)
}
