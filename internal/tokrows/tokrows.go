package tokrows

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ctxdep/ctxdep/internal/bpe"
)

const (
	// BatchDocs is the documents per batch: datasets' Dataset.map(batched=True)
	// default batch_size, which tokenize_and_concatenate does not override.
	BatchDocs = 1000
	// NumChunks is num_chunks in utils.py's tokenize_function.
	NumChunks = 20
	// DefaultMaxLength is the notebook's max_length (row length with BOS).
	DefaultMaxLength = 128

	// aheadBatches bounds how many tokenized batches wait for the reader.
	aheadBatches = 2
)

// Stats counts what a Stream has done, over the batches whose rows Next has
// started to return (a batch tokenized ahead is not counted yet).
type Stats struct {
	Documents  int64 // documents read
	Batches    int64 // batches tokenized
	Tokens     int64 // tokens after removing every EOT (kept + discarded)
	Rows       int64 // rows returned by Next
	Discarded  int64 // tokens dropped as batch remainders (< S per batch)
	EOTRemoved int64 // EOT ids removed: separators and literal "<|endoftext|>"
}

// Stream cuts documents into rows of maxLength tokens. It is not safe for
// concurrent use; call Next, Stats and Close from one goroutine.
type Stream struct {
	// Snapshot, when set before the first Next, is called on the
	// producer's goroutine once it has read each batch's documents (with
	// the document source's counts, say); Snap returns the value of the
	// batch the last row came from. The producer reads ahead of Next by a
	// timing; the snapshot says what the rows used were read from.
	Snapshot func() any

	tok       *bpe.Tokenizer
	next      func() (string, error)
	maxLength int

	started bool
	results chan batch
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the producer has returned
	once    sync.Once

	cur   batch
	pos   int // next token of cur.tokens
	stats Stats
	snap  any   // cur's snapshot
	err   error // sticky: io.EOF or the first error
}

// batch is one tokenized batch of documents.
type batch struct {
	tokens  []int32 // (R·S) the kept tokens, without BOS
	docs    int
	total   int // tokens after removing EOT
	removed int // EOT ids removed
	snap    any // Snapshot() once its documents were read
	err     error
}

// New returns a Stream over the documents next returns in order (io.EOF
// after the last). maxLength is the row length including BOS; 0 means
// DefaultMaxLength. next is called from the Stream's own goroutine, one
// call at a time, and never again after it returned an error or Close
// returned.
func New(tok *bpe.Tokenizer, next func() (string, error), maxLength int) *Stream {
	if maxLength == 0 {
		maxLength = DefaultMaxLength
	}
	return &Stream{tok: tok, next: next, maxLength: maxLength}
}

// MaxLength returns the row length, BOS included.
func (s *Stream) MaxLength() int { return s.maxLength }

// Next fills dst (len MaxLength) with the next row: bpe.EOT then
// MaxLength−1 text tokens. It returns io.EOF after the last row, and an
// error wrapping the source's error if next failed (rows of the batches
// before it are returned first; the batch it interrupted is dropped).
func (s *Stream) Next(dst []int32) error {
	if len(dst) != s.maxLength {
		panic(fmt.Sprintf("tokrows: Next: len(dst) = %d, want %d", len(dst), s.maxLength))
	}
	if s.err != nil {
		return s.err
	}
	if !s.started {
		if s.maxLength < 2 {
			s.err = fmt.Errorf("tokrows: max length %d leaves no room for text after BOS (want ≥ 2)", s.maxLength)
			return s.err
		}
		s.start()
	}
	seqLen := s.maxLength - 1
	for s.pos == len(s.cur.tokens) {
		b, ok := <-s.results
		if !ok {
			s.err = io.EOF
			return s.err
		}
		if b.err != nil {
			s.err = b.err
			return s.err
		}
		s.stats.Documents += int64(b.docs)
		s.stats.Batches++
		s.stats.Tokens += int64(b.total)
		s.stats.Discarded += int64(b.total - len(b.tokens))
		s.stats.EOTRemoved += int64(b.removed)
		s.cur, s.pos, s.snap = b, 0, b.snap
	}
	dst[0] = bpe.EOT
	copy(dst[1:], s.cur.tokens[s.pos:s.pos+seqLen])
	s.pos += seqLen
	s.stats.Rows++
	return nil
}

