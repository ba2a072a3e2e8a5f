package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// jsonDoc is the page that documents every --json document.
const jsonDoc = "../../docs/json.md"

// TestJSONDocCoversKeys keeps docs/json.md in step with the --json
// documents. It proves two things:
//
//  1. every command that has a --json flag has its own section in the page
//     ("## `cache verify`"), so a new reporting command cannot go
//     undocumented;
//  2. every key that the commands below actually print, at the top of their
//     documents and in the nested objects listed in jsonDocChecks, is named
//     in backquotes (`key`) in the prose or tables of the section that
//     documents that object, not only in its example. The fenced examples
//     do not count. So a key added to a Go struct or map, or renamed, fails
//     here until the page describes it.
//
// It runs, in-process on the tiny fixtures: version, cache build (a layer
// set, and a one-worker sharded build), cache merge, cache verify (with a
// missing shard, so problems are listed), cache plan --layers,
// inspect-cache, tokenize, fit, pinv-baseline, evaluate and report (all
// with --layers, so the layer-set wrapper is checked too) and connections.
// Keys that only some runs print (cuda_simulated, y_recomputed, data.to_end,
// ...) are checked only when printed. Free-form maps (provenance flags,
// tokenize's skipped reasons, a text cache's data.settings and
// data.counts) and download, whose keys are its targets, are not checked.
// "Named" means anywhere in the section outside code blocks, not
// necessarily in a row of its own.
func TestJSONDocCoversKeys(t *testing.T) {
	raw, err := os.ReadFile(jsonDoc)
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)

	// 1. A section per command with --json.
	root, _ := newRootCmd(io.Discard, io.Discard)
	var withJSON []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Flags().Lookup("json") != nil {
			withJSON = append(withJSON, strings.TrimPrefix(c.CommandPath(), root.Name()+" "))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if len(withJSON) < 10 {
		t.Fatalf("found only %d commands with --json: %v", len(withJSON), withJSON)
	}
	for _, name := range withJSON {
		if jsonDocSection(page, jsonSec(name)) == "" {
			t.Errorf("docs/json.md has no section \"## `%s`\" for `ctxdep %s --json`", name, name)
		}
	}

	// 2. The keys the commands print.
	for _, c := range jsonDocChecks(t) {
		dec := json.NewDecoder(strings.NewReader(c.out))
		var v any
		if err := dec.Decode(&v); err != nil || dec.More() {
			t.Errorf("%s: stdout is not one JSON document (%v): %s", c.name, err, c.out)
			continue
		}
		for path, sections := range c.objects {
			objs := jsonObjects(v, path)
			if len(objs) == 0 {
				t.Errorf("%s: no object at %q in its document (update the test): %.300s", c.name, path, c.out)
				continue
			}
			var text strings.Builder
			for _, h := range sections {
				s := jsonDocSection(page, h)
				if s == "" {
					t.Fatalf("docs/json.md has no section %q", h)
				}
				text.WriteString(s)
			}
			var missing []string
			for _, o := range objs {
				for k := range o {
					if !strings.Contains(text.String(), "`"+k+"`") && !slices.Contains(missing, k) {
						missing = append(missing, k)
					}
				}
			}
			slices.Sort(missing)
			if len(missing) > 0 {
				t.Errorf("%s --json prints key(s) %s at %q that docs/json.md does not name in %s",
					c.name, strings.Join(missing, ", "), path, strings.Join(sections, " or "))
			}
		}
	}
}

// jsonDocCheck is one command's document and where the page documents
// its objects: a path (see jsonObjects) to the sections that must name
// the keys of the objects found there.
type jsonDocCheck struct {
	name    string
	out     string
	objects map[string][]string
}

// Section headings of docs/json.md.
const (
	jsonSecLayers     = "## Layer sets"
	jsonSecFile       = "### File"
	jsonSecManifest   = "### Cache manifest"
	jsonSecProvenance = "### Provenance"
)

func jsonSec(cmd string) string { return "## `" + cmd + "`" }

