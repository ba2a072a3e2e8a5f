package cuda

// Options configure a device.
type Options struct {
	Ordinal int  // which GPU (as CUDA numbers them after CUDA_VISIBLE_DEVICES)
	TF32    bool // let cuBLAS use TF32 tensor cores for float32 GEMMs (faster, ~1e-3 relative error); off by default
	// Deterministic sums the fit's W_mid and b_mid gradients in a fixed
	// order (a sort of the active entries by feature) instead of with
	// float atomics, so that a fit repeats bit for bit on the same GPU.
	Deterministic bool
}
