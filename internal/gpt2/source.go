package gpt2

import (
	"fmt"
	"strings"
	"sync"

	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/torchfile"
)

// source lists a checkpoint's tensors and decodes each on demand, so only
// the tensors being processed are held in float32.
type source interface {
	tensors() []sourceTensor
	close() error
}

type sourceTensor struct {
	name  string
	shape []int
	// read reads elements [start, start+len(dst)) of the tensor, in C
	// order, into dst.
	read func(dst []float32, start int) error
}

func openSource(path string) (source, error) {
	if strings.HasSuffix(path, ".safetensors") {
		f, err := safetensors.OpenReader(path)
		if err != nil {
			return nil, err
		}
		return stSource{f}, nil
	}
	obj, err := torchfile.Load(path)
	if err != nil {
		return nil, err
	}
	sd, err := torchfile.StateDict(obj)
	if err != nil {
		return nil, fmt.Errorf("gpt2: %s: %w", path, err)
	}
	var ts []sourceTensor
	for i, k := range sd.Keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("gpt2: %s: state dict key %v is not a string", path, k)
		}
		t, ok := sd.Values[i].(*torchfile.Tensor)
		if !ok {
			return nil, fmt.Errorf("gpt2: %s: %q is not a tensor", path, name)
		}
		// The legacy format decodes a tensor whole: once, then parts.
		whole := sync.OnceValues(t.Float32)
		ts = append(ts, sourceTensor{name: name, shape: t.Shape, read: func(dst []float32, start int) error {
			v, err := whole()
			if err == nil && (start < 0 || len(dst) > len(v)-start) {
				err = fmt.Errorf("elements [%d, %d) of %d", start, start+len(dst), len(v))
			}
			if err != nil {
				return err
			}
			copy(dst, v[start:])
			return nil
		}})
	}
	return torchSource(ts), nil
}

// stSource reads a safetensors file with positioned reads, straight into
// the destination.
type stSource struct{ f *safetensors.Reader }

func (s stSource) tensors() []sourceTensor {
	var ts []sourceTensor
	for _, info := range s.f.Tensors() {
		ts = append(ts, sourceTensor{name: info.Name, shape: info.Shape, read: func(dst []float32, start int) error {
			return s.f.ReadFloat32At(dst, info.Name, start)
		}})
	}
	return ts
}

func (s stSource) close() error { return s.f.Close() }

type torchSource []sourceTensor

func (s torchSource) tensors() []sourceTensor { return s }
func (s torchSource) close() error            { return nil }
