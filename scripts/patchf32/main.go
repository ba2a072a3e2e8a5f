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
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/safetensors"
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
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	t, ok := f.Tensor(name)
	f.Close()
	switch {
	case !ok:
		return fmt.Errorf("%s has no tensor %q", path, name)
	case t.DType != safetensors.F32:
		return fmt.Errorf("%s: tensor %q is %s, not F32", path, name, t.DType)
	case i < 0 || i >= t.NumElements():
		return fmt.Errorf("%s: index %d is outside tensor %q of %d elements", path, i, name, t.NumElements())
	}
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	var head [8]byte
	if _, err := file.ReadAt(head[:], 0); err != nil {
		return err
	}
	off := 8 + int64(binary.LittleEndian.Uint64(head[:])) + t.Begin + 4*int64(i)
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], math.Float32bits(float32(v)))
	_, err = file.WriteAt(b[:], off)
	return err
}
