//go:build cuda || cudasim

package cuda

import (
	"cmp"
	"fmt"
	"slices"
)

// ProfStat is the device time of one kernel, or of the GEMMs of one
// shape, over a profile.
type ProfStat struct {
	Name  string
	Calls int
	Ms    float64 // total milliseconds
}

// profiler times each launch and GEMM between two events recorded on the
// stream before and after it (the device's own clock: the host does not
// wait), read when the profile stops.
type profiler struct {
	marks []mark
	err   error // the first event that failed
}

type mark struct {
	name       string
	start, end timer
}

// StartProfile times every kernel launch and GEMM from now on, until
// StopProfile (a profile already running starts again). The events cost a
// few microseconds per launch; copies and memsets are not timed.
func (d *Device) StartProfile() {
	if d.prof != nil {
		defer d.enter()()
		d.prof.free()
	}
	d.prof = &profiler{}
}

// free destroys the profile's events.
func (p *profiler) free() {
	for i := range p.marks {
		destroyTimer(&p.marks[i].start)
		destroyTimer(&p.marks[i].end)
	}
	p.marks = nil
}

// StopProfile waits for the device and returns the time per kernel and
// per GEMM shape since StartProfile, longest first.
func (d *Device) StopProfile() ([]ProfStat, error) {
	p := d.prof
	d.prof = nil
	if p == nil {
		return nil, fmt.Errorf("cuda: no profile was started")
	}
	defer d.enter()()
	defer p.free()
	if p.err != nil {
		return nil, p.err
	}
	by := map[string]*ProfStat{}
	for _, m := range p.marks {
		ms, err := elapsedMs(m.start, m.end)
		if err != nil {
			return nil, fmt.Errorf("cuda: profile: %v", err)
		}
		s := by[m.name]
		if s == nil {
			s = &ProfStat{Name: m.name}
			by[m.name] = s
		}
		s.Calls++
		s.Ms += ms
	}
	out := make([]ProfStat, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ProfStat) int { return cmp.Or(cmp.Compare(b.Ms, a.Ms), cmp.Compare(a.Name, b.Name)) })
	return out, nil
}

// begin records the start of a timed operation; nil when not profiling.
func (p *profiler) begin(name string) *mark {
	if p == nil || p.err != nil {
		return nil
	}
	m := mark{name: name}
	var err error
	if m.start, err = newTimer(); err == nil {
		p.marks = append(p.marks, m) // from here on free destroys it
		if m.end, err = newTimer(); err == nil {
			p.marks[len(p.marks)-1].end = m.end
			err = recordTimer(m.start)
		}
	}
	if err != nil {
		p.err = fmt.Errorf("cuda: profile: %v", err)
		return nil
	}
	return &p.marks[len(p.marks)-1]
}

// end records the end of the operation begin started.
func (p *profiler) end(m *mark) {
	if m == nil {
		return
	}
	if err := recordTimer(m.end); err != nil && p.err == nil {
		p.err = fmt.Errorf("cuda: profile: %v", err)
	}
}

// gemm is cublas.gemm, timed when profiling.
func (d *Device) gemm(ta, tb bool, m, n, k int, alpha float32, a devPtr, lda int, b devPtr, ldb int, beta float32, c devPtr, ldc int) error {
	return d.timedGemm("gemm", ta, tb, m, n, k, 1, func() error {
		return d.blas.gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	})
}

// gemm64 is cublas.gemm64, timed when profiling.
func (d *Device) gemm64(ta, tb bool, m, n, k int, alpha float64, a devPtr, lda int, b devPtr, ldb int, beta float64, c devPtr, ldc int) error {
	return d.timedGemm("dgemm", ta, tb, m, n, k, 1, func() error {
		return d.blas.gemm64(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	})
}

// gemmBatched is cublas.gemmBatched, timed when profiling.
func (d *Device) gemmBatched(ta, tb bool, m, n, k int, alpha float32, a devPtr, lda, sa int, b devPtr, ldb, sb int, beta float32, c devPtr, ldc, sc, count int) error {
	return d.timedGemm("batched gemm", ta, tb, m, n, k, count, func() error {
		return d.blas.gemmBatched(ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, count)
	})
}

// timedGemm runs a GEMM, between events when profiling.
func (d *Device) timedGemm(kind string, ta, tb bool, m, n, k, count int, run func() error) error {
	var mk *mark
	if d.prof != nil {
		mk = d.prof.begin(gemmName(kind, ta, tb, m, n, k, count))
	}
	err := run()
	d.prof.end(mk)
	return err
}

// gemmName names a GEMM by its transposes and shape: "gemm NT 8192×3072×768".
func gemmName(kind string, ta, tb bool, m, n, k, count int) string {
	op := func(t bool) string {
		if t {
			return "T"
		}
		return "N"
	}
	if count > 1 {
		return fmt.Sprintf("%s %s%s %d × %d×%d×%d", kind, op(ta), op(tb), count, m, n, k)
	}
	return fmt.Sprintf("%s %s%s %d×%d×%d", kind, op(ta), op(tb), m, n, k)
}
