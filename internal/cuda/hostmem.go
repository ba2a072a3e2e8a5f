//go:build cuda || cudasim

package cuda

import (
	"fmt"
	"sync"
	"unsafe"
)

// hostMem is a Device's page-locked host allocations, by address.
type hostMem struct {
	sync.Mutex
	m map[uintptr]int // start → bytes
}

// HostFloats returns n float32 of page-locked ("pinned") host memory: the
// GPU copies into it by DMA at the link's full speed, and a copy into it
// can run on a stream of its own while kernels run (Forward.Run does so).
// The memory is not Go's: free it with FreeHostFloats once nothing uses
// it.
func (d *Device) HostFloats(n int) ([]float32, error) {
	if n <= 0 {
		return nil, fmt.Errorf("cuda: %d page-locked floats asked", n)
	}
	defer d.enter()()
	p, err := hostAlloc(int64(n) * 4)
	if err != nil {
		return nil, fmt.Errorf("cuda: allocating %.1f MiB of page-locked host memory: %v", mib(int64(n)*4), err)
	}
	d.host.Lock()
	defer d.host.Unlock()
	if d.host.m == nil {
		d.host.m = map[uintptr]int{}
	}
	d.host.m[uintptr(p)] = n * 4
	return unsafe.Slice((*float32)(p), n), nil
}

// FreeHostFloats frees memory HostFloats returned.
func (d *Device) FreeHostFloats(s []float32) {
	p := unsafe.Pointer(unsafe.SliceData(s))
	d.host.Lock()
	_, ok := d.host.m[uintptr(p)]
	delete(d.host.m, uintptr(p))
	d.host.Unlock()
	if !ok {
		panic("cuda: FreeHostFloats of memory HostFloats did not return")
	}
	defer d.enter()()
	hostFree(p)
}

// pinned reports whether s lies within memory HostFloats returned.
func (d *Device) pinned(s []float32) bool {
	if len(s) == 0 {
		return false
	}
	p, end := uintptr(unsafe.Pointer(&s[0])), uintptr(unsafe.Pointer(&s[0]))+uintptr(len(s))*4
	d.host.Lock()
	defer d.host.Unlock()
	for start, bytes := range d.host.m {
		if p >= start && end <= start+uintptr(bytes) {
			return true
		}
	}
	return false
}
