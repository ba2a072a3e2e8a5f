// Package cuda is the GPU backend (build tag cuda). In a build without the
// tag, as this one, it only reports that CUDA is not available, so that
// `--device cuda` fails with a clear message instead of silently running
// on the CPU.
package cuda
