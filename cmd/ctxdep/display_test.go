package main

import (
	"os"
	"path/filepath"
	"testing"
)

// displayPath shortens a path inside the working directory to the relative
// path a user would type, and leaves every other path as it is: it never
// climbs out with "../".
func TestDisplayPath(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(wd)
	for _, c := range []struct{ in, want string }{
		{filepath.Join(wd, "testdata", "model.safetensors"), filepath.Join("testdata", "model.safetensors")},
		{filepath.Join(wd, "..hidden"), "..hidden"},
		{wd, "."},
		{wd + string(filepath.Separator), "."},
		{parent, parent},
		{filepath.Join(parent, "other", "file.pt"), filepath.Join(parent, "other", "file.pt")},
		{wd + "-sibling" + string(filepath.Separator) + "f", wd + "-sibling" + string(filepath.Separator) + "f"},
		{"relative/as/typed.npy", "relative/as/typed.npy"},
		{"", ""},
	} {
		if got := displayPath(c.in); got != c.want {
			t.Errorf("displayPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
