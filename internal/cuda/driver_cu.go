//go:build cuda && !cudasim

package cuda

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"gorgonia.org/cu"

	_ "github.com/ctxdep/ctxdep/internal/cuda/probe" // a clear error, before cu's init, when no GPU works
)

// The driver: the few calls of CUDA's driver API the backend makes,
// through gorgonia.org/cu. driver_sim.go has the same functions for the
// cudasim build.

// Simulated reports whether this build's device is the simulated one
// (build tag cudasim, for tests).
const Simulated = false

// devPtr is a device address.
type devPtr = cu.DevicePtr

// driver is a device's context and ctxdep's kernels loaded in it.
type driver struct {
	dev cu.Device
	ctx cu.CUContext
	mod cu.Module
	fn  map[string]cu.Function
}

// numDevices returns how many CUDA devices are visible, or an error when
// none is.
func numDevices() (int, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return 0, fmt.Errorf("cuda: %v", err)
	}
	if n == 0 {
		return 0, errors.New("cuda: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
	}
	return n, nil
}

// openDriver creates a context on device ordinal and loads the embedded
// PTX into it; it returns the device's name and its number of SMs.
func openDriver(ordinal int) (*driver, string, int, error) {
	n, err := numDevices()
	if err != nil {
		return nil, "", 0, err
	}
	if ordinal < 0 || ordinal >= n {
		return nil, "", 0, fmt.Errorf("cuda: device %d does not exist (%d visible)", ordinal, n)
	}
	dev, err := cu.GetDevice(ordinal)
	if err != nil {
		return nil, "", 0, fmt.Errorf("cuda: %v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx, err := dev.MakeContext(cu.SchedAuto)
	if err != nil {
		return nil, "", 0, fmt.Errorf("cuda: creating a context on device %d: %v", ordinal, err)
	}
	dr := &driver{dev: dev, ctx: ctx, fn: map[string]cu.Function{}}
	name, _ := dev.Name()
	sms, _ := dev.Attribute(cu.MultiprocessorCount)
	if dr.mod, err = cu.LoadData(kernelsPTX); err != nil {
		dr.ctx.Destroy()
		return nil, "", 0, fmt.Errorf("cuda: the driver could not compile ctxdep's kernels (PTX for compute_80) for %s: %v; a driver for CUDA 11.8 or newer and a GPU of compute capability 8.0 or newer are needed", name, err)
	}
	for _, k := range kernelNames {
		f, err := dr.mod.Function(k)
		if err != nil {
			dr.ctx.Destroy()
			return nil, "", 0, fmt.Errorf("cuda: kernel %s missing from kernels.ptx: %v", k, err)
		}
		dr.fn[k] = f
	}
	return dr, name, sms, nil
}

func (dr *driver) close() { dr.ctx.Destroy() }

// enter makes the context current on this goroutine's OS thread until the
// returned function is called.
func (dr *driver) enter() func() {
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(dr.ctx); err != nil {
		panic(fmt.Sprintf("cuda: cannot make the context current: %v", err))
	}
	return runtime.UnlockOSThread
}

// describe gives the device's compute capability, SMs and memory, and
// the driver API's version.
func (dr *driver) describe(sms int) (hw, api string) {
	major, minor, _ := dr.dev.ComputeCapability()
	mem, _ := dr.dev.TotalMem()
	dv := cu.Version()
	return fmt.Sprintf("sm_%d%d, %d SMs, %.0f GiB", major, minor, sms, float64(mem)/(1<<30)),
		fmt.Sprintf("driver API %d.%d", dv/1000, dv%1000/10)
}

// launch runs kernel name on grid×block threads with the argument
// pointers ptrs, on the default stream (the driver knows the parameters'
// sizes: kinds is for the simulated device).
func (dr *driver) launch(name string, grid, block int, ptrs []unsafe.Pointer, _ []byte) error {
	return dr.fn[name].Launch(grid, 1, 1, block, 1, 1, 0, cu.Stream{}, ptrs)
}

func memAlloc(bytes int64) (devPtr, error) { return cu.MemAlloc(bytes) }

func isOutOfMemory(err error) bool { return errors.Is(err, cu.OutOfMemory) }

func memInfo() (free, total int64) {
	free, total, _ = cu.MemInfo()
	return free, total
}

func memFree(p devPtr) { cu.MemFree(p) }

func memcpyHtoD(dst devPtr, src unsafe.Pointer, n int64) error { return cu.MemcpyHtoD(dst, src, n) }

func memcpyDtoH(dst unsafe.Pointer, src devPtr, n int64) error { return cu.MemcpyDtoH(dst, src, n) }

func memcpyDtoD(dst, src devPtr, n int64) error { return cu.MemcpyDtoD(dst, src, n) }

func memsetD8(p devPtr, v byte, n int64) error { return cu.MemsetD8(p, v, n) }

func synchronize() error { return cu.Synchronize() }

// timer is an event on the stream, for profiles.
type timer = cu.Event

func newTimer() (timer, error) { return cu.MakeEvent(cu.DefaultEvent) }

func recordTimer(t timer) error { return t.Record(cu.Stream{}) }

// elapsedMs waits for b and returns the milliseconds from a to b.
func elapsedMs(a, b timer) (float64, error) {
	if err := b.Synchronize(); err != nil {
		return 0, err
	}
	return a.Elapsed(b)
}

// destroyTimer destroys t, if it was made.
func destroyTimer(t *timer) {
	if *t != (cu.Event{}) {
		cu.DestroyEvent(t)
	}
}

// stream is a non-blocking stream: it does not wait for the default
// stream, which the backend's kernels and GEMMs run on; work on it orders
// after the default stream's only through events (waitEvent).
type stream = cu.Stream

func newStream() (stream, error) { return cu.MakeStream(cu.NonBlocking) }

func destroyStream(s *stream) {
	if *s != (cu.Stream{}) {
		s.Destroy()
	}
}

// event marks a point of the default stream's work.
type event = cu.Event

func newEvent() (event, error) { return cu.MakeEvent(cu.DisableTiming) }

func destroyEvent(e *event) {
	if *e != (cu.Event{}) {
		cu.DestroyEvent(e)
	}
}

// recordEvent marks e at the end of the work issued to the default
// stream so far.
func recordEvent(e event) error { return e.Record(cu.Stream{}) }

// waitEvent makes the work issued to s from now on wait for e.
func waitEvent(s stream, e event) error { return s.Wait(e, 0) }

// memcpyDtoHAsync copies n bytes from the device to dst, page-locked host
// memory (hostAlloc's), on s; dst is written once s is synchronised.
func memcpyDtoHAsync(dst unsafe.Pointer, src devPtr, n int64, s stream) error {
	return cu.MemcpyDtoHAsync(dst, src, n, s)
}

// syncStream waits for the work issued to s.
func syncStream(s stream) error { return s.Synchronize() }

// hostAlloc returns bytes of page-locked host memory, which the GPU copies
// to by DMA at the link's full speed (cuMemHostAlloc; gorgonia.org/cu
// v0.9.6 has no wrapper for it).
func hostAlloc(bytes int64) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if r := C.cuMemHostAlloc(&p, C.size_t(bytes), 0); r != C.CUDA_SUCCESS {
		return nil, fmt.Errorf("cuMemHostAlloc of %d bytes: CUDA error %d", bytes, int(r))
	}
	return p, nil
}

func hostFree(p unsafe.Pointer) { cu.MemFreeHost(p) }
