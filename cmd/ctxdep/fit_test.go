package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fit says on the command's stderr (not the process's), and only without
// -q, that it removed the temporary file a killed fit left in --out.
func TestFitLeftoverNotice(t *testing.T) {
	cache := buildCache(t, true)
	for _, quiet := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "fit")
		os.MkdirAll(out, 0o755)
		left := filepath.Join(out, ".checkpoint.safetensors.tmp-0123abcd")
		os.WriteFile(left, []byte("half a checkpoint"), 0o644)
		args := fitArgs(cache, out) // "fit", "-q", ...
		if !quiet {
			args = slices.Delete(args, 1, 2)
		}
		code, _, errs := ctxdep(t, args...)
		if code != 0 {
			t.Fatalf("fit: %d %s", code, errs)
		}
		if _, err := os.Stat(left); !os.IsNotExist(err) {
			t.Errorf("the killed fit's temporary file is still there: %v", err)
		}
		said := strings.Contains(errs, "fit: removed 1 temporary file(s) that a killed fit left in "+out)
		if said == quiet {
			t.Errorf("quiet %v: stderr %q", quiet, errs)
		}
	}
}
