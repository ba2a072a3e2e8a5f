package analysis

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// ReportExamples is examples.jsonl: one JSON object per (feature, kind,
// rank) for every dashboard in the report, in table order, each feature's
// top, quantile, neuron_on and neuron_off examples in that order.
const ReportExamples = "examples.jsonl"

// exampleJSON is one line of examples.jsonl.
type exampleJSON struct {
	Feature int       `json:"feature"`
	Kind    string    `json:"kind"`   // top, quantile, neuron_on, neuron_off
	Rank    int       `json:"rank"`   // 0-based within the kind
	Row     int       `json:"row"`    // the cache's sequence
	Pos     int       `json:"pos"`    // position in it
	Act     float32   `json:"act"`    // the feature's activation there
	Tokens  []string  `json:"tokens"` // the window, decoded token by token
	Index   int       `json:"index"`  // the firing token's place in tokens
	IDs     []int32   `json:"token_ids"`
	Acts    []float32 `json:"acts"` // the feature's activation on each window token
	// Quantile is the sample quantile level of a quantile example.
	Quantile *float64 `json:"quantile,omitempty"`
	// Neuron and PActive for neuron_on and neuron_off examples.
	Neuron  *int32   `json:"neuron,omitempty"`
	PActive *float64 `json:"p_active,omitempty"`
}

// writeExamples writes examples.jsonl to path, streaming.
func writeExamples(path string, res *ReportResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, db := range res.Dashboards {
		pAct := map[int32]float64{}
		for _, ne := range db.Neurons {
			pAct[ne.Neuron] = ne.PActive
		}
		for _, e := range db.All() {
			j := exampleJSON{Feature: db.Feature, Kind: e.Kind, Rank: e.Rank, Row: e.Row, Pos: e.Pos, Act: e.Act,
				Index: e.Index(), IDs: e.Tokens, Acts: e.Acts}
			j.Tokens = make([]string, len(e.Tokens))
			for i, id := range e.Tokens {
				j.Tokens[i] = tokenText(id)
			}
			switch e.Kind {
			case KindQuantile:
				q := e.Quantile
				j.Quantile = &q
			case KindNeuronOn, KindNeuronOff:
				n, p := e.Neuron, pAct[e.Neuron]
				j.Neuron = &n
				if !math.IsNaN(p) {
					j.PActive = &p
				}
			}
			if err = enc.Encode(j); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