// Stats returns the counts so far; after Next returned io.EOF, the totals.
func (s *Stream) Stats() Stats { return s.stats }

// Snap returns the Snapshot of the batch the last row came from (nil
// before the first row or without Snapshot).
func (s *Stream) Snap() any { return s.snap }

// Ended reports whether Next has returned io.EOF: every document was read.
func (s *Stream) Ended() bool { return s.err == io.EOF }

// Close stops the producer and waits until it has returned (at most the
// document read and batch in progress). Next then returns an error.
func (s *Stream) Close() error {
	s.once.Do(func() {
		if s.started {
			close(s.stop)
			<-s.done
		}
		if s.err == nil {
			s.err = errors.New("tokrows: stream closed")
		}
	})
	return nil
}

func (s *Stream) start() {
	s.started = true
	s.results = make(chan batch, aheadBatches)
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go s.produce()
}

// produce reads batches of documents and sends them tokenized, in order.
func (s *Stream) produce() {
	defer close(s.done)
	defer close(s.results)
	send := func(b batch) bool {
		select {
		case s.results <- b:
			return true
		case <-s.stop:
			return false
		}
	}
	var w chunkEncoder
	read := 0
	docs := make([]string, 0, BatchDocs)
	for {
		docs = docs[:0]
		var err error
		for len(docs) < BatchDocs {
			select {
			case <-s.stop:
				return
			default:
			}
			var d string
			if d, err = s.next(); err != nil {
				break
			}
			docs = append(docs, d)
		}
		if err != nil && err != io.EOF {
			send(batch{err: fmt.Errorf("tokrows: read document %d: %w", read+len(docs), err)})
			return
		}
		read += len(docs)
		if len(docs) > 0 {
			var snap any
			if s.Snapshot != nil {
				snap = s.Snapshot()
			}
			b := w.batch(s.tok, docs, s.maxLength-1)
			b.snap = snap
			if !send(b) {
				return
			}
		}
		if err == io.EOF {
			return
		}
	}
}

// chunkEncoder tokenizes the chunks of a batch in parallel, reusing its
// buffers from batch to batch.
type chunkEncoder struct {
	chunks [NumChunks]string
	ids    [NumChunks][]int32
}

// batch runs tokenize_function on one batch of documents (seqLen = S).
func (w *chunkEncoder) batch(tok *bpe.Tokenizer, docs []string, seqLen int) batch {
	for i, d := range docs {
		docs[i] = bpe.ToValidUTF8(d)
	}
	full := strings.Join(docs, bpe.EOTText)
	w.split(full)

	workers := min(runtime.GOMAXPROCS(0), NumChunks)
	var next atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1)) - 1; k < NumChunks; k = int(next.Add(1)) - 1 {
				w.ids[k] = tok.AppendEncode(w.ids[k][:0], w.chunks[k])
			}
		}()
	}
	wg.Wait()

	n := 0
	for k := range w.ids {
		n += len(w.ids[k])
	}
	tokens := make([]int32, 0, n)
	for k := range w.ids {
		for _, id := range w.ids[k] {
			if id != bpe.EOT {
				tokens = append(tokens, id)
			}
		}
		w.chunks[k] = ""
	}
	keep := len(tokens) / seqLen * seqLen
	return batch{tokens: tokens[:keep:keep], docs: len(docs), total: len(tokens), removed: n - len(tokens)}
}

// split cuts full (valid UTF-8) into NumChunks chunks of chunk_len code
// points, chunk_len = (L − 1) // NumChunks + 1 with Python's floor division.
func (w *chunkEncoder) split(full string) {
	L := utf8.RuneCountInString(full)
	chunkLen := floorDiv(L-1, NumChunks) + 1
	start, pos, runes := 0, 0, 0 // byte offset of chunk k; byte offset reached, at code point runes
	for k := range NumChunks {
		end := min((k+1)*chunkLen, L)
		for runes < end {
			_, size := utf8.DecodeRuneInString(full[pos:])
			pos += size
			runes++
		}
		w.chunks[k] = full[start:pos]
		start = pos
	}
}

// floorDiv is Python's a // b for b > 0.
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
