package gpt2

import (
	"fmt"
	"strings"

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
	load  func() ([]float32, error)
}

func openSource(path string) (source, error) {
	if strings.HasSuffix(path, ".safetensors") {
		f, err := safetensors.Open(path)
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
		ts = append(ts, sourceTensor{name: name, shape: t.Shape, load: t.Float32})
	}
	return torchSource(ts), nil
}

type stSource struct{ f *safetensors.File }

func (s stSource) tensors() []sourceTensor {
	var ts []sourceTensor
	for _, info := range s.f.Tensors() {
		ts = append(ts, sourceTensor{name: info.Name, shape: info.Shape, load: func() ([]float32, error) {
			return s.f.Float32(info.Name)
		}})
	}
	return ts
}

func (s stSource) close() error { return s.f.Close() }

type torchSource []sourceTensor

func (s torchSource) tensors() []sourceTensor { return s }
func (s torchSource) close() error            { return nil }
