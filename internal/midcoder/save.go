package midcoder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// File formats (safetensors metadata "format", with "version").
const (
	FormatMidcoder   = "ctxdep-midcoder"
	FormatCheckpoint = "ctxdep-midcoder-checkpoint"
	formatVersion    = "1"
)

// Provenance names the inputs of a fit.
type Provenance struct {
	Model      provenance.File  `json:"model"`
	Transcoder provenance.File  `json:"transcoder"`
	Data       provenance.File  `json:"data"` // the cache's manifest.json, or the text input
	DataKind   string           `json:"data_kind"`
	Extra      *provenance.File `json:"extra,omitempty"`
}

// Meta is what a midcoder file says about itself.
type Meta struct {
	Format     string     `json:"format"`
	Layer      int        `json:"layer"`
	DModel     int        `json:"d_model"`
	DSAE       int        `json:"d_sae"`
	Method     string     `json:"method"` // "fit" or "pinv"
	Config     Config     `json:"config"`
	Provenance Provenance `json:"provenance"`
	History    []Record   `json:"history,omitempty"`
	CreatedBy  string     `json:"created_by"`
	// Untrained lists, for a fit, the features whose W_mid row never got
	// a gradient (the feature never fired in the fit's batches), so that
	// the row is still its initial value (AdamW.UntrainedRows). nil:
	// unknown (a pinv baseline, or a file from before ctxdep recorded it).
	Untrained []int `json:"untrained,omitempty"`
}

// Key identifies a fit's settings and inputs: a checkpoint resumes only
// under the same key.
func Key(cfg Config, prov Provenance) string {
	id, _ := json.Marshal(struct {
		Config
		Model, Transcoder, Data string
	}{cfg, prov.Model.SHA256, prov.Transcoder.SHA256, prov.Data.SHA256})
	sum := sha256.Sum256(id)
	return hex.EncodeToString(sum[:16])
}

// Save writes W_mid F32 (F, C) and b_mid F32 (C) with meta as safetensors
// metadata (the layout `fit` and `pinv-baseline` share), and the
// SHA-256 of the tensors (metaSHA256), which Load checks. Parameters that
// hold a NaN or ±Inf are an error, and nothing is written: Load would
// refuse the file.
func Save(path string, p *Params, meta Meta) error {
	meta.Format = FormatMidcoder
	md, err := metaStrings(meta)
	if err != nil {
		return err
	}
	ts := []named{{"W_mid", p.WMid, []int{p.F, p.C}}, {"b_mid", p.BMid, []int{p.C}}}
	if err := checkTensors(ts); err != nil {
		return fmt.Errorf("midcoder: not writing %s: %w", path, err)
	}
	md[metaSHA256] = contentHash(md, nil, ts)
	return writeTensors(path, md, ts)
}

// metaSHA256 is the metadata entry of a midcoder or checkpoint file that
// holds contentHash of the file: the SHA-256 of what a reader uses.
const metaSHA256 = "sha256"

// checkpointHashed are the metadata entries of a checkpoint that its
// content hash covers, with its tensors: what LoadCheckpoint uses.
var checkpointHashed = []string{"key", "state"}

