package owt

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/ctxdep/ctxdep/internal/bpe"
	"github.com/ctxdep/ctxdep/internal/tokrows"
)

// GPT-2 vocabulary facts, from package bpe: ids run 0..50256
// and "<|endoftext|>" = 50256, the last id, is BOS, EOS and pad at once.
const (
	eot       = bpe.EOT
	vocabSize = bpe.EOT + 1
)

// defaultRowLen is TransformerLens's max_length (1 BOS + 127 tokens), as
// tokrows cuts text rows.
const defaultRowLen = tokrows.DefaultMaxLength

// binIndexStride is how many rows apart the DropEOT index records a file
// position: a Read walks at most this many rows of the file before its
// first row (≈ 64 KiB at 127 tokens a row), and the index takes 8 bytes per
// stride (≈ 2 MiB for nanoGPT's 9-billion-token train.bin).
const binIndexStride = 256

// binChunk is how many tokens one ReadAt fetches.
const binChunk = 32 << 10

// BinOptions configures OpenBin.
type BinOptions struct {
	// RowLen is the row length including the leading BOS; 0 means
	// tokrows.DefaultMaxLength (128).
	RowLen int
	// DropEOT removes every 50256 from the token stream before rows are
	// cut, as tokenize_and_concatenate's pad removal does.
	// Opening then scans the whole file once to index row positions.
	DropEOT bool
}

// BinRows reads nanoGPT's train.bin / val.bin (headerless
// little-endian uint16 token ids, each document followed by 50256) as rows
// of RowLen tokens: 50256 followed by the next RowLen−1 tokens of the
// stream; a trailing partial row is dropped. It reads by offset and never
// loads the file. It implements cachebuild.Rows and is safe for concurrent
// Reads.
type BinRows struct {
	path   string
	f      *os.File
	tokens int64 // uint16 ids in the file
	rowLen int   // RowLen
	body   int   // RowLen−1 tokens taken from the stream per row
	rows   int
	drop   bool
	// index[k] is the file token position from which row k·binIndexStride
	// starts (DropEOT only; otherwise row r starts at r·body).
	index []int64
}

// OpenBin opens a nanoGPT token file. Ids ≥ 50257 are reported by Read
// (and by OpenBin itself with DropEOT, which reads every token).
func OpenBin(path string, o BinOptions) (*BinRows, error) {
	if o.RowLen == 0 {
		o.RowLen = defaultRowLen
	}
	if o.RowLen < 2 {
		return nil, fmt.Errorf("owt: row length %d is too short (want ≥ 2: BOS and a token)", o.RowLen)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("owt: open tokens: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("owt: open tokens: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("owt: %s is not a regular file", path)
	}
	if fi.Size()%2 != 0 {
		f.Close()
		return nil, fmt.Errorf("owt: %s: %d bytes is odd: not a uint16 token file", path, fi.Size())
	}
	b := &BinRows{path: path, f: f, tokens: fi.Size() / 2, rowLen: o.RowLen, body: o.RowLen - 1, drop: o.DropEOT}
	if b.drop {
		if err := b.buildIndex(); err != nil {
			f.Close()
			return nil, err
		}
	} else {
		b.rows = int(b.tokens / int64(b.body))
	}
	if b.rows == 0 {
		f.Close()
		what := "tokens"
		if b.drop {
			what = "tokens other than 50256"
		}
		return nil, fmt.Errorf("owt: %s: too few %s for one row of %d", path, what, b.rowLen)
	}
	return b, nil
}

// NumRows returns the number of whole rows.
func (b *BinRows) NumRows() int { return b.rows }

// RowLen returns the row length, BOS included.
func (b *BinRows) RowLen() int { return b.rowLen }

// Tokens returns the number of token ids in the file.
func (b *BinRows) Tokens() int64 { return b.tokens }

// Close closes the file.
func (b *BinRows) Close() error { return b.f.Close() }

// buildIndex scans the file once, checking every id, counting the tokens
// kept after dropping 50256 and recording where every binIndexStride-th row
// starts.
func (b *BinRows) buildIndex() error {
	var kept int64
	err := b.scan(0, b.tokens, func(pos int64, id uint16) bool {
		if id == eot {
			return true
		}
		if kept%int64(b.body) == 0 && (kept/int64(b.body))%binIndexStride == 0 {
			b.index = append(b.index, pos)
		}
		kept++
		return true
	})
	if err != nil {
		return err
	}
	b.rows = int(kept / int64(b.body))
	return nil
}

// scan calls fn for each token at positions [start, end), in order, until
// fn returns false. It checks every id it reads.
func (b *BinRows) scan(start, end int64, fn func(pos int64, id uint16) bool) error {
	buf := make([]byte, 2*min(binChunk, end-start))
	for pos := start; pos < end; {
		n := min(int64(binChunk), end-pos)
		if _, err := b.f.ReadAt(buf[:2*n], 2*pos); err != nil {
			// io.EOF here means the file shrank under us.
			return fmt.Errorf("owt: read %s at byte %d: %w", b.path, 2*pos, noEOF(err))
		}
		for k := range n {
			id := binary.LittleEndian.Uint16(buf[2*k:])
			if id >= vocabSize {
				return fmt.Errorf("owt: %s: token id %d at byte offset %d is outside the GPT-2 vocabulary (< %d)", b.path, id, 2*(pos+k), vocabSize)
			}
			if !fn(pos+k, id) {
				return nil
			}
		}
		pos += n
	}
	return nil
}

// Read copies rows [first, first+n) into dst (n·RowLen), each row 50256
// followed by RowLen−1 stream tokens.
func (b *BinRows) Read(dst []int32, first, n int) error {
	if first < 0 || n < 0 || first > b.rows-n {
		return fmt.Errorf("owt: %s: rows [%d, %d) asked for, the file has %d", b.path, first, first+n, b.rows)
	}
	if len(dst) < n*b.rowLen {
		return fmt.Errorf("owt: %s: destination holds %d tokens, %d rows of %d need %d", b.path, len(dst), n, b.rowLen, n*b.rowLen)
	}
	if n == 0 {
		return nil
	}
	want := int64(n) * int64(b.body)
	// The file positions to scan, and how many kept tokens to pass over
	// before the first row.
	var start, end, skip int64
	if b.drop {
		start, end = b.index[first/binIndexStride], b.tokens
		skip = int64(first%binIndexStride) * int64(b.body)
	} else {
		start = int64(first) * int64(b.body)
		end = start + want
	}
	var got int64
	err := b.scan(start, end, func(_ int64, id uint16) bool {
		if b.drop && id == eot {
			return true
		}
		if skip > 0 {
			skip--
			return true
		}
		r, c := got/int64(b.body), got%int64(b.body)
		if c == 0 {
			dst[r*int64(b.rowLen)] = eot
		}
		dst[r*int64(b.rowLen)+1+c] = int32(id)
		got++
		return got < want
	})
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("owt: %s: file ended after %d of %d tokens for rows [%d, %d) (did it change since it was opened?)", b.path, got, want, first, first+n)
	}
	return nil
}
