package tokrows

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctxdep/ctxdep/internal/bpe"
	"github.com/ctxdep/ctxdep/internal/npy"
)

// Golden rows, written by testdata/gen/gen_tokrows.py: tokenize_and_concatenate in numpy
// with gen_bpe.py's independent GPT-2 BPE (see its docstring to regenerate).
const goldenDir = "../../testdata/tokrows"

type goldenStats struct {
	Documents  int64 `json:"documents"`
	Batches    int64 `json:"batches"`
	Tokens     int64 `json:"tokens"`
	Discarded  int64 `json:"discarded"`
	Rows       int64 `json:"rows"`
	EOTRemoved int64 `json:"eot_removed"`
}

func (g goldenStats) stats() Stats {
	return Stats{Documents: g.Documents, Batches: g.Batches, Tokens: g.Tokens, Rows: g.Rows,
		Discarded: g.Discarded, EOTRemoved: g.EOTRemoved}
}

type golden struct {
	CorpusDocs int    `json:"corpus_docs"`
	DocsSHA256 string `json:"docs_sha256"`
	Runs       []struct {
		Name      string      `json:"name"`
		File      string      `json:"file"`
		Documents int         `json:"documents"`
		MaxLength int         `json:"max_length"`
		Stats     goldenStats `json:"stats"`
	} `json:"runs"`
	Edges []struct {
		Name      string      `json:"name"`
		Docs      []string    `json:"docs"`
		MaxLength int         `json:"max_length"`
		Rows      [][]int32   `json:"rows"`
		Stats     goldenStats `json:"stats"`
	} `json:"edges"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// compareRows fails t at the first row that differs.
func compareRows(t *testing.T, what string, got, want [][]int32) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("%s: row %d = %v, want %v", what, i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
}

// TestGoldenCorpus runs the Stream and the reference over the synthetic
// corpus (three batches) at max_length 128 and 16 and compares rows and
// statistics with gen_tokrows.py's.
func TestGoldenCorpus(t *testing.T) {
	tok := gpt2(t)
	g := loadGolden(t)
	docs := corpusDocs(g.CorpusDocs)
	if got := docsSHA256(docs); got != g.DocsSHA256 {
		t.Fatalf("corpusDocs differs from gen_tokrows.py's corpus (sha256 %s, want %s)", got, g.DocsSHA256)
	}
	for _, run := range g.Runs {
		t.Run(run.Name, func(t *testing.T) {
			flat, shape, err := npy.ReadInt32(filepath.Join(goldenDir, run.File))
			if err != nil {
				t.Fatal(err)
			}
			if len(shape) != 2 || shape[1] != run.MaxLength {
				t.Fatalf("%s: shape %v, want (R, %d)", run.File, shape, run.MaxLength)
			}
			want := make([][]int32, shape[0])
			for i := range want {
				want[i] = flat[i*shape[1] : (i+1)*shape[1]]
			}
			s := New(tok, sliceSource(docs[:run.Documents]), run.MaxLength)
			compareRows(t, "Stream", collect(t, s), want)
			if got := s.Stats(); got != run.Stats.stats() {
				t.Errorf("Stats() = %+v, want %+v", got, run.Stats.stats())
			}
			compareRows(t, "referenceRows", referenceRows(tok, docs[:run.Documents], run.MaxLength), want)
		})
	}
}

// TestGoldenEdges covers the edge cases of gen_tokrows.py: no documents,
// an empty batch text (L = 0), batches of separators only, whitespace-only
// text, separators cut by chunk boundaries, chunks cut inside multi-byte
// characters, literal "<|endoftext|>" in documents.
func TestGoldenEdges(t *testing.T) {
	tok := gpt2(t)
	for _, e := range loadGolden(t).Edges {
		t.Run(e.Name, func(t *testing.T) {
			s := New(tok, sliceSource(e.Docs), e.MaxLength)
			compareRows(t, "Stream", collect(t, s), e.Rows)
			if got := s.Stats(); got != e.Stats.stats() {
				t.Errorf("Stats() = %+v, want %+v", got, e.Stats.stats())
			}
			compareRows(t, "referenceRows", referenceRows(tok, e.Docs, e.MaxLength), e.Rows)
		})
	}
}

// TestStreamMatchesReference compares the parallel Stream with the
// sequential reference on ~1 MB of longer documents (3 batches), with one
// and two threads, and checks the row invariants.
func TestStreamMatchesReference(t *testing.T) {
	tok := gpt2(t)
	docs := englishDocs(1<<20, 300, 5)
	docs = append(docs, "tail with invalid \xe2\x82 bytes \xff", "")
	want := referenceRows(tok, docs, DefaultMaxLength)
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			got := collect(t, New(tok, sliceSource(docs), 0))
			compareRows(t, "Stream", got, want)
		})
	}
	for i, row := range want {
		if row[0] != bpe.EOT || slices.Contains(row[1:], bpe.EOT) {
			t.Fatalf("row %d = %v: want EOT first and nowhere else", i, row)
		}
	}
}

// TestInvalidUTF8 checks that a document's invalid bytes count as the
// U+FFFD Python would read, for the chunk lengths too.
func TestInvalidUTF8(t *testing.T) {
	tok := gpt2(t)
	var bad, good []string
	for i := range 50 {
		d := fmt.Sprintf("doc %d \xe2\x82 x \xed\xa0\x80 y", i)
		bad = append(bad, d)
		good = append(good, bpe.ToValidUTF8(d))
	}
	got := collect(t, New(tok, sliceSource(bad), 4))
	want := collect(t, New(tok, sliceSource(good), 4))
	compareRows(t, "invalid vs repaired", got, want)
	if len(want) == 0 {
		t.Fatal("no rows")
	}
}

// TestSourceError: rows of complete batches come first, then the source's
// error, wrapped; the interrupted batch is dropped.
func TestSourceError(t *testing.T) {
	tok := gpt2(t)
	docs := corpusDocs(1500)
	src := sliceSource(docs)
	n := 0
	s := New(tok, func() (string, error) {
		if n == 1200 {
			return "", errSource
		}
		n++
		return src()
	}, 0)
	want := referenceRows(tok, docs[:BatchDocs], DefaultMaxLength)
	var got [][]int32
	var err error
	for {
		row := make([]int32, DefaultMaxLength)
		if err = s.Next(row); err != nil {
			break
		}
		got = append(got, row)
	}
	compareRows(t, "rows before the error", got, want)
	if !errors.Is(err, errSource) || !strings.Contains(err.Error(), "tokrows: read document 1200") {
		t.Fatalf("Next error = %v, want the wrapped source error at document 1200", err)
	}
	if err2 := s.Next(make([]int32, DefaultMaxLength)); err2 != err {
		t.Errorf("second Next error = %v, want the same %v", err2, err)
	}
	if st := s.Stats(); st.Documents != BatchDocs || st.Batches != 1 {
		t.Errorf("Stats() = %+v, want 1 batch of %d documents", st, BatchDocs)
	}
}

// TestClose stops a stream early; the producer must return although the
// source has more documents.
func TestClose(t *testing.T) {
	tok := gpt2(t)
	calls := 0
	s := New(tok, func() (string, error) { calls++; return "some text to tokenize, again and again.", nil }, 0)
	if err := s.Next(make([]int32, DefaultMaxLength)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after := calls // Close waited for the producer: no more calls
	if err := s.Next(make([]int32, DefaultMaxLength)); err == nil || err == io.EOF {
		t.Errorf("Next after Close = %v, want an error", err)
	}
	if calls != after {
		t.Errorf("next was called %d times after Close returned", calls-after)
	}
	if calls > (aheadBatches+3)*BatchDocs {
		t.Errorf("next was called %d times: the producer ran more than a few batches ahead", calls)
	}
	if err := New(tok, sliceSource(nil), 0).Close(); err != nil { // never started
		t.Fatal(err)
	}
}

func TestMaxLength(t *testing.T) {
	tok := gpt2(t)
	if got := New(tok, sliceSource(nil), 0).MaxLength(); got != DefaultMaxLength {
		t.Errorf("New(…, 0).MaxLength() = %d, want %d", got, DefaultMaxLength)
	}
	err := New(tok, sliceSource([]string{"a b c"}), 1).Next(make([]int32, 1))
	if err == nil || !strings.Contains(err.Error(), "max length 1") {
		t.Errorf("Next with max length 1: error %v, want one naming the length", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "tokrows: ") {
			t.Errorf("Next with a short dst: panic %v, want a tokrows panic", r)
		}
	}()
	New(tok, sliceSource(nil), 8).Next(make([]int32, 7))
}

func TestFloorDiv(t *testing.T) {
	for _, tc := range []struct{ a, b, want int }{
		{-1, 20, -1}, {0, 20, 0}, {19, 20, 0}, {20, 20, 1}, {-20, 20, -1}, {-21, 20, -2}, {12986, 20, 649},
	} {
		if got := floorDiv(tc.a, tc.b); got != tc.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestSplit checks the chunk boundaries against the []rune formula.
func TestSplit(t *testing.T) {
	for _, s := range []string{"", "a", "ab", strings.Repeat("x", 19), strings.Repeat("é👍", 21), strings.Repeat("日本", 200) + "z"} {
		var w chunkEncoder
		w.split(s)
		r := []rune(s)
		cl := floorDiv(len(r)-1, NumChunks) + 1
		for k := range NumChunks {
			if want := string(pySlice(r, k*cl, (k+1)*cl)); w.chunks[k] != want {
				t.Errorf("split(%q): chunk %d = %q, want %q", s, k, w.chunks[k], want)
			}
		}
	}
}

// Snap is the source's count as of the batch the last row came from, not
// as far as the producer has read ahead: 1,000 documents while rows come
// from the first batch (after the producer has read the second, here
// waited for), 2,000 from the second; Ended only after io.EOF.
func TestSnapshot(t *testing.T) {
	tok := gpt2(t)
	var calls atomic.Int64
	const docs = 2500
	s := New(tok, func() (string, error) {
		if calls.Load() == docs {
			return "", io.EOF
		}
		calls.Add(1)
		return "some text to tokenize, again and again.", nil
	}, 16)
	s.Snapshot = func() any { return calls.Load() }
	row := make([]int32, 16)
	if err := s.Next(row); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); calls.Load() < 2*BatchDocs && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if calls.Load() < 2*BatchDocs {
		t.Fatalf("the producer read %d documents in 10 s, not the second batch: nothing to test", calls.Load())
	}
	if got := s.Snap(); got != int64(BatchDocs) || s.Ended() {
		t.Fatalf("after the first row, with %d documents read: Snap() = %v, Ended %v; want %d, false", calls.Load(), got, s.Ended(), BatchDocs)
	}
	for s.Stats().Batches < 2 {
		if err := s.Next(row); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Snap(); got != int64(2*BatchDocs) {
		t.Errorf("in the second batch: Snap() = %v, want %d", got, 2*BatchDocs)
	}
	var err error
	for err == nil {
		err = s.Next(row)
	}
	if err != io.EOF || !s.Ended() || s.Snap() != int64(docs) {
		t.Errorf("at the end: %v, Ended %v, Snap %v; want io.EOF, true, %d", err, s.Ended(), s.Snap(), docs)
	}
}
