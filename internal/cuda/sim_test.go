//go:build cudasim

package cuda

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// CUDASIM_ORDER=reverse runs each block's threads last to first (make
// test-sim runs the fixture and kernel tests both ways).
func init() { setReverseOrder(os.Getenv("CUDASIM_ORDER") == "reverse") }

// Every kernel of kernels.cu is in kernelNames (what the real driver
// loads) and in kernels_sim.cc's table (openDriver checks each name of
// kernelNames there), and kernelNames has no other.
func TestSimHasEveryKernel(t *testing.T) {
	var inSource []string
	for _, m := range sourceKernels(t) {
		inSource = append(inSource, m[1])
	}
	got, want := slices.Sorted(slices.Values(kernelNames)), slices.Sorted(slices.Values(inSource))
	if !slices.Equal(got, want) {
		t.Errorf("kernelNames %v, kernels.cu defines %v", got, want)
	}
}

// The emulation turns misuses a GPU may forgive into launch errors:
// threads released from different __syncthreads, a shuffle that some
// lanes of the warp skip, a launch with the wrong number or kinds of
// arguments (the real driver takes an int's bits for a float), or too
// many threads. (The two test kernels are kernels_sim.cc's own.)
func TestSimReportsMisuse(t *testing.T) {
	defer dev.enter()()
	out, err := dev.alloc("out", 64*4)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.free(&out)
	for _, c := range []struct {
		kernel       string
		block        int
		args         []any
		want, reason string
	}{
		{"sim_test_split_barrier", 64, []any{out}, "different __syncthreads", "threads split between two barriers"},
		{"sim_test_partial_shuffle", 32, []any{out}, "lanes its mask names have exited", "half a warp shuffles"},
		{"add_inplace", 32, []any{out, out}, "takes 3 arguments, 2 given", "a missing argument"},
		{"add_inplace", 2048, []any{out, out, 1}, "a block of 2048 threads", "too many threads"},
		{"add_inplace", 32, []any{out, out, int64(1)}, "argument 2 is of kind 'l'", "a long long for an int"},
		{"layernorm_pre", 32, []any{out, out, 16, 1}, "argument 3 is of kind 'i'", "an int for a float"},
	} {
		err := dev.launch(c.kernel, 1, c.block, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %s: got %v, want an error saying %q", c.kernel, c.reason, err, c.want)
		} else {
			t.Logf("%s: %v", c.reason, err)
		}
	}
}

// Shared memory starts each block as 0xff bytes (NaN), not as the block
// before left it: a kernel that reads shared memory it did not write
// shows in the tests, as it would on a GPU (kernels_sim.cc's test kernel
// writes it in block 0 only).
func TestSimPoisonsShared(t *testing.T) {
	defer dev.enter()()
	out := scratch[float32](t, 2)
	launchSync(t, "sim_test_stale_shared", 2, 32, out)
	got := download[float32](t, out, 2)
	if got[0] != 1 || !math.IsNaN(float64(got[1])) {
		t.Errorf("block 0 read %v, block 1 %v; want 1 and NaN (0xff bytes)", got[0], got[1])
	}
}
