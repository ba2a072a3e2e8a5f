package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Shell completion offers flag values, download targets and paths.
func TestCompletion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string // candidates, then the directive line
	}{
		{[]string{"fit", "--init", ""}, []string{"kaiming", "zeros", "pinv", ":4"}},
		{[]string{"pinv-baseline", "--act", ""}, []string{"relu", "gelu_new", ":4"}},
		{[]string{"cache", "build", "--device", ""}, []string{"cpu", "cuda", ":4"}},
		{[]string{"cache", "build", "--dtype", ""}, []string{"float32", "float16", ":4"}},
		{[]string{"tokenize", "--format", ""}, []string{"jsonl", "parquet", "owt-tar", "txt", ":4"}},
		{[]string{"download", ""}, []string{"model", "transcoders", "owt", ":4"}},
		{[]string{"fit", "--cache", ""}, []string{":16"}},
		{[]string{"evaluate", "--model", ""}, []string{":16"}},
		{[]string{"cache", "build", "--tokens", ""}, []string{"npy", ":8"}},
		{[]string{"report", "--midcoder", ""}, []string{"safetensors", ":8"}},
		{[]string{"fit", "--out", ""}, []string{":0"}},
	} {
		_, out, _ := ctxdep(t, append([]string{"__complete"}, c.args...)...)
		if got := strings.Fields(out); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("complete %q: %q, want %q", c.args, got, c.want)
		}
	}
}

var envRead = regexp.MustCompile(`(?:Getenv|getenv|LookupEnv)\("([A-Z][A-Z0-9_]*)"\)`)

// The root --help lists every environment variable the code reads.
func TestHelpListsEnvironment(t *testing.T) {
	root, _ := newRootCmd(nil, nil)
	seen := 0
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range envRead.FindAllStringSubmatch(string(src), -1) {
			seen++
			if !strings.Contains(root.Long, m[1]) {
				t.Errorf("%s reads $%s, which `ctxdep --help` does not list", p, m[1])
			}
		}
		return nil
	})
	if err != nil || seen < 10 {
		t.Fatalf("found %d reads of environment variables (%v)", seen, err)
	}
}