// jsonManifestPaths maps the objects of a cache manifest found at prefix
// ("manifest", "manifests[]", ...) to their sections.
func jsonManifestPaths(prefix string, m map[string][]string) map[string][]string {
	m[prefix] = []string{jsonSecManifest}
	m[prefix+".hooks"] = []string{jsonSecManifest}
	m[prefix+".shards[]"] = []string{jsonSecManifest}
	m[prefix+".data"] = []string{jsonSecManifest}
	m[prefix+".model"] = []string{jsonSecFile}
	return m
}

// jsonDocChecks runs the commands and returns their documents.
func jsonDocChecks(t *testing.T) []jsonDocCheck {
	t.Helper()
	tmp := t.TempDir()
	var checks []jsonDocCheck
	runJSON := func(name string, wantCode int, objects map[string][]string, args ...string) string {
		t.Helper()
		code, out, errs := ctxdep(t, append(args, "-q", "--json")...)
		if code != wantCode {
			t.Fatalf("%s --json: exit %d, want %d: %s", name, code, wantCode, errs)
		}
		checks = append(checks, jsonDocCheck{name, out, objects})
		return out
	}

	runJSON("version", 0, map[string][]string{"": {jsonSec("version")}}, "version")

	// A layer set of layers 1 and 2, with acts (as buildSet, printing its document).
	set := filepath.Join(tmp, "set")
	runJSON("cache build --layers", 0, jsonManifestPaths("manifests[]", map[string][]string{"": {jsonSec("cache build")}}),
		"cache", "build", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2", "--tokens", tokensNpy,
		"--sequences-per-shard", "4", "--batch-size", "4", "--with-acts", "--out", set)

	// One worker of a sharded build, its merge, and a verify that finds a
	// shard missing.
	sharded := filepath.Join(tmp, "sharded")
	runJSON("cache build --shard", 0, jsonManifestPaths("manifest", map[string][]string{
		"": {jsonSec("cache build")}, "worker": {jsonSec("cache build")}, "manifest.worker": {jsonSecManifest}}),
		"cache", "build", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "--tokens", tokensNpy,
		"--sequences-per-shard", "4", "--with-acts", "--shard", "0/1", "--out", sharded)
	runJSON("cache merge", 0, jsonManifestPaths("manifest", map[string][]string{"": {jsonSec("cache merge")}}),
		"cache", "merge", sharded)
	shards, _ := filepath.Glob(filepath.Join(sharded, "w00000-of-00001-shard-*.safetensors"))
	if len(shards) == 0 {
		t.Fatal("the sharded build wrote no shards")
	}
	if err := os.Remove(shards[0]); err != nil {
		t.Fatal(err)
	}
	runJSON("cache verify", 1, map[string][]string{"": {jsonSec("cache verify")}, "problems[]": {jsonSec("cache verify")}},
		"cache", "verify", sharded)

	runJSON("cache plan --layers", 0, map[string][]string{"": {jsonSec("cache plan")}, "plans[]": {jsonSec("cache plan")}},
		"cache", "plan", "--model", tinyModel, "--n-tokens", "100", "--layers", "1,2", "--max-length", "16",
		"--sample-rows", "1", "--batch-size", "2")

	runJSON("inspect-cache --layers", 0, jsonManifestPaths("results[].manifest", map[string][]string{
		"":                     {jsonSecLayers},
		"results[]":            {jsonSec("inspect-cache")},
		"results[].x":          {jsonSec("inspect-cache")},
		"results[].y":          {jsonSec("inspect-cache")},
		"results[].transcoder": {jsonSec("inspect-cache")},
	}), "inspect-cache", set, "--layers", "1,2")

	runJSON("tokenize", 0, map[string][]string{"": {jsonSec("tokenize")}, "tokenizer": {jsonSec("tokenize")}},
		"tokenize", "--data", writeCorpus(t, 40), "--max-length", "16", "--out", filepath.Join(tmp, "rows.npy"))

	fit := filepath.Join(tmp, "fit")
	runJSON("fit --layers", 0, map[string][]string{"": {jsonSecLayers}, "results[][]": {jsonSec("fit")}},
		"fit", "--cache", set, "--layers", "1,2", "--batch-size", "2", "--steps-per-epoch", "2", "--train-tokens", "100", "--out", fit)

	pinv := filepath.Join(tmp, "pinv")
	runJSON("pinv-baseline --layers", 0, map[string][]string{"": {jsonSecLayers}, "results[]": {jsonSec("pinv-baseline")}},
		"pinv-baseline", "--cache", set, "--layers", "1,2", "--out", pinv)

	runJSON("evaluate --layers", 0, map[string][]string{
		"": {jsonSecLayers}, "results[]": {jsonSec("evaluate")}, "results[].midcoders[]": {jsonSec("evaluate")}},
		"evaluate", "--cache", set, "--layers", "1,2", "--midcoder", fit, "--midcoder", pinv)

	// --skip-first-position and --pinv make the summary's optional keys appear.
	runJSON("report --layers", 0, map[string][]string{
		"":                              {jsonSecLayers},
		"results[]":                     {jsonSec("report")},
		"results[].provenance":          {jsonSecProvenance},
		"results[].provenance.inputs[]": {jsonSecProvenance, jsonSecFile},
	}, "report", "--cache", set, "--layers", "1,2", "--midcoder", fit, "--pinv", pinv, "--examples", "0",
		"--skip-first-position", "--out", filepath.Join(tmp, "report"))

	runJSON("connections", 0, map[string][]string{
		"":                            {jsonSec("connections")},
		"summary":                     {jsonSec("connections")},
		"summary.spearman":            {jsonSec("connections")},
		"summary.share_topk_v":        {jsonSec("connections")},
		"summary.provenance":          {jsonSecProvenance},
		"summary.provenance.inputs[]": {jsonSecProvenance, jsonSecFile},
	}, "connections", "--cache", set, "--layers", "1,2", "--top-k", "4", "--out", filepath.Join(tmp, "conn"))
	return checks
}

