package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// displayPath is how a path is printed to the user: relative to the working
// directory when it lies inside it, so that the absolute paths manifests
// record as provenance read as the user typed them. Any other path (outside
// the working directory, already relative, or when the working directory is
// unknown) is returned unchanged; it never yields a "../" path.
func displayPath(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return p
	}
	return rel
}

// plural is n and noun, the noun in the plural unless n is 1 ("1 shard",
// "2 shards").
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
