package hub

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestOfflineFromEnv(t *testing.T) {
	for _, c := range []struct {
		hub, transformers string
		want              bool
	}{
		{"", "", false}, {"1", "", true}, {"true", "", true}, {"On", "", true}, {"yes", "", true},
		{"0", "", false}, {"no", "", false}, {"", "1", true}, {"0", "1", false}, {"", "maybe", false},
	} {
		t.Setenv("HF_HUB_OFFLINE", c.hub)
		t.Setenv("TRANSFORMERS_OFFLINE", c.transformers)
		if got := OfflineFromEnv(); got != c.want {
			t.Errorf("HF_HUB_OFFLINE=%q TRANSFORMERS_OFFLINE=%q: offline %v, want %v", c.hub, c.transformers, got, c.want)
		}
	}
}

// HF_HUB_OFFLINE: no request reaches the hub; what the cache holds is
// returned, what it lacks is an error naming the files.
func TestOffline(t *testing.T) {
	files := gpt2Files()
	h := newFakeHub(t, Model, "openai-community/gpt2", files)
	c, cache := newTestClient(t, h)
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("TRANSFORMERS_OFFLINE", "")
	off := NewClient()
	off.Progress = c.Progress
	if !off.Offline {
		t.Fatal("NewClient ignores HF_HUB_OFFLINE")
	}
	ctx := context.Background()
	_, err := off.Download(ctx, Model, "openai-community/gpt2", "", []string{"config.json"})
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), cache) {
		t.Errorf("offline, empty cache: %v", err)
	}
	if _, _, err := off.ListFiles(ctx, Model, "openai-community/gpt2", ""); !errors.Is(err, ErrOffline) {
		t.Errorf("offline list, empty cache: %v", err)
	}
	if r := h.requests(""); len(r) > 0 {
		t.Fatalf("offline requests reached the hub: %v", r)
	}
	// Online, one file; offline again: that file is there, the other not.
	want, err := c.Download(ctx, Model, "openai-community/gpt2", "", []string{"config.json", "tokenizer/vocab.txt"})
	if err != nil {
		t.Fatal(err)
	}
	h.resetLog()
	snap, err := off.Download(ctx, Model, "openai-community/gpt2", "", []string{"config.json", "tokenizer/vocab.txt"})
	if err != nil || snap != want {
		t.Errorf("offline, cached: %s %v, want %s", snap, err, want)
	}
	_, err = off.Download(ctx, Model, "openai-community/gpt2", "main", []string{"config.json", "model.safetensors"})
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "model.safetensors not in the cached snapshot") || strings.Contains(err.Error(), "config.json") {
		t.Errorf("offline, partly cached: %v", err)
	}
	list, commit, err := off.ListFiles(ctx, Model, "openai-community/gpt2", "")
	if err != nil || commit != fakeCommit || len(list) != 2 || list[0].Path != "config.json" || list[1].Path != "tokenizer/vocab.txt" ||
		list[0].Size != int64(len(files["config.json"].content)) {
		t.Errorf("offline list: %+v %s %v", list, commit, err)
	}
	if r := h.requests(""); len(r) > 0 {
		t.Errorf("offline requests reached the hub: %v", r)
	}
}
