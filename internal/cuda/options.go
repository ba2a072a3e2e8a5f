package cuda

// Options configure a device.
type Options struct {
	Ordinal int  // which GPU (as CUDA numbers them after CUDA_VISIBLE_DEVICES)
	TF32    bool // let cuBLAS use TF32 tensor cores for float32 GEMMs (faster, ~1e-3 relative error); off by default
}