// jsonObjects returns the objects at path in v: path is "" (v itself) or
// dot-separated names, each followed by any number of "[]" (every element
// of the array there); a leading "[]" iterates v itself. Nulls and values
// that are not objects are skipped.
func jsonObjects(v any, path string) []map[string]any {
	vals := []any{v}
	if path != "" {
		for _, seg := range strings.Split(path, ".") {
			name, iter := seg, 0
			for strings.HasSuffix(name, "[]") {
				name, iter = strings.TrimSuffix(name, "[]"), iter+1
			}
			var next []any
			for _, x := range vals {
				if name != "" {
					o, ok := x.(map[string]any)
					if !ok {
						continue
					}
					if x, ok = o[name]; !ok {
						continue
					}
				}
				next = append(next, x)
			}
			for range iter {
				var flat []any
				for _, x := range next {
					if a, ok := x.([]any); ok {
						flat = append(flat, a...)
					}
				}
				next = flat
			}
			vals = next
		}
	}
	var objs []map[string]any
	for _, x := range vals {
		if o, ok := x.(map[string]any); ok {
			objs = append(objs, o)
		}
	}
	return objs
}

// jsonDocSection returns the text under the heading line h ("## `fit`") up to
// the next heading of the same or a higher level, without its fenced
// code blocks; "" when there is no such heading.
func jsonDocSection(page, h string) string {
	level := len(h) - len(strings.TrimLeft(h, "#"))
	var b strings.Builder
	in, fence := false, false
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
			continue
		}
		if fence {
			continue
		}
		if strings.HasPrefix(line, "#") {
			l := len(line) - len(strings.TrimLeft(line, "#"))
			if in && l <= level {
				break
			}
			if strings.TrimSpace(line) == h {
				in = true
				b.WriteString(line + "\n") // a found section is never ""
				continue
			}
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
