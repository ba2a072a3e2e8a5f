//go:build cuda || cudasim

package cuda

import (
	_ "embed"
	"fmt"
	"math"
	"unsafe"
)

// Built reports whether this binary has the CUDA backend.
const Built = true

//go:embed kernels.ptx
var kernelsPTX string

// Available reports whether a CUDA device can be used. (cu's package
// initialisation has already exited the process when no driver works.)
func Available() error {
	_, err := numDevices()
	return err
}

// Device is one GPU with a context, ctxdep's kernels and a cuBLAS handle.
// Every method makes the context current on the calling OS thread for
// its duration, so a Device can be used from any goroutine, one at a time.
type Device struct {
	drv  *driver
	blas *cublas
	name string
	opts Options
	sms  int
	prof *profiler // while profiling (StartProfile)
	host hostMem   // HostFloats' allocations
}

// Open creates a context on the device o.Ordinal, compiles the embedded
// PTX for it and loads cuBLAS.
func Open(o Options) (*Device, error) {
	drv, name, sms, err := openDriver(o.Ordinal)
	if err != nil {
		return nil, err
	}
	d := &Device{drv: drv, name: name, opts: o, sms: sms}
	// cuBLAS binds its handle to the context current on this OS thread.
	leave := drv.enter()
	d.blas, err = loadCublas(o.TF32)
	if err != nil {
		drv.close()
	}
	leave()
	if err != nil {
		return nil, err
	}
	return d, nil
}

// kernelNames are the kernels of kernels.cu, loaded by name.
var kernelNames = []string{"embed", "layernorm_pre", "add_inplace", "bias_act", "causal_softmax", "split_heads", "merge_heads", "sub_bias",
	"encode_count", "exclusive_scan", "encode_fill", "gather_mid", "scatter_grad", "mse_grad", "relu_grad",
	"gelu_new_grad", "adamw", "sum_pairs", "csc_count", "csc_totals", "csc_starts", "csc_fill", "csc_grad", "col_sum",
	"add_out", "sq_err", "decode_rows", "cross_entropy", "act_deriv", "masked_drive", "effect_sums", "gate_sums", "gated_drive"}

// Close releases the device's resources.
func (d *Device) Close() {
	defer d.enter()()
	d.blas.close()
	d.drv.close()
}

// Name describes the device: name, compute capability, driver and cuBLAS
// versions, and whether TF32 is on.
func (d *Device) Name() string {
	tf := "float32 exact (no TF32)"
	if d.opts.TF32 {
		tf = "TF32 tensor cores"
	}
	hw, api := d.drv.describe(d.sms)
	return fmt.Sprintf("%s (%s), %s, cuBLAS %d (%s), GEMMs %s", d.name, hw, api, d.blas.version, d.blas.path, tf)
}

// enter makes the context current on this goroutine's OS thread until the
// returned function is called.
func (d *Device) enter() func() { return d.drv.enter() }

// buf is a device allocation of n elements of 4 bytes (or 8 for int64).
type buf struct {
	p     devPtr
	n     int
	bytes int64
}

