package midcoder

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/transcoder"
)

var nan, inf = float32(math.NaN()), float32(math.Inf(1))

// A midcoder file whose parameters hold a NaN or Inf (issue 18, row 5:
// report read a NaN midcoder as perfectly context-independent) is refused
// at load, naming the file, tensor and index, whether or not it records a
// hash; Save refuses to write one.
func TestLoadRefusesNonFiniteMidcoder(t *testing.T) {
	dir := t.TempDir()
	p := NewParams(5, 3)
	p.KaimingUniform(1)
	p.WMid[2*3+1] = nan
	meta := Meta{Format: FormatMidcoder, Layer: 2, DModel: 3, DSAE: 5, Method: "fit"}
	md, err := metaStrings(meta)
	if err != nil {
		t.Fatal(err)
	}
	ts := []named{{"W_mid", p.WMid, []int{5, 3}}, {"b_mid", p.BMid, []int{3}}}
	noHash := filepath.Join(dir, "nohash.safetensors")
	if err := writeTensors(noHash, md, ts); err != nil {
		t.Fatal(err)
	}
	hashed := filepath.Join(dir, "hashed.safetensors")
	md[metaSHA256] = contentHash(md, nil, ts)
	if err := writeTensors(hashed, md, ts); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{noHash, hashed} {
		_, _, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+": W_mid holds NaN at [2, 1]") {
			t.Errorf("Load of a NaN midcoder: %v", err)
		}
	}

	out := filepath.Join(dir, "out.safetensors")
	p.WMid[2*3+1] = 0
	p.BMid[2] = -inf
	err = Save(out, p, meta)
	if err == nil || !strings.Contains(err.Error(), "b_mid holds -Inf at [2]") {
		t.Errorf("Save of a non-finite midcoder: %v", err)
	}
	if _, _, err := Load(out); err == nil {
		t.Error("Save wrote a file")
	}
}

// A checkpoint whose moments or parameters went non-finite, with a valid
// hash, is refused at load naming the tensor; SaveCheckpoint refuses to
// write one.
func TestCheckpointNonFinite(t *testing.T) {
	dir := t.TempDir()
	tr := checkpointTrainer()
	tr.Opt.VW[4*3+2] = inf
	path := filepath.Join(dir, "c.safetensors")
	err := SaveCheckpoint(path, tr, &State{Epoch: 3}, Meta{}, "k")
	if err == nil || !strings.Contains(err.Error(), "adam_v.W_mid holds +Inf at [4, 2]") || !strings.Contains(err.Error(), "after epoch 3") {
		t.Errorf("SaveCheckpoint of a non-finite state: %v", err)
	}

	md, _ := metaStrings(Meta{Format: FormatCheckpoint})
	md["state"], md["key"] = `{"epoch":1,"lr":0.001,"rows":4,"step":2,"history":[]}`, "k"
	ts := checkpointTensors(tr)
	md[metaSHA256] = contentHash(md, checkpointHashed, ts)
	if err := writeTensors(path, md, ts); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCheckpoint(path, checkpointTrainer(), "k")
	if err == nil || !strings.Contains(err.Error(), "checkpoint "+path+": adam_v.W_mid holds +Inf at [4, 2]") || !strings.Contains(err.Error(), "without --resume") {
		t.Errorf("LoadCheckpoint of a non-finite state: %v", err)
	}
}

// checkingBackend is the CPU backend that can check its last batch (a
// BatchChecker), and a source that can spoil the y of its batches.
type checkingBackend struct {
	tr   *Trainer
	src  Source
	acts *transcoder.Acts
	y    []float32
	// spoil, when set, changes each batch before the step.
	spoil func(acts *transcoder.Acts, y []float32)
}

