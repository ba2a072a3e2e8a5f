package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkGeluNew measures gelu_new over one MLP activation of B·T = 4096
// tokens × 3072: GeluNew as dispatched ("fast": the AVX2+FMA kernel where
// the CPU has it), GeluNew held to its pure-Go path ("go"), and the float64
// math.Tanh reference, in the same run.
func BenchmarkGeluNew(b *testing.B) {
	src := randSlice(rand.New(rand.NewPCG(1, 1)), 4096*3072, 1)
	dst := make([]float32, len(src))
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			GeluNew(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
	b.Run("go", func(b *testing.B) {
		saved := useGeluAsm
		useGeluAsm = false
		defer func() { useGeluAsm = saved }()
		for b.Loop() {
			GeluNew(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
	b.Run("naive", func(b *testing.B) {
		for b.Loop() {
			GeluNewNaive(dst, src)
		}
		b.ReportMetric(float64(len(src)*b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	})
}

// BenchmarkMatMul measures MatMul at the forward pass's GEMM shapes
// (B·T = 4096 rows): QKV, MLP in, MLP out, and the transcoder encoder.
// "shape" is MatMul, whose cut into parts depends on the shape alone;
// "threads" is the cut it replaced, one part per GOMAXPROCS (columns when
// n ≥ 2048, else rows, at least 64 each), as the same-run baseline of what
// reproducibility across thread counts costs.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, sh := range [][3]int{{4096, 768, 2304}, {4096, 768, 3072}, {4096, 3072, 768}, {256, 768, 24576}, {512, 768, 24576}, {1024, 768, 24576}} {
		m, k, n := sh[0], sh[1], sh[2]
		a, w, dst := randSlice(r, m*k, 1), randSlice(r, k*n, 1), make([]float32, m*n)
		for _, policy := range []string{"shape", "threads"} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, k, n, policy), func(b *testing.B) {
				sp := splitFor(m, n)
				if policy == "threads" {
					sp = threadSplit(m, n)
				}
				for b.Loop() {
					matMulSplit(dst, a, w, m, k, n, 0, sp)
				}
				b.ReportMetric(2*float64(m*k*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// threadSplit is the cut MatMul made before splitFor: one part per
// GOMAXPROCS, by columns for wide products, else by rows.
func threadSplit(m, n int) split {
	p := runtime.GOMAXPROCS(0)
	switch {
	case p > 1 && n >= 2048 && n/p >= 64:
		return split{cols: p}
	case p > 1 && m/p >= 64:
		return split{rows: p}
	}
	return split{}
}

// BenchmarkAdamWUpdate measures one AdamW step over the midcoder's
// 24576 × 768 = 18,874,368 parameters of W_mid in one call on one core:
// Update as dispatched ("asm": the AVX kernel where the CPU has it) and
// held to updateGo ("go"), in the same run. GB/s counts the 28 bytes each
// element moves (θ, m, v, g read; θ, m, v written).
//
// Every gradient is nonzero and each sub-benchmark starts from the same
// state: repeated steps then keep m and v near g and g², whereas a zero
// gradient decays m by β1 per step into float32 subnormals after a few
// hundred steps, whose arithmetic is several times slower on x86 (in both
// paths) and would make the timings depend on how many steps came before.
func BenchmarkAdamWUpdate(b *testing.B) {
	const n = 24576 * 768
	theta0, m0, v0, g := adamwState(rand.New(rand.NewPCG(3, 3)), n)
	for i := range g {
		if g[i] == 0 {
			g[i] = 1e-3
		}
	}
	theta, m, v := make([]float32, n), make([]float32, n), make([]float32, n)
	k := TorchAdamWStep(1e-3, 0.01, beta1, beta2, eps, 100)
	run := func(b *testing.B, asm bool) {
		saved := useAdamWAsm
		useAdamWAsm = asm && hasAVX2FMA
		defer func() { useAdamWAsm = saved }()
		copy(theta, theta0)
		copy(m, m0)
		copy(v, v0)
		for b.Loop() {
			k.Update(theta, m, v, g)
		}
		s := b.Elapsed().Seconds()
		b.ReportMetric(s*1e9/float64(n*b.N), "ns/elem")
		b.ReportMetric(28*float64(n*b.N)/s/1e9, "GB/s")
	}
	b.Run("asm", func(b *testing.B) { run(b, true) })
	b.Run("go", func(b *testing.B) { run(b, false) })
}

// axpyPlain is y += a·x as a plain Go loop, for BenchmarkAxpy.
func axpyPlain(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// BenchmarkAxpy measures one row-length AXPY of the midcoder's sparse
// products (C = 768, in L1): Axpy as dispatched ("asm": the AVX2+FMA
// kernel where the CPU has it), gonum's Saxpy ("gonum", the fallback) and
// a plain Go loop ("go"), in the same run.
func BenchmarkAxpy(b *testing.B) {
	const n = 768
	r := rand.New(rand.NewPCG(4, 4))
	x, y := randSlice(r, n, 1), randSlice(r, n, 1)
	const a = 1e-6 // y stays finite and normal over any b.N
	report := func(b *testing.B) {
		b.ReportMetric(2*float64(n*b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	}
	b.Run("asm", func(b *testing.B) {
		for b.Loop() {
			Axpy(y, a, x)
		}
		report(b)
	})
	b.Run("gonum", func(b *testing.B) {
		for b.Loop() {
			axpyGo(y, a, x)
		}
		report(b)
	})
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			axpyPlain(y, a, x)
		}
		report(b)
	})
}

// BenchmarkCrossEntropyRows is evaluate's loss over GPT-2's vocabulary:
// 64 rows of 50,257 logits, with the assembly kernel and the Go loop.
func BenchmarkCrossEntropyRows(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 7))
	m, v := 64, 50257
	logits := randSlice(r, m*v, 3)
	target := make([]int32, m)
	loss := make([]float32, m)
	saved := useExpSumAsm
	defer func() { useExpSumAsm = saved }()
	for _, asm := range []bool{true, false} {
		if asm && !hasAVX2FMA {
			continue
		}
		b.Run(map[bool]string{true: "asm", false: "go"}[asm], func(b *testing.B) {
			useExpSumAsm = asm
			for b.Loop() {
				CrossEntropyRows(loss, logits, target, m, v)
			}
			b.ReportMetric(float64(m*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
