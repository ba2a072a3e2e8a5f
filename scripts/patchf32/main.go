// Command patchf32 overwrites one float32 of a tensor in a safetensors file
// in place, as a damaged disk or a bad copy would: the replay of the
// reliability table (scripts/reliability-replay.sh) uses it to damage
// shards, models and midcoder files the way the reproductions did.
//
// Usage:
//
//	go run ./scripts/patchf32 FILE TENSOR INDEX VALUE
//
// VALUE is a float ("1e6", "NaN", "+Inf"); INDEX is the flat index.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/testutil"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: patchf32 FILE TENSOR INDEX VALUE")
		os.Exit(2)
	}
	if err := patch(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "patchf32: "+err.Error())
		os.Exit(1)
	}
}

func patch(path, name, index, value string) error {
	i, err := strconv.Atoi(index)
	if err != nil {
		return err
	}
	v, err := strconv.ParseFloat(value, 32)
	if err != nil {
		return err
	}
	return testutil.PatchFloat32(path, name, i, float32(v))
}
