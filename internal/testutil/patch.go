package testutil

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// TensorOffset returns the file offset of element k of the named tensor of
// the safetensors file at path: what a test (or scripts/patchf32) damages
// to see that a reader notices.
func TensorOffset(path, name string, k int) (int64, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, err
	}
	info, ok := f.Tensor(name)
	f.Close()
	if !ok {
		return 0, fmt.Errorf("%s has no tensor %q", path, name)
	}
	if k < 0 || k >= info.NumElements() {
		return 0, fmt.Errorf("%s: index %d is outside tensor %q of %d elements", path, k, name, info.NumElements())
	}
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var head [8]byte
	if _, err := fh.ReadAt(head[:], 0); err != nil {
		return 0, err
	}
	return 8 + int64(binary.LittleEndian.Uint64(head[:])) + info.Begin + int64(k*info.DType.Size()), nil
}

// PatchFloat32 sets element k of the named F32 tensor of the safetensors
// file at path to v, in place, leaving every other byte as it was.
func PatchFloat32(path, name string, k int, v float32) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	info, ok := f.Tensor(name)
	f.Close()
	if ok && info.DType != safetensors.F32 {
		return fmt.Errorf("%s: tensor %q is %s, not F32", path, name, info.DType)
	}
	off, err := TensorOffset(path, name, k)
	if err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
	if _, err := fh.WriteAt(b[:], off); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
