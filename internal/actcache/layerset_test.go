package actcache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Containing finds a layer set above a path by its layers.json's format,
// not by the file's name alone (another tool's layers.json in a project
// folder is not a cache), and CheckOutside lets an empty path through to
// the command's own usage error.
func TestContaining(t *testing.T) {
	root := t.TempDir()
	set, proj := filepath.Join(root, "set"), filepath.Join(root, "proj")
	if err := CreateLayerSet(set, LayerSet{Layers: []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(proj, 0o755)
	os.WriteFile(filepath.Join(proj, LayerSetName), []byte(`{"name": "my keras model"}`), 0o644)
	for _, c := range []struct {
		path, want string
	}{
		{set, set},
		{filepath.Join(set, "layer-01", "fit"), set},
		{filepath.Join(proj, "runs", "p.safetensors"), ""},
		{root, ""},
	} {
		got, ok := Containing(c.path)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Containing(%s) = %q, %v; want %q", c.path, got, ok, c.want)
		}
	}
	if err := CheckOutside("--out", ""); err != nil {
		t.Errorf("CheckOutside(\"\") = %v", err)
	}
	if err := CheckOutside("--out x", filepath.Join(set, "x")); err == nil || !strings.Contains(err.Error(), "inside the activation cache "+set) {
		t.Errorf("CheckOutside(inside the set) = %v", err)
	}
}
