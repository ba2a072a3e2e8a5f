package inspect

import (
	"context"
	"io"
	"math"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Stats summarises one cached hook over all tokens and components.
type Stats struct {
	Mean          float64 `json:"mean"`
	Std           float64 `json:"std"`
	MeanSquare    float64 `json:"mean_square"`
	Min           float64 `json:"min"`
	Max           float64 `json:"max"`
	MeanNorm      float64 `json:"mean_token_norm"`     // mean over tokens of the L2 norm
	MaxAbsRowMean float64 `json:"max_abs_token_mean"`  // max over tokens of |mean over C|
	MeanRowVar    float64 `json:"mean_token_variance"` // mean over tokens of the variance over C
}

type accumulator struct {
	n, rows                  int64
	sum, sumSq, norm, rowVar float64
	min, max, maxRowMean     float64
}

func newAccumulator() accumulator {
	return accumulator{min: math.Inf(1), max: math.Inf(-1)}
}

func (a *accumulator) add(v []float32, c int) {
	for r := 0; r+c <= len(v); r += c {
		var s, ss float64
		for _, x := range v[r : r+c] {
			f := float64(x)
			s += f
			ss += f * f
			a.min = math.Min(a.min, f)
			a.max = math.Max(a.max, f)
		}
		mean := s / float64(c)
		a.sum += s
		a.sumSq += ss
		a.norm += math.Sqrt(ss)
		a.rowVar += ss/float64(c) - mean*mean
		a.maxRowMean = math.Max(a.maxRowMean, math.Abs(mean))
		a.n += int64(c)
		a.rows++
	}
}

func (a *accumulator) stats() Stats {
	n := float64(a.n)
	mean := a.sum / n
	return Stats{
		Mean: mean, Std: math.Sqrt(math.Max(a.sumSq/n-mean*mean, 0)), MeanSquare: a.sumSq / n,
		Min: a.min, Max: a.max, MeanNorm: a.norm / float64(a.rows),
		MaxAbsRowMean: a.maxRowMean, MeanRowVar: a.rowVar / float64(a.rows),
	}
}

// Quality is a transcoder's performance on the cache.
type Quality struct {
	Path                string  `json:"path"`
	NFeatures           int     `json:"n_features"`
	ActsSource          string  `json:"acts_source"` // "stored" or "encoded"
	L0Mean              float64 `json:"l0_mean"`     // mean number of features > 0 per token
	MSE                 float64 `json:"mse"`         // mean over all elements of (recon − y)²
	NMSE                float64 `json:"nmse"`        // mse / mean(y²)
	FireFrac            float64 `json:"fire_frac"`   // fraction of features firing on ≥ 1 cached token
	FeaturesNeverFiring int     `json:"features_never_firing"`
	// Live counts the features live on the cache: they fire on at least one
	// cached token (ctxdep's one meaning of "live", as in the report).
	Live int `json:"live"`
	// FrequentInTraining counts the features with log10 frequency > −4 in
	// the transcoder's sparsity file (its training run's firing rates);
	// null without the file. LiveFeatures is its former name, kept in the
	// JSON for scripts that read it.
	FrequentInTraining *int `json:"frequent_in_training"`
	LiveFeatures       *int `json:"live_features"`
}

// Report is everything inspect computes.
type Report struct {
	X          Stats    `json:"x"`
	Y          Stats    `json:"y"`
	Transcoder *Quality `json:"transcoder,omitempty"`
}

// Options names the optional transcoder.
type Options struct {
	Transcoder *transcoder.Transcoder
	TransProv  provenance.File
	LogFreq    []float32 // from the sparsity file, or nil
	Progress   *progress.Bar
}

// Run streams over every shard of c.
func Run(ctx context.Context, c *actcache.Cache, o Options) (*Report, error) {
	m := c.Manifest
	d := m.DModel
	xa, ya := newAccumulator(), newAccumulator()
	tc := o.Transcoder
	var (
		recon     []float32
		fired     []bool
		l0, sqErr float64
		useStored bool
		ro        actcache.ReadOptions
	)
	if tc != nil {
		fired = make([]bool, tc.DSAE)
		if useStored = m.StoresActsOf(o.TransProv); !useStored {
			ro.Encoder = tc.NewEncoder()
		}
	}
	rd, err := c.NewReader(ctx, ro)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for {
		b, err := rd.Next(max(m.SequencesPerShard, 1)) // a shard at a time
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		xa.add(b.X, d)
		ya.add(b.Y, d)
		rows := len(b.X) / d
		if tc != nil {
			a := b.Acts
			if cap(recon) < rows*tc.DOut {
				recon = make([]float32, rows*tc.DOut)
			}
			recon = recon[:rows*tc.DOut]
			tc.Decode(recon, a)
			for j, v := range recon {
				e := float64(v) - float64(b.Y[j])
				sqErr += e * e
			}
			l0 += float64(len(a.Indices))
			for _, f := range a.Indices {
				fired[f] = true
			}
		}
		if o.Progress != nil {
			o.Progress.Add(int64(rows), "")
		}
	}
	r := &Report{X: xa.stats(), Y: ya.stats()}
	if tc != nil {
		q := &Quality{Path: o.TransProv.Path, NFeatures: tc.DSAE, ActsSource: "encoded"}
		if useStored {
			q.ActsSource = "stored"
		}
		q.L0Mean = l0 / float64(xa.rows)
		q.MSE = sqErr / float64(ya.n)
		q.NMSE = q.MSE / r.Y.MeanSquare
		for _, f := range fired {
			if !f {
				q.FeaturesNeverFiring++
			}
		}
		q.FireFrac = 1 - float64(q.FeaturesNeverFiring)/float64(tc.DSAE)
		q.Live = tc.DSAE - q.FeaturesNeverFiring
		if o.LogFreq != nil {
			n := transcoder.CountLive(o.LogFreq)
			q.FrequentInTraining, q.LiveFeatures = &n, &n
		}
		r.Transcoder = q
	}
	return r, nil
}
