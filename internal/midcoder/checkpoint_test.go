package midcoder

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

// patchBytes replaces the first occurrence of old by new (of the same
// length) in the file at path.
func patchBytes(t *testing.T, path, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != len(new) || !bytes.Contains(raw, []byte(old)) {
		t.Fatalf("%s holds no %q to patch", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(raw, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkpointTrainer returns a trainer of 5 features × 3 with parameters and
// moments set, as after some steps.
func checkpointTrainer() *Trainer {
	p := NewParams(5, 3)
	p.KaimingUniform(3)
	p.BMid[1] = 0.25
	o := NewAdamW(p, 0.01)
	for i := range o.MW {
		o.MW[i], o.VW[i] = float32(i)*1e-3, float32(i)*1e-6
	}
	o.MB[2], o.VB[2], o.Step = 0.5, 0.01, 20
	mlp := &MLP{C: 3, N: 4}
	return &Trainer{Model: &Model{MLP: mlp, Params: p}, Opt: o}
}

// expectCorrupt checks that err is LoadCheckpoint's one-line refusal of a
// corrupt checkpoint at path, saying what is wrong (want).
func expectCorrupt(t *testing.T, err error, path string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("LoadCheckpoint accepted a damaged checkpoint")
	}
	for _, w := range append([]string{"checkpoint " + path + " is corrupt", "it cannot be resumed: remove it and rerun the fit without --resume"}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("LoadCheckpoint error %q does not mention %q", err, w)
		}
	}
}

// A checkpoint carries the SHA-256 of its tensors and state; one float
// changed anywhere in it, or its state edited (issue 18, row 6: a patched
// checkpoint resumed to loss 2.5e37), is refused as corrupt; an intact one
// loads exactly.
func TestCheckpointHash(t *testing.T) {
	const key = "k"
	dir := t.TempDir()
	save := func(name string) string {
		path := filepath.Join(dir, name)
		if err := SaveCheckpoint(path, checkpointTrainer(), &State{Epoch: 1, LR: 5e-4, Rows: 40}, Meta{Layer: 1}, key); err != nil {
			t.Fatal(err)
		}
		return path
	}
	intact := save("intact.safetensors")
	tr := checkpointTrainer()
	clear(tr.Params.WMid)
	tr.Opt.Step = 0
	st, err := LoadCheckpoint(intact, tr, key)
	if err != nil {
		t.Fatal(err)
	}
	want := checkpointTrainer()
	if st.Epoch != 1 || st.Rows != 40 || tr.Opt.Step != 20 || !testutil.SameBits(tr.Params.WMid, want.Params.WMid) || !testutil.SameBits(tr.Opt.VW, want.Opt.VW) {
		t.Fatalf("the intact checkpoint loaded as state %+v, step %d", st, tr.Opt.Step)
	}

	for _, tc := range []struct {
		tensor string
		k      int
		v      float32
	}{
		{"W_mid", 4, 1e6},
		{"b_mid", 0, 1e-30},
		{"adam_m.W_mid", 7, 3},
		{"adam_v.b_mid", 2, 0},
	} {
		path := save(tc.tensor + ".safetensors")
		if err := testutil.PatchFloat32(path, tc.tensor, tc.k, tc.v); err != nil {
			t.Fatal(err)
		}
		_, err := LoadCheckpoint(path, checkpointTrainer(), key)
		expectCorrupt(t, err, path, "sha256")
	}
	// The state is covered too: an edited epoch or learning rate.
	path := save("state.safetensors")
	patchBytes(t, path, `\"epoch\":1`, `\"epoch\":7`)
	_, err = LoadCheckpoint(path, checkpointTrainer(), key)
	expectCorrupt(t, err, path, "sha256")
	// And its key: a corrupt key is corruption, not "other settings".
	path = save("key.safetensors")
	patchBytes(t, path, `"key":"k"`, `"key":"j"`)
	_, err = LoadCheckpoint(path, checkpointTrainer(), "j")
	expectCorrupt(t, err, path, "sha256")
}

// A checkpoint that records no hash (from an older ctxdep) cannot be
// verified and is refused with the same advice.
func TestCheckpointWithoutHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.safetensors")
	tr := checkpointTrainer()
	md, err := metaStrings(Meta{Format: FormatCheckpoint})
	if err != nil {
		t.Fatal(err)
	}
	md["state"], md["key"] = `{"epoch":1,"lr":0.001,"rows":4,"step":2,"history":[]}`, "k"
	if err := writeTensors(path, md, checkpointTensors(tr)); err != nil {
		t.Fatal(err)
	}
	_, err = LoadCheckpoint(path, checkpointTrainer(), "k")
	expectCorrupt(t, err, path, "records no sha256")
}

// Job.Begin with --resume refuses a corrupt checkpoint and leaves it.
func TestJobRefusesCorruptCheckpoint(t *testing.T) {
	cfg := Config{Layer: 1, ContextLength: 16, BatchSize: 2, StepsPerEpoch: 2, TrainTokens: 100, LR: 1e-3}
	prov := Provenance{DataKind: "test"}
	tr := checkpointTrainer()
	j := &Job{Config: cfg, Dir: t.TempDir(), Key: Key(cfg, prov), Host: tr, Meta: Meta{Layer: 1, Config: cfg, Provenance: prov}}
	if err := SaveCheckpoint(j.CheckpointPath(), tr, &State{Epoch: 1, LR: cfg.LR}, j.Meta, j.Key); err != nil {
		t.Fatal(err)
	}
	if err := testutil.PatchFloat32(j.CheckpointPath(), "W_mid", 0, 1e30); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(j.CheckpointPath())
	_, err := j.Begin(true)
	expectCorrupt(t, err, j.CheckpointPath(), "sha256")
	if after, _ := os.ReadFile(j.CheckpointPath()); !bytes.Equal(before, after) {
		t.Error("the corrupt checkpoint changed")
	}
}

// A midcoder file carries the SHA-256 of W_mid and b_mid: a changed float
// is refused as corrupt; a file from before the hash (none recorded) still
// loads.
func TestMidcoderFileHash(t *testing.T) {
	dir := t.TempDir()
	p := NewParams(5, 3)
	p.KaimingUniform(1)
	meta := Meta{Layer: 2, DModel: 3, DSAE: 5, Method: "fit"}
	path := filepath.Join(dir, "m.safetensors")
	if err := Save(path, p, meta); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if err := testutil.PatchFloat32(path, "b_mid", 1, 0.125); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path+" is corrupt") || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("Load of a patched midcoder: %v", err)
	}

	old := filepath.Join(dir, "old.safetensors")
	md, _ := metaStrings(Meta{Format: FormatMidcoder, Layer: 2, DModel: 3, DSAE: 5})
	if err := writeTensors(old, md, []named{{"W_mid", p.WMid, []int{5, 3}}, {"b_mid", p.BMid, []int{3}}}); err != nil {
		t.Fatal(err)
	}
	q, _, err := Load(old)
	if err != nil {
		t.Fatalf("Load of a midcoder without a hash: %v", err)
	}
	if !testutil.SameBits(q.WMid, p.WMid) {
		t.Error("W_mid differs")
	}
}
