package cachebuild

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// hostMemPass is the CPU's pass with HostMemory: it hands out Go slices
// and keeps a ledger, poisons what is freed (NaN), and fails its
// allocation number failAt (from 0; -1: never).
type hostMemPass struct {
	Pass
	t      *testing.T
	live   map[*float32]int
	allocs int
	failAt int
	ledger int // captures' x and y Run was handed from the ledger
	others int // and from elsewhere
}

func (p *hostMemPass) HostFloats(n int) ([]float32, error) {
	k := p.allocs
	p.allocs++
	if k == p.failAt {
		return nil, errors.New("no page-locked memory left")
	}
	s := make([]float32, n)
	p.live[&s[0]] = n
	return s, nil
}

func (p *hostMemPass) FreeHostFloats(s []float32) {
	if p.live[unsafe.SliceData(s)] != len(s) {
		p.t.Errorf("freeing %d floats that HostFloats did not return", len(s))
	}
	delete(p.live, unsafe.SliceData(s))
	for i := range s {
		s[i] = float32(math.NaN())
	}
}

func (p *hostMemPass) Run(tokens []int32, b, t int, out []Capture) error {
	for _, c := range out {
		for _, s := range [][]float32{c.X, c.Y} {
			if _, ok := p.live[unsafe.SliceData(s)]; ok {
				p.ledger++
			} else {
				p.others++
			}
		}
	}
	return p.Pass.Run(tokens, b, t, out)
}

// A pass with HostMemory gets its batches' x and y from it, and the build
// frees them all when it ends: after the writer has finished with them
// (they are poisoned on free, and the shards are a plain build's, byte
// for byte), and after a failed pass. When page-locked memory runs out the
// rest is Go's memory, with the same shards.
func TestBuildHostMemory(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	layers := []int{0, 2}
	plain := layerOptions(t, f, filepath.Join(dir, "plain"), layers...)
	if _, err := Build(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	const bufs = 2 * 2 * 2 // two batches' x and y per layer
	bufBytes := int64(4 * plain.BatchSize * f.rows.T * f.model.DModel)
	for _, c := range []struct {
		name    string
		failAt  int
		limit   int64 // PinnedLimit
		allocs  int   // HostFloats calls
		passErr bool
		want    string
		note    string // in the progress output
	}{
		{"complete", -1, 0, bufs, false, "", ""},
		{"within the limit", -1, bufs * bufBytes, bufs, false, "", ""},
		// After a failure, the rest is Go's memory without asking again.
		{"an allocation fails", 5, 0, 6, false, "", "are ordinary memory, not page-locked (no page-locked memory left)"},
		{"over the limit", -1, 3*bufBytes + 1, 2, false, "", "are ordinary memory, not page-locked (the limit of"},
		{"the pass fails", -1, 0, bufs, true, "the pass failed", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := layerOptions(t, f, filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")), layers...)
			var tcs []*transcoder.Transcoder
			for _, l := range o.Layers {
				tcs = append(tcs, l.Transcoder)
			}
			var inner Pass = NewCPUPass(f.model, layers, tcs, o.BatchSize*f.rows.T)
			if c.passErr {
				inner = &failAfter{Pass: inner, n: 1}
			}
			p := &hostMemPass{Pass: inner, t: t, live: map[*float32]int{}, failAt: c.failAt}
			var log bytes.Buffer
			o.Pass, o.PinnedLimit, o.Progress = p, c.limit, progress.New(&log, "cache build", 0, "tokens", false)
			_, err := Build(context.Background(), o)
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("build: %v, want %q", err, c.want)
			}
			if len(p.live) != 0 {
				t.Errorf("%d of %d allocations not freed", len(p.live), p.allocs)
			}
			if p.allocs != c.allocs {
				t.Errorf("%d allocations, want %d", p.allocs, c.allocs)
			}
			if got := strings.Contains(log.String(), "not page-locked"); got != (c.note != "") || !strings.Contains(log.String(), c.note) {
				t.Errorf("progress output %q, want a note %q", log.String(), c.note)
			}
			if c.want == "" {
				// Run is handed Go's memory only where HostFloats was not asked or failed.
				if p.ledger == 0 || (c.note == "") != (p.others == 0) {
					t.Errorf("Run was handed %d buffers from HostFloats and %d others", p.ledger, p.others)
				}
				for i := range layers {
					sameShards(t, o.Layers[i].Out, plain.Layers[i].Out)
				}
			}
		})
	}
}

// Measure times the pass on the memory a build gives it, and frees it.
func TestMeasureHostMemory(t *testing.T) {
	f := load(t)
	layers := []int{0, 2}
	p := &hostMemPass{Pass: NewCPUPass(f.model, layers, nil, 2*f.rows.T), t: t, live: map[*float32]int{}, failAt: -1}
	if _, err := Measure(context.Background(), f.model, p, layers, 2, f.rows.T); err != nil {
		t.Fatal(err)
	}
	if p.allocs != 2*len(layers) || p.others != 0 || len(p.live) != 0 {
		t.Errorf("%d allocations (%d not freed); Run handed %d others", p.allocs, len(p.live), p.others)
	}
}

// failAfter is a pass that fails after n batches.
type failAfter struct {
	Pass
	n int
}

func (p *failAfter) Run(tokens []int32, b, t int, out []Capture) error {
	if p.n == 0 {
		return errors.New("the pass failed")
	}
	p.n--
	return p.Pass.Run(tokens, b, t, out)
}
