package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The command reference in docs/cli and docs/man is what `make docs`
// writes from the current command tree.
func TestDocsCurrent(t *testing.T) {
	root, _ := newRootCmd(io.Discard, io.Discard)
	files, err := genDocs(root)
	if err != nil {
		t.Fatal(err)
	}
	const docs = "../../docs"
	var stale []string
	for sub, ext := range docDirs {
		have, _ := filepath.Glob(filepath.Join(docs, sub, "*"+ext))
		for _, p := range have {
			if _, ok := files[filepath.Join(sub, filepath.Base(p))]; !ok {
				stale = append(stale, "docs/"+sub+"/"+filepath.Base(p)+" (no such command)")
			}
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(docs, name))
		switch {
		case err != nil:
			stale = append(stale, "docs/"+name+" (missing)")
		case !bytes.Equal(got, want):
			stale = append(stale, "docs/"+name)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("the command reference is out of date; run `make docs` and commit docs/cli and docs/man:\n  %s", strings.Join(stale, "\n  "))
	}
	if _, ok := files["cli/ctxdep_gen-docs.md"]; ok {
		t.Error("the hidden gen-docs command is in the reference")
	}
	// Deterministic: a second run gives the same bytes.
	root2, _ := newRootCmd(io.Discard, io.Discard)
	again, err := genDocs(root2)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if !bytes.Equal(again[name], b) {
			t.Errorf("%s differs between two runs", name)
		}
		if bytes.Contains(b, []byte("Auto generated")) {
			t.Errorf("%s has cobra's dated footer", name)
		}
	}
}
