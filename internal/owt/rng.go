package owt

import "math/bits"

// SeedSequence constants, numpy/random/bit_generator.pyx (pool size 4,
// 32-bit words, XSHIFT = 16).
const (
	ssInitA    = 0x43b0d7e5
	ssMultA    = 0x931e8875
	ssInitB    = 0x8b51f9dd
	ssMultB    = 0x58f38ded
	ssMixMultL = 0xca01f9dd
	ssMixMultR = 0x4973f715
	ssXShift   = 16
	ssPoolSize = 4
)

// SeedState returns numpy's SeedSequence(seed).generate_state(4, np.uint64):
// the four words PCG64 is seeded with.
func SeedState(seed uint64) [4]uint64 {
	// The entropy is the seed as little-endian 32-bit words, at least one.
	entropy := []uint32{uint32(seed)}
	if seed>>32 != 0 {
		entropy = append(entropy, uint32(seed>>32))
	}
	return seedState(entropy)
}

// seedState is SeedSequence with an arbitrary entropy word list and no spawn
// key.
func seedState(entropy []uint32) [4]uint64 {
	hc := uint32(ssInitA)
	hashmix := func(v uint32) uint32 {
		v ^= hc
		hc *= ssMultA
		v *= hc
		v ^= v >> ssXShift
		return v
	}
	mix := func(x, y uint32) uint32 {
		r := ssMixMultL*x - ssMixMultR*y
		return r ^ r>>ssXShift
	}
	var pool [ssPoolSize]uint32
	for i := range pool {
		var e uint32
		if i < len(entropy) {
			e = entropy[i]
		}
		pool[i] = hashmix(e)
	}
	for src := range pool {
		for dst := range pool {
			if src != dst {
				pool[dst] = mix(pool[dst], hashmix(pool[src]))
			}
		}
	}
	for src := ssPoolSize; src < len(entropy); src++ {
		for dst := range pool {
			pool[dst] = mix(pool[dst], hashmix(entropy[src]))
		}
	}
	var words [8]uint32
	hb := uint32(ssInitB)
	for i := range words {
		w := pool[i%ssPoolSize]
		w ^= hb
		hb *= ssMultB
		w *= hb
		w ^= w >> ssXShift
		words[i] = w
	}
	var out [4]uint64
	for k := range out {
		out[k] = uint64(words[2*k]) | uint64(words[2*k+1])<<32
	}
	return out
}

// PCG64 multiplier (numpy pcg64.h PCG_DEFAULT_MULTIPLIER_128).
const (
	pcgMultHi = 0x2360ED051FC65DA4
	pcgMultLo = 0x4385DF649FCCF645
)

// Generator is numpy's Generator(PCG64(seed)) as far as the Hugging Face
// shuffle uses it: the raw 64- and 32-bit draws, integers(0, n) and
// shuffle. A Generator is a value: assigning it copies the whole state, which
// is what Python's copy.deepcopy(generator) does.
type Generator struct {
	stateHi, stateLo uint64 // 128-bit LCG state
	incHi, incLo     uint64 // 128-bit odd increment
	hasU32           bool   // a saved high half from the last next32 draw
	u32              uint32
}

// NewGenerator returns numpy.random.default_rng(seed).
func NewGenerator(seed uint64) Generator {
	s := SeedState(seed)
	return newPCG64(s)
}

func newPCG64(s [4]uint64) Generator {
	var g Generator
	// inc = initseq<<1 | 1 with initseq = s2<<64 | s3.
	g.incHi = s[2]<<1 | s[3]>>63
	g.incLo = s[3]<<1 | 1
	g.step()
	var c uint64
	g.stateLo, c = bits.Add64(g.stateLo, s[1], 0)
	g.stateHi, _ = bits.Add64(g.stateHi, s[0], c)
	g.step()
	return g
}

