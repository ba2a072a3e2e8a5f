package midcoder

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// ReadHistory reads what WriteHistory writes, exactly (floats in their
// shortest exact form), and refuses files that are not a fit's history.
func TestHistory(t *testing.T) {
	dir0 := t.TempDir()
	want := []Record{{Epoch: 0, Loss: 0.1 + 0.2, LossNorm: 1.0 / 3, LR: 5e-4}, {Epoch: 1, Loss: 1e-300, LossNorm: 2, LR: 0}}
	path := filepath.Join(dir0, "history.csv")
	if err := WriteHistory(path, want); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadHistory(path); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadHistory(WriteHistory(h)) = %+v, %v; want %+v", got, err, want)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(good, []byte("epoch,loss,loss_norm,lr\n1,0.5,0.25,0.001\n2,0.25,0.125,0.0005\n"), 0o644)
	h, err := ReadHistory(good)
	if err != nil || len(h) != 2 || h[1].Epoch != 2 || h[1].Loss != 0.25 || h[1].LossNorm != 0.125 || h[1].LR != 0.0005 {
		t.Fatalf("%+v %v", h, err)
	}
	for name, text := range map[string]string{
		"header.csv": "a,b\n1,2\n",
		"empty.csv":  "epoch,loss,loss_norm,lr\n",
		"nan.csv":    "epoch,loss,loss_norm,lr\n1,NaN,1,1\n",
		"short.csv":  "epoch,loss,loss_norm,lr\n1,2\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		if _, err := ReadHistory(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ReadHistory(filepath.Join(dir, "missing.csv")); err == nil {
		t.Error("missing file: no error")
	}
}
