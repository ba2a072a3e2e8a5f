package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.json")
	if err := WriteFile(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q, want %q", b, "two")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// A destination that cannot be renamed onto (a directory) fails and
	// leaves no temporary file.
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if err := WriteFile(filepath.Join(dir, "d"), []byte("x")); err == nil {
		t.Error("WriteFile onto a directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("after a failed write the directory holds %v", entries)
	}
}

// ParseTempName recognises exactly TempName's names; Leftovers lists them.
func TestParseTempName(t *testing.T) {
	dir := t.TempDir()
	for _, base := range []string{"shard-00001.safetensors", "manifest.json", ".hidden", "a.tmp-12345678"} {
		name := filepath.Base(TempName(filepath.Join(dir, base)))
		if got, ok := ParseTempName(name); !ok || got != base {
			t.Errorf("ParseTempName(%q) = %q, %v; want %q", name, got, ok, base)
		}
	}
	for _, bad := range []string{"manifest.json", ".manifest.json.tmp-1234567", ".manifest.json.tmp-1234567g", "x.json.tmp-12345678", "..tmp-12345678", ".tmp-12345678", ".a.tmp-123456789"} {
		if base, ok := ParseTempName(bad); ok {
			t.Errorf("ParseTempName(%q) = %q, true", bad, base)
		}
	}
	os.WriteFile(TempName(filepath.Join(dir, "b.json")), nil, 0o644)
	os.WriteFile(TempName(filepath.Join(dir, "c.bin")), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), nil, 0o644)
	got, err := Leftovers(dir, func(base string) bool { return filepath.Ext(base) == ".json" })
	if err != nil || len(got) != 1 || !strings.HasPrefix(got[0], ".b.json.tmp-") {
		t.Errorf("Leftovers = %v, %v", got, err)
	}
}