// alloc allocates bytes of device memory, with an error that says how much
// was asked, how much is free, and what to do.
func (d *Device) alloc(what string, bytes int64) (buf, error) {
	if bytes <= 0 {
		bytes = 4
	}
	p, err := memAlloc(bytes)
	if err != nil {
		free, total := memInfo()
		if isOutOfMemory(err) {
			return buf{}, fmt.Errorf("cuda: out of device memory allocating %s (%.1f MiB; %.1f of %.1f MiB free on %s): lower --batch-size", what, mib(bytes), mib(free), mib(total), d.name)
		}
		return buf{}, fmt.Errorf("cuda: allocating %s (%.1f MiB): %v", what, mib(bytes), err)
	}
	return buf{p: p, bytes: bytes}, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (d *Device) free(b *buf) {
	if b.p != 0 {
		memFree(b.p)
		*b = buf{}
	}
}

// allocList allocates several buffers, stopping at the first error, and
// frees them together.
type allocList struct {
	d    *Device
	bufs []*buf
	err  error
}

// add allocates n elements of size bytes into dst.
func (l *allocList) add(dst *buf, what string, n, size int) {
	if l.err != nil {
		return
	}
	*dst, l.err = l.d.alloc(what, int64(n)*int64(size))
	dst.n = n
	if l.err == nil {
		l.bufs = append(l.bufs, dst)
	}
}

func (l *allocList) upload(dst *buf, what string, src []float32) {
	l.add(dst, what, len(src), 4)
	if l.err == nil {
		l.err = h2d(*dst, src)
	}
}

// done returns the first error, having freed what was allocated.
func (l *allocList) done() error {
	if l.err != nil {
		l.freeAll()
	}
	return l.err
}

func (l *allocList) freeAll() {
	for _, b := range l.bufs {
		l.d.free(b)
	}
	l.bufs = nil
}

func h2d[T int32 | int64 | float32 | float64](dst buf, src []T) error {
	if len(src) == 0 {
		return nil
	}
	n := int64(len(src)) * int64(unsafe.Sizeof(src[0]))
	if n > dst.bytes {
		return fmt.Errorf("cuda: copy of %d bytes into a buffer of %d", n, dst.bytes)
	}
	if err := memcpyHtoD(dst.p, unsafe.Pointer(&src[0]), n); err != nil {
		return fmt.Errorf("cuda: copy to device: %v", err)
	}
	return nil
}

func d2h[T int32 | int64 | float32 | float64](dst []T, src buf) error {
	if len(dst) == 0 {
		return nil
	}
	n := int64(len(dst)) * int64(unsafe.Sizeof(dst[0]))
	if n > src.bytes {
		return fmt.Errorf("cuda: copy of %d bytes out of a buffer of %d", n, src.bytes)
	}
	if err := memcpyDtoH(unsafe.Pointer(&dst[0]), src.p, n); err != nil {
		return fmt.Errorf("cuda: copy from device: %v", err)
	}
	return nil
}

// d2d copies the first bytes of src to dst.
func d2d(dst, src buf, bytes int64) error {
	if bytes > dst.bytes || bytes > src.bytes {
		return fmt.Errorf("cuda: copy of %d bytes between buffers of %d and %d", bytes, src.bytes, dst.bytes)
	}
	if err := memcpyDtoD(dst.p, src.p, bytes); err != nil {
		return fmt.Errorf("cuda: copy on the device: %v", err)
	}
	return nil
}

func zero(b buf, bytes int64) error {
	if err := memsetD8(b.p, 0, bytes); err != nil {
		return fmt.Errorf("cuda: memset: %v", err)
	}
	return nil
}

// at returns the address of element i of a float32 or int32 buffer.
func (b buf) at(i int) devPtr { return b.p + devPtr(4*i) }

// launch runs kernel name on grid×block threads. Arguments are device
// pointers (devPtr or buf), int (passed as a 32-bit int), int64 and
// float32, each in a 64-bit slot, as the driver copies them.
func (d *Device) launch(name string, grid, block int, args ...any) error {
	// Fixed arrays, not slices, so that a launch allocates nothing.
	var slots [maxLaunchArgs]uint64
	var ptrs [maxLaunchArgs]unsafe.Pointer
	var kinds [maxLaunchArgs]byte // what each argument is, for the simulated device's checks
	if len(args) > maxLaunchArgs {
		return fmt.Errorf("cuda: %s: %d arguments, at most %d", name, len(args), maxLaunchArgs)
	}
	for i, a := range args {
		switch v := a.(type) {
		case devPtr:
			slots[i], kinds[i] = uint64(v), argPointer
		case buf:
			slots[i], kinds[i] = uint64(v.p), argPointer
		case int:
			if v > math.MaxInt32 || v < math.MinInt32 {
				return fmt.Errorf("cuda: %s: argument %d = %d does not fit a 32-bit int", name, i, v)
			}
			slots[i], kinds[i] = uint64(uint32(int32(v))), argInt32
		case int64:
			slots[i], kinds[i] = uint64(v), argInt64
		case float32:
			slots[i], kinds[i] = uint64(math.Float32bits(v)), argFloat32
		default:
			panic(fmt.Sprintf("cuda: launch %s: argument %d has type %T", name, i, a))
		}
		ptrs[i] = unsafe.Pointer(&slots[i])
	}
	if grid <= 0 {
		return nil
	}
	mk := d.prof.begin(name)
	err := d.drv.launch(name, grid, block, ptrs[:len(args)], kinds[:len(args)])
	d.prof.end(mk)
	if err != nil {
		return fmt.Errorf("cuda: launching %s (%d blocks of %d): %v", name, grid, block, err)
	}
	return nil
}

// maxLaunchArgs is the most arguments launch passes (adamw has 13).
const maxLaunchArgs = 16

// The kinds of launch arguments: a device pointer, a 32-bit int, a 64-bit
// int (long long), a float. The real driver takes each parameter's size
// from the PTX and cannot tell them apart; the simulated device checks
// them against the kernel's parameter types.
const (
	argPointer byte = 'p'
	argInt32   byte = 'i'
	argInt64   byte = 'l'
	argFloat32 byte = 'f'
)

// grid1D returns a grid for a grid-stride loop over n elements.
func (d *Device) grid1D(n int) int {
	g := (n + 255) / 256
	return max(1, min(g, 32*max(d.sms, 1)))
}

// sync waits for the device and reports an asynchronous error.
func (d *Device) sync(what string) error {
	if err := synchronize(); err != nil {
		return fmt.Errorf("cuda: %s: %v", what, err)
	}
	return nil
}
