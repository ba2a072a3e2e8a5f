package analysis

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// ConnTable is a `ctxdep connections --out DIR` read back, for the
// report's feature pages: per target feature of the later layer, its
// strongest inputs from the earlier layer by the weights (V) and by the
// data (Ā).
type ConnTable struct {
	Dir     string
	Summary ConnSummary
	Count   []int64
	// Spearman, ShareTopV: per target; NaN when undefined.
	Spearman, ShareTopV []float32
	ByV, ByAbar         ConnList // (targets·K)
}

// ReadConnections reads the connections written into dir, checking that
// every tensor has the shape its summary implies.
func ReadConnections(dir string) (*ConnTable, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ConnSummaryFile))
	if err != nil {
		return nil, fmt.Errorf("connections: %w (give the --out DIR of ctxdep connections)", err)
	}
	t := &ConnTable{Dir: dir}
	if err := json.Unmarshal(raw, &t.Summary); err != nil {
		return nil, fmt.Errorf("connections: %s: %w", filepath.Join(dir, ConnSummaryFile), err)
	}
	s := t.Summary
	if s.Format != "ctxdep-connections" || s.Targets <= 0 || s.TopK <= 0 {
		return nil, fmt.Errorf("connections: %s is not the summary of ctxdep connections (format %q, %d targets, top-k %d)", filepath.Join(dir, ConnSummaryFile), s.Format, s.Targets, s.TopK)
	}
	path := filepath.Join(dir, ConnSafetensors)
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("connections: %w", err)
	}
	defer f.Close()
	n, nk := s.Targets, s.Targets*s.TopK
	f32 := func(name string, want int) ([]float32, error) {
		v, err := f.Float32(name)
		if err == nil && len(v) != want {
			err = fmt.Errorf("%s holds %d values, want %d", name, len(v), want)
		}
		return v, err
	}
	i32 := func(name string, want int) ([]int32, error) {
		v, err := f.Int32(name)
		if err == nil && len(v) != want {
			err = fmt.Errorf("%s holds %d values, want %d", name, len(v), want)
		}
		return v, err
	}
	if t.Count, err = f.Int64("count"); err == nil && len(t.Count) != n {
		err = fmt.Errorf("count holds %d values, want %d", len(t.Count), n)
	}
	for _, x := range []struct {
		dst  *[]float32
		name string
		n    int
	}{{&t.Spearman, "spearman", n}, {&t.ShareTopV, "share_topk_v", n},
		{&t.ByV.V, "top_v.v", nk}, {&t.ByV.Abar, "top_v.abar", nk}, {&t.ByAbar.V, "top_abar.v", nk}, {&t.ByAbar.Abar, "top_abar.abar", nk}} {
		if err == nil {
			*x.dst, err = f32(x.name, x.n)
		}
	}
	if err == nil {
		t.ByV.Index, err = i32("top_v.index", nk)
	}
	if err == nil {
		t.ByAbar.Index, err = i32("top_abar.index", nk)
	}
	if err != nil {
		return nil, fmt.Errorf("connections: %s: %w", path, err)
	}
	return t, nil
}

// ConnInput is one source of a target's inputs, as a feature page shows it.
type ConnInput struct {
	Source  int
	V, Abar float32
}

// Inputs returns target j's top sources by |V| and by |Ā| (unused slots
// left out).
func (t *ConnTable) Inputs(j int) (byV, byAbar []ConnInput) {
	k := t.Summary.TopK
	pick := func(l ConnList) []ConnInput {
		var out []ConnInput
		for r := j * k; r < (j+1)*k; r++ {
			if l.Index[r] >= 0 {
				out = append(out, ConnInput{Source: int(l.Index[r]), V: l.V[r], Abar: l.Abar[r]})
			}
		}
		return out
	}
	return pick(t.ByV), pick(t.ByAbar)
}
