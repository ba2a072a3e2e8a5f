package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain keeps the tests' input hashes out of the user's cache
// directory: the hash cache goes to a temporary file (and is exercised).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ctxdep-cmd-test")
	if err != nil {
		panic(err)
	}
	os.Setenv("CTXDEP_HASH_CACHE", filepath.Join(dir, "hashes.json"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
