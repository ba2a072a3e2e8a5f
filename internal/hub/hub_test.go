package hub

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A hub cache laid out as huggingface_hub writes it: refs/main names the
// snapshot; snapshots/<rev>/ holds the files.
func TestSnapshot(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	repo := filepath.Join(home, "hub", "models--openai-community--gpt2")
	for _, rev := range []string{"607a30d783dfa663caf39e06633721c8d4cfcd7e", "1111111111111111111111111111111111111111"} {
		if err := os.MkdirAll(filepath.Join(repo, "snapshots", rev), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(repo, "refs"), 0o755)
	os.WriteFile(filepath.Join(repo, "refs", "main"), []byte("607a30d783dfa663caf39e06633721c8d4cfcd7e\n"), 0o644)

	got, err := Snapshot("openai-community/gpt2", "")
	if want := filepath.Join(repo, "snapshots", "607a30d783dfa663caf39e06633721c8d4cfcd7e"); err != nil || got != want {
		t.Errorf("Snapshot(main) = %q, %v; want %q", got, err, want)
	}
	got, err = Snapshot("openai-community/gpt2", "1111111111111111111111111111111111111111")
	if err != nil || filepath.Base(got) != "1111111111111111111111111111111111111111" {
		t.Errorf("Snapshot(pinned) = %q, %v", got, err)
	}
	if _, err := Snapshot("pchlenski/gpt2-transcoders", ""); !errors.Is(err, ErrNotCached) {
		t.Errorf("Snapshot(absent) error = %v, want ErrNotCached", err)
	}
	// Without refs/main, a single snapshot is taken.
	os.Remove(filepath.Join(repo, "refs", "main"))
	os.RemoveAll(filepath.Join(repo, "snapshots", "1111111111111111111111111111111111111111"))
	if got, err := Snapshot("openai-community/gpt2", ""); err != nil || filepath.Base(got) != "607a30d783dfa663caf39e06633721c8d4cfcd7e" {
		t.Errorf("Snapshot(no refs) = %q, %v", got, err)
	}
	t.Setenv("HF_HUB_CACHE", "/x/y")
	if CacheDir() != "/x/y" {
		t.Errorf("CacheDir ignores $HF_HUB_CACHE")
	}
}
