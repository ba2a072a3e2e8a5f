package torchfile

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// synthTensor builds a tensor over a storage of random bytes, without a file.
func synthTensor(dt string, storageElems int, shape, stride []int, offset int, rng *rand.Rand) *Tensor {
	es := elemSize[dt]
	data := make([]byte, storageElems*es)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	root := &rootStorage{key: "0", location: "cpu", dtype: dt, numel: storageElems, nbytes: len(data), data: data}
	return &Tensor{DType: dt, Shape: shape, Stride: stride, Offset: offset,
		storage: &storageView{root: root, n: len(data)}}
}

var allDTypes = []string{"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"}

// TestFloat32MatchesNaive compares the run-based reader with the
// one-element-at-a-time reference on seeded random layouts of every dtype.
func TestFloat32MatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for range 3000 {
		dt := allDTypes[rng.IntN(len(allDTypes))]
		rank := rng.IntN(5)
		shape, stride := make([]int, rank), make([]int, rank)
		for k := range rank {
			shape[k] = rng.IntN(5)
			stride[k] = rng.IntN(8)
		}
		if rng.IntN(3) == 0 { // make it contiguous: the bulk path
			s := 1
			for k := rank - 1; k >= 0; k-- {
				stride[k] = s
				s *= max(shape[k], 1)
			}
		}
		x := synthTensor(dt, 1+rng.IntN(200), shape, stride, rng.IntN(20), rng)
		fast, err := x.Float32()
		naive, nerr := x.float32Naive()
		if (err == nil) != (nerr == nil) {
			t.Fatalf("%s %v/%v: Float32 error %v, naive error %v", dt, shape, stride, err, nerr)
		}
		if err != nil {
			continue
		}
		checked++
		if len(fast) != x.Numel() || len(naive) != len(fast) {
			t.Fatalf("%s %v/%v: %d and %d values, want %d", dt, shape, stride, len(fast), len(naive), x.Numel())
		}
		for i := range fast {
			if !sameF32(fast[i], naive[i]) {
				t.Fatalf("%s shape %v stride %v offset %d: Float32()[%d] = %v, naive %v", dt, shape, stride, x.Offset, i, fast[i], naive[i])
			}
		}
		if ints, err := x.Int64(); err == nil {
			for i := range ints {
				if float32(ints[i]) != naive[i] {
					t.Fatalf("%s: Int64()[%d] = %d, naive float %v", dt, i, ints[i], naive[i])
				}
			}
		}
	}
	if checked < 500 {
		t.Errorf("only %d valid random layouts", checked)
	}
}

func TestConversions(t *testing.T) {
	// Each row: storage bytes (little-endian) and the float32 torch's .float() gives.
	cases := []struct {
		dt   string
		raw  []byte
		want float32
	}{
		{"float16", []byte{0x01, 0x00}, float32(math.Ldexp(1, -24))}, // smallest subnormal
		{"float16", []byte{0x00, 0x7c}, float32(math.Inf(1))},
		{"float16", []byte{0x00, 0x80}, float32(math.Copysign(0, -1))},
		{"bfloat16", []byte{0x80, 0x3f}, 1},
		{"float64", []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x7f}, float32(math.Inf(1))},
		{"int64", []byte{1, 0, 0, 1, 0, 0, 0, 0}, 16777216}, // 2^24+1 rounds to even
		{"int8", []byte{0xff}, -1},
		{"uint8", []byte{0xff}, 255},
		{"bool", []byte{2}, 1},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s_%x", tc.dt, tc.raw), func(t *testing.T) {
			x := synthTensor(tc.dt, 1, nil, nil, 0, rand.New(rand.NewPCG(0, 0)))
			copy(x.storage.root.data, tc.raw)
			got, err := x.Float32()
			if err != nil || len(got) != 1 || math.Float32bits(got[0]) != math.Float32bits(tc.want) {
				t.Errorf("Float32() = %v, %v; want [%v]", got, err, tc.want)
			}
		})
	}
}

// FuzzFloat32Layout checks the run-based reader against the reference on
// arbitrary layouts: both must agree, or both must refuse.
func FuzzFloat32Layout(f *testing.F) {
	f.Add(uint8(0), uint8(3), []byte{2, 3, 3, 1}, uint8(0))
	f.Add(uint8(2), uint8(40), []byte{4, 0, 3, 1}, uint8(5))
	f.Add(uint8(5), uint8(10), []byte{}, uint8(9))
	f.Fuzz(func(t *testing.T, dtIdx, storage uint8, dims []byte, offset uint8) {
		dt := allDTypes[int(dtIdx)%len(allDTypes)]
		if len(dims)%2 == 1 {
			dims = dims[:len(dims)-1]
		}
		if len(dims) > 12 {
			dims = dims[:12]
		}
		var shape, stride []int
		for i := 0; i < len(dims); i += 2 {
			shape = append(shape, int(dims[i]%9))
			stride = append(stride, int(int8(dims[i+1]))) // may be negative: must be refused
		}
		x := synthTensor(dt, int(storage), shape, stride, int(offset), rand.New(rand.NewPCG(1, 1)))
		x.maxExpanded = 1 << 16
		fast, err := x.Float32()
		naive, nerr := x.float32Naive()
		if (err == nil) != (nerr == nil) {
			t.Fatalf("Float32 error %v, naive error %v", err, nerr)
		}
		for i := range fast {
			if !sameF32(fast[i], naive[i]) {
				t.Fatalf("Float32()[%d] = %v, naive %v", i, fast[i], naive[i])
			}
		}
	})
}
