//go:build !cuda

package cuda

import "errors"

// Built reports whether this binary has the CUDA backend.
const Built = false

// ErrNotBuilt is returned by Available in builds without the cuda tag.
var ErrNotBuilt = errors.New("this ctxdep was built without CUDA; build it with `make build-cuda` on a machine with the CUDA driver, or use --device cpu")

// Available reports whether the CUDA backend can be used.
func Available() error { return ErrNotBuilt }
