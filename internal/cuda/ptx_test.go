package cuda

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// kernels.ptx, which the CUDA build embeds, is made from kernels.cu by
// `make ptx` (nvcc), which CI cannot run. This test, in every build,
// catches a kernels.cu changed without `make ptx`: each kernel's name and
// parameter types (pointers and long long as .u64, int .u32, float .f32,
// double .f64) must be the same in both files, in the same order.
func TestPTXMatchesSource(t *testing.T) {
	ptx, err := os.ReadFile("kernels.ptx")
	if err != nil {
		t.Fatal(err)
	}
	var fromSource []string
	for _, m := range sourceKernels(t) {
		var types []string
		for _, p := range strings.Split(m[2], ",") {
			types = append(types, ptxType(t, m[1], p))
		}
		fromSource = append(fromSource, m[1]+"("+strings.Join(types, ",")+")")
	}
	var fromPTX []string
	param := regexp.MustCompile(`\.param \.(\w+) `)
	for _, m := range regexp.MustCompile(`\.entry (\w+)\(([^)]*)\)`).FindAllStringSubmatch(string(ptx), -1) {
		var types []string
		for _, p := range param.FindAllStringSubmatch(m[2], -1) {
			types = append(types, p[1])
		}
		fromPTX = append(fromPTX, m[1]+"("+strings.Join(types, ",")+")")
	}
	slices.Sort(fromSource)
	slices.Sort(fromPTX)
	if len(fromSource) == 0 || !slices.Equal(fromSource, fromPTX) {
		t.Errorf("kernels.ptx is not kernels.cu's (run make ptx):\nkernels.cu:  %v\nkernels.ptx: %v", fromSource, fromPTX)
	}
}

// kernelDecl matches a kernel of kernels.cu: its name and parameters.
var kernelDecl = regexp.MustCompile(`extern "C" __global__ void (\w+)\(([^)]*)\)`)

// sourceKernels returns kernels.cu's kernels, each as kernelDecl's match.
func sourceKernels(t *testing.T) [][]string {
	src, err := os.ReadFile("kernels.cu")
	if err != nil {
		t.Fatal(err)
	}
	return kernelDecl.FindAllStringSubmatch(string(src), -1)
}

// ptxType is the PTX parameter type of a kernel parameter declaration.
func ptxType(t *testing.T, kernel, decl string) string {
	decl = strings.TrimSpace(decl)
	switch {
	case strings.Contains(decl, "*"), strings.HasPrefix(decl, "long long "):
		return "u64"
	case strings.HasPrefix(decl, "int "):
		return "u32"
	case strings.HasPrefix(decl, "float "):
		return "f32"
	case strings.HasPrefix(decl, "double "):
		return "f64"
	}
	t.Fatalf("kernel %s: parameter %q of a type this test does not know", kernel, decl)
	return ""
}

// Every kernel of kernels.cu has a kernel-level test: its name, quoted, is
// in kernels_test.go (launched there, or named in the comment of the test
// that runs it through its Go caller).
func TestEveryKernelTested(t *testing.T) {
	tests, err := os.ReadFile("kernels_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sourceKernels(t) {
		if !strings.Contains(string(tests), `"`+m[1]+`"`) {
			t.Errorf("kernel %s has no test in kernels_test.go", m[1])
		}
	}
}