// step advances the LCG: state = state·MULT + inc (mod 2^128).
func (g *Generator) step() {
	hi, lo := bits.Mul64(g.stateLo, pcgMultLo)
	hi += g.stateHi*pcgMultLo + g.stateLo*pcgMultHi
	var c uint64
	lo, c = bits.Add64(lo, g.incLo, 0)
	hi, _ = bits.Add64(hi, g.incHi, c)
	g.stateHi, g.stateLo = hi, lo
}

// Next64 returns the next raw 64-bit output (PCG XSL-RR 128/64).
func (g *Generator) Next64() uint64 {
	g.step()
	x := g.stateHi ^ g.stateLo
	return bits.RotateLeft64(x, -int(g.stateHi>>58))
}

// Next32 returns the next raw 32-bit output: the low half of a fresh 64-bit
// draw, whose high half is saved for the following call.
func (g *Generator) Next32() uint32 {
	if g.hasU32 {
		g.hasU32 = false
		return g.u32
	}
	v := g.Next64()
	g.hasU32 = true
	g.u32 = uint32(v >> 32)
	return uint32(v)
}

// Integers returns one value of numpy's rng.integers(0, n) (dtype int64,
// Lemire's method, numpy distributions.c random_bounded_uint64_fill). Drawing
// size=k values at once is the same as k calls. n must be at least 1.
func (g *Generator) Integers(n uint64) uint64 {
	if n == 0 {
		panic("owt: Integers(0)")
	}
	rng := n - 1
	switch {
	case rng == 0:
		return 0 // numpy returns the offset without drawing
	case rng == 0xFFFFFFFF:
		return uint64(g.Next32())
	case rng < 0xFFFFFFFF:
		return uint64(g.lemire32(uint32(rng)))
	default: // rng < 2⁶⁴−1, since n ≥ 1
		return g.lemire64(rng)
	}
}

// lemire32 is buffered_bounded_lemire_uint32: a uniform value in [0, rng].
func (g *Generator) lemire32(rng uint32) uint32 {
	excl := rng + 1
	m := uint64(g.Next32()) * uint64(excl)
	left := uint32(m)
	if left < excl {
		threshold := (^uint32(0) - rng) % excl
		for left < threshold {
			m = uint64(g.Next32()) * uint64(excl)
			left = uint32(m)
		}
	}
	return uint32(m >> 32)
}

// lemire64 is bounded_lemire_uint64: a uniform value in [0, rng].
func (g *Generator) lemire64(rng uint64) uint64 {
	excl := rng + 1
	hi, lo := bits.Mul64(g.Next64(), excl)
	if lo < excl {
		threshold := (^uint64(0) - rng) % excl
		for lo < threshold {
			hi, lo = bits.Mul64(g.Next64(), excl)
		}
	}
	return hi
}

// Interval returns a uniform value in [0, hi] by masked rejection (numpy
// random_interval), the draw behind Generator.shuffle.
func (g *Generator) Interval(hi uint64) uint64 {
	if hi == 0 {
		return 0
	}
	mask := uint64(1)<<bits.Len64(hi) - 1
	if hi <= 0xFFFFFFFF {
		for {
			if v := uint64(g.Next32()) & mask; v <= hi {
				return v
			}
		}
	}
	for {
		if v := g.Next64() & mask; v <= hi {
			return v
		}
	}
}

// Shuffle permutes n items in place as numpy's rng.shuffle(x) does
// (Fisher–Yates from the end), calling swap(i, j) for every step, including
// i == j.
func (g *Generator) Shuffle(n int, swap func(i, j int)) {
	for i := n - 1; i >= 1; i-- {
		j := int(g.Interval(uint64(i)))
		swap(i, j)
	}
}

// ShardOrder returns the shard permutation the Hugging Face streaming
// shuffle applies to a list of n shards (data files) for a seed:
// perm = list(range(n)); default_rng(seed).shuffle(perm). Shard k of the
// shuffled stream is original shard perm[k].
func ShardOrder(n int, seed uint64) []int {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	g := NewGenerator(seed)
	g.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	return perm
}
