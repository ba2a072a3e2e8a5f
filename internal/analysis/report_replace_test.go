package analysis

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// Row 10 of issue 18: a report replaces its directory as a whole. A rerun
// leaves no plot of the earlier report behind; a report that fails
// midway leaves the earlier one as it was and nothing else; a directory
// that is not a report is refused; two reports do not write one
// directory at once.
func TestWriteReportReplacesWhole(t *testing.T) {
	res, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: handFit, Pinv: handPinv, TopK: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	hist := filepath.Join(t.TempDir(), "history.csv")
	os.WriteFile(hist, []byte("epoch,loss,loss_norm,lr\n1,0.5,0.25,0.001\n2,0.25,0.125,0.0005\n"), 0o644)
	out := filepath.Join(parent, "report")
	if _, err := WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors", PinvFile: "pinv.safetensors", HistoryPath: hist}); err != nil {
		t.Fatal(err)
	}
	if names := testutil.ListDir(t, out); !slices.Contains(names, plotCosine) || !slices.Contains(names, plotLoss) {
		t.Fatalf("first report: %v", names)
	}

	// A rerun without --pinv and history drops their plots.
	r, err := WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	names := testutil.ListDir(t, out)
	if slices.Contains(names, plotCosine) || slices.Contains(names, plotLoss) {
		t.Errorf("stale plots survived the rerun: %v", names)
	}
	want := slices.Clone(r.Files)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("the report directory holds %v, WriteReport wrote %v", names, want)
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"report"}) {
		t.Errorf("beside the report: %v", got)
	}

	// A failure midway (here: a table whose neuron lists are short, which
	// the safetensors writer refuses; a full disk fails the same way)
	// leaves the earlier report untouched.
	before := snapshotDir(t, out)
	bad := *res
	bad.Features = slices.Clone(res.Features)
	bad.Features[0].Neurons = bad.Features[0].Neurons[:1]
	if _, err := WriteReport(out, RenderInput{Result: &bad, CacheDir: "cache", MidcoderFile: "fit.safetensors"}); err == nil {
		t.Fatal("WriteReport of a malformed table succeeded")
	}
	if after := snapshotDir(t, out); !mapsEqual(before, after) {
		t.Error("a failed report changed the earlier one")
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"report"}) {
		t.Errorf("a failed report left %v", got)
	}

	// A killed report's temporary directory is removed by the next.
	os.Mkdir(filepath.Join(parent, ".report.report-tmp-123"), 0o755)
	if _, err := WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"report"}) {
		t.Errorf("after a report over a killed one's leftovers: %v", got)
	}

	// A directory with other files is not a report: refused, untouched.
	other := filepath.Join(parent, "notes")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(other, ReportHTML), []byte("old"), 0o644)
	_, err = WriteReport(other, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"})
	if err == nil || !strings.Contains(err.Error(), "notes.txt") || !strings.Contains(err.Error(), "choose a new or empty directory") {
		t.Errorf("WriteReport into a directory with other files: %v", err)
	}
	if got := testutil.ListDir(t, other); !slices.Equal(got, []string{ReportHTML, "notes.txt"}) {
		t.Errorf("the refused directory now holds %v", got)
	}
	// An empty directory is fine.
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	if _, err := WriteReport(empty, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"}); err != nil {
		t.Errorf("WriteReport into an empty directory: %v", err)
	}

	// While another report holds the lock, a second is refused.
	l, err := dirlock.TryLock(filepath.Join(parent, ".report.ctxdep.lock"), dirlock.Options{What: "ctxdep report"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"})
	if err == nil || !strings.Contains(err.Error(), out+" is being written by this process") {
		t.Errorf("a second report at once: %v", err)
	}
	l.Release()
}

func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, n := range testutil.ListDir(t, dir) {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		m[n] = string(b)
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// CheckReportOut refuses, before any work, an --out that WriteReport
// would refuse: a directory holding files that are not a report's.
func TestCheckReportOut(t *testing.T) {
	dir := t.TempDir()
	if err := CheckReportOut(filepath.Join(dir, "new")); err != nil {
		t.Errorf("CheckReportOut(a new directory) = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "midcoder.safetensors"), []byte("x"), 0o644)
	if err := CheckReportOut(dir); err == nil || !strings.Contains(err.Error(), "midcoder.safetensors") {
		t.Errorf("CheckReportOut(a fit's directory) = %v", err)
	}
}

// A one-layer report in a set's directory that a killed writer had moved
// aside (its layer-LL missing) is that layer's only copy: a set that does
// not report layer LL refuses to replace it, as it would layer-LL itself.
// Beside its layer-LL it is a leftover; a name that merely starts like one
// is the user's.
func TestReplaceableSetMovedAside(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, ".layer-03.report-old-0123abcd"), 0o755)
	if err := replaceableSet(dir, []int{8}); err == nil || !strings.Contains(err.Error(), "layers 3") {
		t.Errorf("a set without layer 3 over its moved-aside report: %v", err)
	}
	if err := replaceableSet(dir, []int{3, 8}); err != nil {
		t.Errorf("a set with layer 3 over its moved-aside report: %v", err)
	}
	os.Mkdir(filepath.Join(dir, "layer-03"), 0o755)
	if err := replaceableSet(dir, []int{3}); err != nil {
		t.Errorf("a moved-aside report beside its layer's: %v", err)
	}
	os.Mkdir(filepath.Join(dir, ".layer-03.report-old-notes"), 0o755)
	if err := replaceableSet(dir, []int{3}); err == nil || !strings.Contains(err.Error(), "holds .layer-03.report-old-notes") {
		t.Errorf("a directory of the user's: %v", err)
	}
}
