package gpt2

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Parts names the weights of a model that LoadParts reads and processes,
// so that a command reads only what it uses: a forward pass to block L
// needs the embeddings and blocks 0..L, a command working on block L's MLP
// alone (pinv-baseline, fit from a cache) needs only that MLP, which
// TransformerLens's processing derives from ln_2, mlp.c_fc and mlp.c_proj
// of block L. The zero value names nothing; All names the whole model.
type Parts struct {
	// Blocks: W_E, W_pos and blocks 0..Blocks−1 whole, for a forward pass
	// through block Blocks−1 (RunToBlock(…, Blocks−1, …)).
	Blocks int
	// MLPs: these blocks' MLPs alone (W_in, b_in, W_out, b_out), for
	// Model.MLPOut and midcoder.NewMLP.
	MLPs []int
	// Unembed: W_U and b_U.
	Unembed bool
}

// All names every weight: what Loss and LossFrom need.
func All() Parts { return Parts{Blocks: 1 << 30, Unembed: true} }

// Through names what a forward pass through block layer needs.
func Through(layer int) Parts { return Parts{Blocks: layer + 1} }

// MLP names the MLPs of the given blocks alone.
func MLP(layers ...int) Parts { return Parts{MLPs: slices.Clone(layers)} }

// With returns the parts p and q name together.
func (p Parts) With(q Parts) Parts {
	return Parts{Blocks: max(p.Blocks, q.Blocks), MLPs: append(slices.Clone(p.MLPs), q.MLPs...), Unembed: p.Unembed || q.Unembed}
}

// normal returns p for a model of cfg's shape: Blocks within [0, NLayer],
// MLPs sorted, unique, within range and outside the whole blocks. Parts
// out of range are dropped (the command's own check of its --layer then
// reports them).
func (p Parts) normal(cfg Config) Parts {
	q := Parts{Blocks: min(max(p.Blocks, 0), cfg.NLayer), Unembed: p.Unembed}
	for _, l := range p.MLPs {
		if l >= q.Blocks && l < cfg.NLayer {
			q.MLPs = append(q.MLPs, l)
		}
	}
	slices.Sort(q.MLPs)
	q.MLPs = slices.Compact(q.MLPs)
	return q
}

// whole reports whether p, normal for cfg, is the whole model.
func (p Parts) whole(cfg Config) bool { return p.Blocks == cfg.NLayer && p.Unembed }

// hasMLP reports whether p, normal, holds block l's MLP.
func (p Parts) hasMLP(l int) bool { return l < p.Blocks || slices.Contains(p.MLPs, l) }

// String describes p for logs: "the whole model", "blocks 0-8", "block 8's
// MLP", joined by " and ".
func (p Parts) String() string {
	if p.Blocks >= 1<<30 && p.Unembed {
		return "the whole model"
	}
	var s []string
	switch {
	case p.Blocks == 1:
		s = append(s, "the embeddings and block 0")
	case p.Blocks > 1:
		s = append(s, fmt.Sprintf("the embeddings and blocks 0-%d", p.Blocks-1))
	}
	if len(p.MLPs) > 0 {
		ls := make([]string, len(p.MLPs))
		for i, l := range p.MLPs {
			ls[i] = strconv.Itoa(l)
		}
		w := "block " + strings.Join(ls, ", ") + "'s MLP"
		if len(ls) > 1 {
			w = "the MLPs of blocks " + strings.Join(ls, ", ")
		}
		s = append(s, w)
	}
	if p.Unembed {
		s = append(s, "the unembedding")
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, " and ")
}

// Has reports whether m holds every weight q names (a model from Load
// holds all of them).
func (m *Model) Has(q Parts) bool {
	p, q := m.Loaded, q.normal(m.Config)
	if q.Blocks > p.Blocks || q.Unembed && !p.Unembed {
		return false
	}
	for _, l := range q.MLPs {
		if !p.hasMLP(l) {
			return false
		}
	}
	return true
}

// Whole reports whether m holds every weight (Load's models do).
func (m *Model) Whole() bool { return m.Loaded.whole(m.Config) }

// checkParts returns an error naming what m lacks of q: for the forward
// passes, which must not run on a model loaded in part.
func (m *Model) checkParts(q Parts, what string) error {
	if m.Has(q) {
		return nil
	}
	return fmt.Errorf("gpt2: %s needs %s, but the model was loaded with %s only", what, q.normal(m.Config), m.Loaded)
}