func (b *checkingBackend) Step(ctx context.Context, n int, lr float64) (float64, float64, error) {
	acts, y, err := b.src.Next(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	if b.spoil != nil {
		b.spoil(acts, y)
	}
	b.acts, b.y = acts, y
	loss, norm := b.tr.Step(acts, y, lr)
	return loss, norm, nil
}

func (b *checkingBackend) CheckLastBatch() string { return FirstNonFinite(b.acts, b.y) }
func (b *checkingBackend) Sync() error            { return nil }
func (b *checkingBackend) SyncParams() error      { return nil }
func (b *checkingBackend) Close()                 { b.src.Close() }

// The fit's non-finite loss says what caused it when the backend can check
// its batch (issue 18, row 5): a NaN or Inf in the batch's y or
// activations is the data's fault, named with its index; a finite batch
// means the step made the parameters non-finite: lower --lr. A backend that
// cannot check keeps the old advice.
func TestNonFiniteLossCause(t *testing.T) {
	fx := load(t, false)
	cfg := Config{ContextLength: 16, BatchSize: 2, StepsPerEpoch: 3, TrainTokens: 10, LR: 1e-3}
	fit := func(p *Params, spoil func(*transcoder.Acts, []float32), checks bool) *NonFiniteError {
		t.Helper()
		tr := NewTrainer(fx.mlp(ReLU), p, NewAdamW(p, 0), 32)
		src, _ := NewCacheSource(fx.cache, fx.tc, false)
		cb := &checkingBackend{tr: tr, src: src, spoil: spoil}
		var b Backend = cb
		if !checks {
			b = struct{ Backend }{cb} // hides CheckLastBatch
		}
		defer b.Close()
		err := Fit(context.Background(), cfg, b, &State{LR: cfg.LR}, Hooks{})
		var nf *NonFiniteError
		if !errors.As(err, &nf) {
			t.Fatalf("Fit error = %v, want a NonFiniteError", err)
		}
		return nf
	}
	finite := func() *Params {
		p := NewParams(64, 16)
		p.KaimingUniform(5)
		return p
	}
	expect := func(nf *NonFiniteError, step int, want ...string) {
		t.Helper()
		if nf.Epoch != 0 || nf.Step != step {
			t.Errorf("NonFiniteError at epoch %d, step %d; want epoch 0, step %d", nf.Epoch, nf.Step, step)
		}
		for _, w := range want {
			if !strings.Contains(nf.Error(), w) {
				t.Errorf("error %q does not mention %q", nf, w)
			}
		}
	}

	// The second batch's y holds a NaN at token 17, component 3.
	batch := 0
	nanY := func(_ *transcoder.Acts, y []float32) {
		if batch++; batch == 2 {
			y[17*16+3] = nan
		}
	}
	expect(fit(finite(), nanY, true), 1, "loss became NaN at epoch 0, step 1", "the data caused it", "y holds NaN at [17, 3]")

	// An activation value of the first batch is +Inf.
	infActs := func(a *transcoder.Acts, _ []float32) { a.Values[len(a.Values)-1] = inf }
	nf := fit(finite(), infActs, true)
	expect(nf, 0, "the data caused it", "activations hold +Inf at row 31, feature")

	// Finite data, NaN parameters: the step's fault.
	p := NewParams(64, 16)
	for i := range p.WMid {
		p.WMid[i] = nan
	}
	nf = fit(p, nil, true)
	expect(nf, 0, "the step caused it, not the data", "lower --lr")
	if !nf.Checked || nf.Data != "" {
		t.Errorf("NonFiniteError %+v", nf)
	}

	// A backend that cannot check its batch.
	batch = 0
	nf = fit(finite(), nanY, false)
	expect(nf, 1, "lower --lr, or check the inputs")
	if nf.Checked {
		t.Error("Checked without a BatchChecker")
	}
}

// FirstNonFinite names the first NaN or Inf of a batch: y before the
// activations, with row and column or feature; "" for a finite batch.
func TestFirstNonFinite(t *testing.T) {
	acts := &transcoder.Acts{Indptr: []int64{0, 1, 1, 3}, Indices: []int32{4, 0, 9}, Values: []float32{1, 2, 3}}
	y := make([]float32, 3*2)
	if s := FirstNonFinite(acts, y); s != "" {
		t.Errorf("finite batch: %q", s)
	}
	acts.Values[2] = -inf
	if s := FirstNonFinite(acts, y); s != "activations hold -Inf at row 2, feature 9" {
		t.Errorf("got %q", s)
	}
	y[5] = nan
	if s := FirstNonFinite(acts, y); s != "y holds NaN at [2, 1]" {
		t.Errorf("got %q", s)
	}
	if s := FirstNonFinite(nil, y); s != "y holds NaN at [5]" {
		t.Errorf("without acts: %q", s)
	}
}

// The CPU backend checks its last batch: a NaN in the cache's y is the
// data's fault.
func TestCPUBackendChecksItsBatch(t *testing.T) {
	fx := load(t, false)
	cfg := Config{ContextLength: 16, BatchSize: 2, StepsPerEpoch: 3, TrainTokens: 10, LR: 1e-3}
	p := NewParams(64, 16)
	p.KaimingUniform(5)
	tr := NewTrainer(fx.mlp(ReLU), p, NewAdamW(p, 0), 32)
	src, _ := NewCacheSource(fx.cache, fx.tc, false)
	b := NewCPUBackend(tr, spoiledSource{src})
	defer b.Close()
	err := Fit(context.Background(), cfg, b, &State{LR: cfg.LR}, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "the data caused it") || !strings.Contains(err.Error(), "y holds NaN at [3, 4]") {
		t.Errorf("Fit error = %v", err)
	}
}

type spoiledSource struct{ Source }

func (s spoiledSource) Next(ctx context.Context, n int) (*transcoder.Acts, []float32, error) {
	a, y, err := s.Source.Next(ctx, n)
	if err == nil {
		y[3*16+4] = nan
	}
	return a, y, err
}