// contentHash returns the hex SHA-256 of the metadata entries keys of md
// and then of the tensors ts, in order: each entry's key and value, each
// tensor's name, shape and little-endian float32 bytes (the bytes of its
// data in the file), every part preceded by its length.
func contentHash(md map[string]string, keys []string, ts []named) string {
	h := sha256.New()
	for _, k := range keys {
		hashPart(h, []byte(k))
		hashPart(h, []byte(md[k]))
	}
	for _, t := range ts {
		hashTensorHead(h, t.name, t.shape)
		var raw []byte
		if dtype.LittleEndianHost() {
			raw = dtype.Bytes(t.data)
		} else {
			raw = safetensors.Float32Bytes(nil, t.data)
		}
		hashPart(h, raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileHash is contentHash of an opened file: the metadata entries keys and
// the tensors names, whose bytes are the file's own.
func fileHash(f *safetensors.File, keys, names []string) (string, error) {
	md := f.Metadata()
	h := sha256.New()
	for _, k := range keys {
		hashPart(h, []byte(k))
		hashPart(h, []byte(md[k]))
	}
	for _, name := range names {
		info, ok := f.Tensor(name)
		if !ok {
			return "", fmt.Errorf("no tensor %q", name)
		}
		if info.DType != safetensors.F32 {
			return "", fmt.Errorf("tensor %q is %s, not F32", name, info.DType)
		}
		raw, err := f.Raw(name)
		if err != nil {
			return "", err
		}
		hashTensorHead(h, name, info.Shape)
		hashPart(h, raw)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashTensorHead(h hash.Hash, name string, shape []int) {
	hashPart(h, []byte(name))
	var dims []byte
	for _, d := range shape {
		dims = binary.LittleEndian.AppendUint64(dims, uint64(d))
	}
	hashPart(h, dims)
}

func hashPart(h hash.Hash, b []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// CheckFinite returns an error naming the first NaN or ±Inf of W_mid or
// b_mid and its index.
func (p *Params) CheckFinite() error {
	return checkTensors([]named{{"W_mid", p.WMid, []int{p.F, p.C}}, {"b_mid", p.BMid, []int{p.C}}})
}

func checkTensors(ts []named) error {
	for _, t := range ts {
		if err := dtype.CheckFinite(t.name, t.data, t.shape...); err != nil {
			return err
		}
	}
	return nil
}

func metaStrings(meta Meta) (map[string]string, error) {
	cfg, err := json.Marshal(meta.Config)
	if err != nil {
		return nil, err
	}
	prov, err := json.Marshal(meta.Provenance)
	if err != nil {
		return nil, err
	}
	hist, err := json.Marshal(meta.History)
	if err != nil {
		return nil, err
	}
	md := map[string]string{
		"format": meta.Format, "version": formatVersion, "layer": strconv.Itoa(meta.Layer),
		"d_model": strconv.Itoa(meta.DModel), "d_sae": strconv.Itoa(meta.DSAE), "method": meta.Method,
		"config": string(cfg), "provenance": string(prov), "history": string(hist), "created_by": meta.CreatedBy,
	}
	if meta.Untrained != nil {
		raw, err := json.Marshal(meta.Untrained)
		if err != nil {
			return nil, err
		}
		md["untrained"] = string(raw)
	}
	return md, nil
}

type named struct {
	name  string
	data  []float32
	shape []int
}

func writeTensors(path string, md map[string]string, ts []named) error {
	infos := make([]safetensors.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = safetensors.TensorInfo{Name: t.name, DType: safetensors.F32, Shape: t.shape}
	}
	w, err := safetensors.Create(path, infos, md)
	if err != nil {
		return fmt.Errorf("midcoder: %w", err)
	}
	for _, t := range ts {
		if err := w.WriteFloat32(t.data); err != nil {
			w.Abort()
			return fmt.Errorf("midcoder: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("midcoder: %w", err)
	}
	return nil
}

// ReadMeta reads what a midcoder file says about itself, without reading
// or checking its tensors: what commands check their inputs against before
// any work (Load checks the tensors).
func ReadMeta(path string) (Meta, error) {
	f, meta, err := open(path)
	if err != nil {
		return Meta{}, err
	}
	f.Close()
	return meta, nil
}

// open opens a midcoder file and reads its metadata; a directory, or a
// safetensors file of another kind (a cache shard, a checkpoint, a model),
// is an error that says what path is.
func open(path string) (*safetensors.File, Meta, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		hint := "a midcoder is a file"
		if _, err := os.Stat(filepath.Join(path, ResultFile)); err == nil {
			hint = "give " + filepath.Join(path, ResultFile) + " (fit's output file)"
		}
		return nil, Meta{}, fmt.Errorf("midcoder: %s is a directory: %s; a directory of layers is taken only with --layers", path, hint)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("midcoder: %w", err)
	}
	md := f.Metadata()
	if format := md["format"]; format != FormatMidcoder {
		f.Close()
		what := fmt.Sprintf("its format is %q", format)
		if format == "" {
			what = "it records no format"
		}
		return nil, Meta{}, fmt.Errorf("midcoder: %s is not a midcoder file (%s; ctxdep fit and pinv-baseline write %q)", path, what, FormatMidcoder)
	}
	meta, err := parseMeta(md)
	if err != nil {
		f.Close()
		return nil, Meta{}, fmt.Errorf("midcoder: %s: %w", path, err)
	}
	return f, meta, nil
}

// Load reads a midcoder file written by Save (by `fit` or
// `pinv-baseline`). A file that records a content hash must match it (a
// file written before ctxdep recorded one is read unchecked); parameters
// that hold a NaN or ±Inf are an error that names the tensor and index.
func Load(path string) (*Params, Meta, error) {
	f, meta, err := open(path)
	if err != nil {
		return nil, Meta{}, err
	}
	defer f.Close()
	md := f.Metadata()
	if want, ok := md[metaSHA256]; ok {
		got, err := fileHash(f, nil, []string{"W_mid", "b_mid"})
		if err != nil {
			return nil, Meta{}, fmt.Errorf("midcoder: %s: %w", path, err)
		}
		if got != want {
			return nil, Meta{}, fmt.Errorf("midcoder: %s is corrupt: its tensors hash to sha256 %.12s…, the file records %.12s…; it cannot be used: rerun the fit or pinv-baseline that wrote it", path, got, want)
		}
	}
	p, err := readParams(f, meta)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("midcoder: %s: %w", path, err)
	}
	if err := p.CheckFinite(); err != nil {
		return nil, Meta{}, fmt.Errorf("midcoder: %s: %w: the midcoder is unusable; rerun the fit (with a lower --lr) or pinv-baseline that wrote it", path, err)
	}
	return p, meta, nil
}

func parseMeta(md map[string]string) (Meta, error) {
	var m Meta
	m.Format = md["format"]
	if md["version"] != formatVersion {
		return m, fmt.Errorf("version %q is not supported (this ctxdep reads version %s)", md["version"], formatVersion)
	}
	var err error
	for _, f := range []struct {
		key string
		dst *int
	}{{"layer", &m.Layer}, {"d_model", &m.DModel}, {"d_sae", &m.DSAE}} {
		if *f.dst, err = strconv.Atoi(md[f.key]); err != nil {
			return m, fmt.Errorf("metadata %q: %w", f.key, err)
		}
	}
	m.Method, m.CreatedBy = md["method"], md["created_by"]
	for key, dst := range map[string]any{"config": &m.Config, "provenance": &m.Provenance, "history": &m.History, "untrained": &m.Untrained} {
		if md[key] == "" {
			continue
		}
		if err := json.Unmarshal([]byte(md[key]), dst); err != nil {
			return m, fmt.Errorf("metadata %q: %w", key, err)
		}
	}
	for i, f := range m.Untrained {
		if f < 0 || f >= m.DSAE || i > 0 && f <= m.Untrained[i-1] {
			return m, fmt.Errorf("metadata \"untrained\": entry %d is %d: want ascending features in [0, %d)", i, f, m.DSAE)
		}
	}
	return m, nil
}

func readParams(f *safetensors.File, meta Meta) (*Params, error) {
	if meta.DSAE <= 0 || meta.DModel <= 0 {
		return nil, fmt.Errorf("bad shape in metadata: d_sae %d, d_model %d", meta.DSAE, meta.DModel)
	}
	p := NewParams(meta.DSAE, meta.DModel)
	for _, t := range []named{{"W_mid", p.WMid, []int{p.F, p.C}}, {"b_mid", p.BMid, []int{p.C}}} {
		info, ok := f.Tensor(t.name)
		if !ok {
			return nil, fmt.Errorf("no tensor %q", t.name)
		}
		if !slices.Equal(info.Shape, t.shape) {
			return nil, fmt.Errorf("tensor %q has shape %v, metadata implies %v", t.name, info.Shape, t.shape)
		}
		if err := f.Float32Into(t.data, t.name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkpointState is a checkpoint's "state" metadata: the fit state and
// the optimizer's step count.
type checkpointState struct {
	Epoch   int      `json:"epoch"`
	LR      float64  `json:"lr"`
	Rows    int64    `json:"rows"`
	Step    int      `json:"step"`
	History []Record `json:"history"`
}

// SaveCheckpoint writes parameters, AdamW moments and the fit state, with
// the SHA-256 (metaSHA256) of the tensors and of the key and state entries,
// which LoadCheckpoint checks. Parameters or moments that hold a NaN or
// ±Inf are an error, and nothing is written (the earlier checkpoint stays):
// such a state cannot be resumed.
func SaveCheckpoint(path string, tr *Trainer, st *State, meta Meta, key string) error {
	meta.Format = FormatCheckpoint
	md, err := metaStrings(meta)
	if err != nil {
		return err
	}
	state, err := json.Marshal(checkpointState{Epoch: st.Epoch, LR: st.LR, Rows: st.Rows, Step: tr.Opt.Step, History: st.History})
	if err != nil {
		return err
	}
	md["state"], md["key"] = string(state), key
	ts := checkpointTensors(tr)
	if err := checkTensors(ts); err != nil {
		return fmt.Errorf("midcoder: not writing the checkpoint %s after epoch %d: %w (the fit went non-finite: lower --lr)", path, st.Epoch, err)
	}
	md[metaSHA256] = contentHash(md, checkpointHashed, ts)
	return writeTensors(path, md, ts)
}

// checkpointTensors returns the tensors of tr that a checkpoint holds, in
// the order it holds them.
func checkpointTensors(tr *Trainer) []named {
	p, o := tr.Params, tr.Opt
	return []named{
		{"W_mid", p.WMid, []int{p.F, p.C}}, {"b_mid", p.BMid, []int{p.C}},
		{"adam_m.W_mid", o.MW, []int{p.F, p.C}}, {"adam_v.W_mid", o.VW, []int{p.F, p.C}},
		{"adam_m.b_mid", o.MB, []int{p.C}}, {"adam_v.b_mid", o.VB, []int{p.C}},
	}
}

// LoadCheckpoint restores tr's parameters and optimizer from path and
// returns the fit state. The checkpoint must match the content hash it
// records (else it is corrupt), carry key (same settings and inputs), and
// hold only finite values.
func LoadCheckpoint(path string, tr *Trainer, key string) (*State, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("midcoder: %w", err)
	}
	defer f.Close()
	md := f.Metadata()
	if md["format"] != FormatCheckpoint {
		return nil, fmt.Errorf("midcoder: %s is not a fit checkpoint", path)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("midcoder: checkpoint %s is corrupt: %s; it cannot be resumed: remove it and rerun the fit without --resume", path, fmt.Sprintf(format, args...))
	}
	ts := checkpointTensors(tr)
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.name
	}
	want, ok := md[metaSHA256]
	if !ok {
		return nil, corrupt("it records no sha256 (written by an older ctxdep), so it cannot be verified")
	}
	got, err := fileHash(f, checkpointHashed, names)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	if got != want {
		return nil, corrupt("its content hashes to sha256 %.12s…, it records %.12s…", got, want)
	}
	if md["key"] != key {
		return nil, fmt.Errorf("midcoder: %s was written by a fit with other settings or inputs; --resume needs the same flags, model, transcoder and data", path)
	}
	var s checkpointState
	if err := json.Unmarshal([]byte(md["state"]), &s); err != nil {
		return nil, fmt.Errorf("midcoder: %s: state: %w", path, err)
	}
	for _, t := range ts {
		if err := f.Float32Into(t.data, t.name); err != nil {
			return nil, fmt.Errorf("midcoder: %s: %w", path, err)
		}
	}
	if err := checkTensors(ts); err != nil {
		return nil, fmt.Errorf("midcoder: checkpoint %s: %w; it cannot be resumed: remove it and rerun the fit without --resume, with a lower --lr", path, err)
	}
	o := tr.Opt
	o.Step = s.Step
	return &State{Epoch: s.Epoch, LR: s.LR, Rows: s.Rows, History: s.History}, nil
}
