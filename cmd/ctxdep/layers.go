package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// parseLayerList parses a --layers value against a model of nLayers
// blocks: "all", or comma-separated layers and ranges ("2,3", "0-11",
// "0-3,8"). The result is ascending and without repeats.
func parseLayerList(s string, nLayers int) ([]int, error) {
	bad := func(why string) error {
		return usagef("--layers %q: %s (want e.g. 8, 2,3, 0-11 or all; the model has layers 0..%d)", s, why, nLayers-1)
	}
	s = strings.TrimSpace(s)
	if s == "all" {
		out := make([]int, nLayers)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	if s == "" {
		return nil, bad("empty")
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, bad(fmt.Sprintf("%q is not a layer", part))
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, bad(fmt.Sprintf("%q is not a range", part))
			}
		}
		if a < 0 || b >= nLayers {
			return nil, bad(fmt.Sprintf("%s is outside the model's layers", part))
		}
		for l := a; l <= b; l++ {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
