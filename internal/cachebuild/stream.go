package cachebuild

import (
	"fmt"
	"io"
)

// StreamRows adapts a sequential source of rows (the text pipeline:
// documents → tokenize_and_concatenate) to Rows for the first n rows. Reads
// must go forward: rows before an earlier read cannot be read again, and
// rows skipped over (the shards a resumed build keeps) are read and
// dropped, which keeps the stream's order deterministic.
type StreamRows struct {
	next func(dst []int32) error // fills one row; io.EOF after the last
	t, n int
	pos  int
	skip []int32
}

// NewStreamRows returns the first n rows of length t of next; n < 0 means
// every row up to the end of the input (NumRows is then -1: see
// ReadUpTo).
func NewStreamRows(next func(dst []int32) error, t, n int) *StreamRows {
	return &StreamRows{next: next, t: t, n: max(n, -1), skip: make([]int32, t)}
}

func (s *StreamRows) NumRows() int { return s.n }
func (s *StreamRows) RowLen() int  { return s.t }

// ReadUpTo copies up to n rows from row first on into dst and returns how
// many it copied: fewer than n only where the input ends.
func (s *StreamRows) ReadUpTo(dst []int32, first, n int) (int, error) {
	if first < s.pos {
		panic(fmt.Sprintf("cachebuild: stream rows read backwards (row %d after %d)", first, s.pos))
	}
	for s.pos < first {
		if err := s.next(s.skip); err == io.EOF {
			return 0, nil
		} else if err != nil {
			return 0, err
		}
		s.pos++
	}
	for i := 0; i < n; i++ {
		if err := s.next(dst[i*s.t : (i+1)*s.t]); err == io.EOF {
			return i, nil
		} else if err != nil {
			return i, err
		}
		s.pos++
	}
	return n, nil
}

// Read implements Rows.
func (s *StreamRows) Read(dst []int32, first, n int) error {
	if first < s.pos {
		panic(fmt.Sprintf("cachebuild: stream rows read backwards (row %d after %d)", first, s.pos))
	}
	for s.pos < first {
		if err := s.row(s.skip); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		if err := s.row(dst[i*s.t : (i+1)*s.t]); err != nil {
			return err
		}
	}
	return nil
}

func (s *StreamRows) row(dst []int32) error {
	err := s.next(dst)
	if err == io.EOF {
		return fmt.Errorf("the input ended after %d rows of %d tokens, fewer than the %d asked for (lower --n-tokens)", s.pos, s.t, s.n)
	}
	if err != nil {
		return err
	}
	s.pos++
	return nil
}
