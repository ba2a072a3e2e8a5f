package owt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// rngVectors is testdata/rng_vectors.json, written by numpy 1.24.2 with
// testdata/gen/gen_owt_rng.py (run it from the repository root to
// regenerate; it also says how the Hugging Face shuffle was reproduced
// without the datasets package).
type rngVectors struct {
	Fixture string `json:"fixture"`
	Version int    `json:"version"`
	Seeds   []struct {
		Seed          string   `json:"seed"`
		GenerateState []string `json:"generate_state"`
		State         string   `json:"state"`
		Inc           string   `json:"inc"`
		Next64        []string `json:"next64"`
		Next32        []uint32 `json:"next32"`
	} `json:"seeds"`
	Integers []struct {
		Seed        uint64   `json:"seed"`
		N           string   `json:"n"`
		Values      []string `json:"values"`
		Next64After string   `json:"next64_after"`
	} `json:"integers"`
	IntegersStream struct {
		Seed   uint64 `json:"seed"`
		N      uint64 `json:"n"`
		First  []int  `json:"first"`
		At1000 []int  `json:"at1000"`
		SHA256 string `json:"sha256"`
		Count  int    `json:"count"`
	} `json:"integers_stream"`
	Shuffle []struct {
		Seed        uint64 `json:"seed"`
		N           int    `json:"n"`
		Perm        []int  `json:"perm"`
		SHA256      string `json:"sha256"`
		Next64After string `json:"next64_after"`
	} `json:"shuffle"`
	HFStream []hfStreamCase `json:"hf_stream"`
}

type hfStreamCase struct {
	Name       string  `json:"name"`
	Seed       uint64  `json:"seed"`
	Buffer     int     `json:"buffer"`
	ShardSizes []int   `json:"shard_sizes"`
	Count      int     `json:"count"`
	SHA256     string  `json:"sha256"`
	Head       []int64 `json:"head"`
	Tail       []int64 `json:"tail"`
	Full       []int64 `json:"full"`
}

func loadRNGVectors(t testing.TB) *rngVectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "rng_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v rngVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Fixture != "owt-rng-vectors" || v.Version != 1 {
		t.Fatalf("rng_vectors.json: fixture %q version %d, want owt-rng-vectors 1 (rerun testdata/gen/gen_owt_rng.py)", v.Fixture, v.Version)
	}
	return &v
}

func mustU64(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func u128(hi, lo uint64) *big.Int {
	v := new(big.Int).SetUint64(hi)
	v.Lsh(v, 64)
	return v.Or(v, new(big.Int).SetUint64(lo))
}

// digest is the SHA-256 of the little-endian int64 encoding, as the
// generator script computes it.
func digest[T int | int64](seq []T) string {
	h := sha256.New()
	var b [8]byte
	for _, v := range seq {
		binary.LittleEndian.PutUint64(b[:], uint64(int64(v)))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestSpecVectors checks values of numpy 1.24's PCG64 stream for seed 42,
// copied from numpy when these tests were written.
func TestSpecVectors(t *testing.T) {
	if got, want := SeedState(42), [4]uint64{0x9f1e2e6dcd540ab7, 0xd57873dc79fb94b6, 0x7d282a1b64d420b7, 0x336579714692d5ff}; got != want {
		t.Errorf("SeedState(42) = %#x, want %#x", got, want)
	}
	g := NewGenerator(42)
	if got, want := u128(g.stateHi, g.stateLo).String(), "274674114334540486603088602300644985544"; got != want {
		t.Errorf("state = %s, want %s", got, want)
	}
	if got, want := u128(g.incHi, g.incLo).String(), "332724090758049132448979897138935081983"; got != want {
		t.Errorf("inc = %s, want %s", got, want)
	}
	for i, want := range []uint64{0xc621fbcd16d92688, 0x705a5661a791ffc1, 0xdbcd12c26eda1624, 0xb286b60e1600888d} {
		if got := g.Next64(); got != want {
			t.Errorf("next64 #%d = %#x, want %#x", i, got, want)
		}
	}
	g = NewGenerator(42)
	var ints []int
	for range 1005 {
		ints = append(ints, int(g.Integers(10000)))
	}
	if want := []int{892, 7739, 6545, 4388, 4330, 8585, 859, 6973, 2014, 941, 5264, 9756, 7357, 7611, 7174, 7860, 5132, 1281, 8397, 4503}; !reflect.DeepEqual(ints[:20], want) {
		t.Errorf("integers(0, 10000)[:20] = %v, want %v", ints[:20], want)
	}
	if want := []int{8083, 7367, 5583, 8864, 1282}; !reflect.DeepEqual(ints[1000:], want) {
		t.Errorf("integers(0, 10000)[1000:1005] = %v, want %v", ints[1000:], want)
	}
	if got, want := ShardOrder(21, 42), []int{16, 10, 15, 20, 12, 14, 7, 6, 9, 3, 0, 17, 5, 11, 19, 2, 4, 18, 1, 13, 8}; !reflect.DeepEqual(got, want) {
		t.Errorf("ShardOrder(21, 42) = %v, want %v", got, want)
	}
}

func TestSeedsAgainstNumpy(t *testing.T) {
	v := loadRNGVectors(t)
	for _, s := range v.Seeds {
		t.Run("seed="+s.Seed, func(t *testing.T) {
			seed := mustU64(t, s.Seed)
			st := SeedState(seed)
			for k, w := range s.GenerateState {
				if st[k] != mustU64(t, w) {
					t.Errorf("SeedState(%d)[%d] = %#x, want %s", seed, k, st[k], w)
				}
			}
			g := NewGenerator(seed)
			if got := u128(g.stateHi, g.stateLo).String(); got != s.State {
				t.Errorf("state = %s, want %s", got, s.State)
			}
			if got := u128(g.incHi, g.incLo).String(); got != s.Inc {
				t.Errorf("inc = %s, want %s", got, s.Inc)
			}
			for i, w := range s.Next64 {
				if got := g.Next64(); got != mustU64(t, w) {
					t.Errorf("next64 #%d = %#x, want %s", i, got, w)
				}
			}
			g = NewGenerator(seed)
			for i, w := range s.Next32 {
				if got := g.Next32(); got != w {
					t.Errorf("next32 #%d = %d, want %d", i, got, w)
				}
			}
		})
	}
}

func TestIntegersAgainstNumpy(t *testing.T) {
	v := loadRNGVectors(t)
	for _, c := range v.Integers {
		t.Run(fmt.Sprintf("seed=%d/n=%s", c.Seed, c.N), func(t *testing.T) {
			g := NewGenerator(c.Seed)
			var n uint64
			if c.N == "18446744073709551616" { // 2^64: numpy's full 64-bit range
				for _, w := range c.Values {
					if got := g.Next64(); got != mustU64(t, w) {
						t.Errorf("next64 = %d, want %s", got, w)
					}
				}
			} else {
				n = mustU64(t, c.N)
				for i, w := range c.Values {
					if got := g.Integers(n); got != mustU64(t, w) {
						t.Errorf("Integers(%d) #%d = %d, want %s", n, i, got, w)
					}
				}
			}
			// numpy's random_raw, like Next64, leaves a saved 32-bit half
			// alone: this pins how many 64-bit words were consumed.
			if got, want := g.Next64(), mustU64(t, c.Next64After); got != want {
				t.Errorf("next64 after = %#x, want %#x", got, want)
			}
		})
	}
	s := v.IntegersStream
	g := NewGenerator(s.Seed)
	seq := make([]int, s.Count)
	for i := range seq {
		seq[i] = int(g.Integers(s.N))
	}
	if !reflect.DeepEqual(seq[:20], s.First) || !reflect.DeepEqual(seq[1000:1005], s.At1000) {
		t.Errorf("integers stream head %v / at 1000 %v, want %v / %v", seq[:20], seq[1000:1005], s.First, s.At1000)
	}
	if got := digest(seq); got != s.SHA256 {
		t.Errorf("integers stream sha256 = %s, want %s", got, s.SHA256)
	}
}

func TestShuffleAgainstNumpy(t *testing.T) {
	v := loadRNGVectors(t)
	for _, c := range v.Shuffle {
		t.Run(fmt.Sprintf("seed=%d/n=%d", c.Seed, c.N), func(t *testing.T) {
			perm := make([]int, c.N)
			for i := range perm {
				perm[i] = i
			}
			g := NewGenerator(c.Seed)
			g.Shuffle(c.N, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			if c.Perm != nil && !reflect.DeepEqual(perm, c.Perm) {
				t.Errorf("shuffle(range(%d)) = %v, want %v", c.N, perm, c.Perm)
			}
			if got := digest(perm); got != c.SHA256 {
				t.Errorf("shuffle(range(%d)) sha256 = %s, want %s", c.N, got, c.SHA256)
			}
			if got, want := g.Next64(), mustU64(t, c.Next64After); got != want {
				t.Errorf("next64 after = %#x, want %#x", got, want)
			}
			if c.Perm != nil && !reflect.DeepEqual(ShardOrder(c.N, c.Seed), c.Perm) {
				t.Errorf("ShardOrder(%d, %d) = %v, want %v", c.N, c.Seed, ShardOrder(c.N, c.Seed), c.Perm)
			}
		})
	}
}

// hfStreamInts runs the shard permutation and the buffer shuffle over
// integer documents (shard k's j-th document is k·1e6 + j), as the
// generator script does in Python.
func hfStreamInts(seed uint64, buffer int, sizes []int) []int64 {
	var out []int64
	g := NewGenerator(seed)
	sh := newBufferShuffle[int64](g, buffer)
	for _, k := range ShardOrder(len(sizes), seed) {
		for j := range sizes[k] {
			if x, ok := sh.Add(int64(k)*1_000_000 + int64(j)); ok {
				out = append(out, x)
			}
		}
	}
	return append(out, sh.Finish()...)
}

func checkStream(t *testing.T, c hfStreamCase, got []int64) {
	t.Helper()
	if len(got) != c.Count {
		t.Fatalf("%s: %d documents, want %d", c.Name, len(got), c.Count)
	}
	if c.Full != nil && !reflect.DeepEqual(got, c.Full) {
		t.Errorf("%s: order = %v, want %v", c.Name, got, c.Full)
	}
	n := min(64, len(got))
	if !reflect.DeepEqual(got[:n], c.Head) || !reflect.DeepEqual(got[len(got)-n:], c.Tail) {
		t.Errorf("%s: head %v tail %v, want %v %v", c.Name, got[:n], got[len(got)-n:], c.Head, c.Tail)
	}
	if d := digest(got); d != c.SHA256 {
		t.Errorf("%s: sha256 %s, want %s", c.Name, d, c.SHA256)
	}
}

func TestBufferShuffleAgainstPython(t *testing.T) {
	v := loadRNGVectors(t)
	for _, c := range v.HFStream {
		t.Run(c.Name, func(t *testing.T) {
			checkStream(t, c, hfStreamInts(c.Seed, c.Buffer, c.ShardSizes))
		})
	}
}

func TestIntervalRange(t *testing.T) {
	g := NewGenerator(1)
	for _, hi := range []uint64{0, 1, 2, 3, 5, 1 << 31, 1<<32 - 1, 1 << 32, 1<<40 + 7, 1<<63 + 1, ^uint64(0)} {
		for range 200 {
			if v := g.Interval(hi); v > hi {
				t.Fatalf("Interval(%d) = %d, want ≤ %d", hi, v, hi)
			}
		}
	}
}

func TestGeneratorIsAValue(t *testing.T) {
	g := NewGenerator(42)
	g.Next32() // leave a saved half behind
	c := g
	if a, b := g.Next32(), c.Next32(); a != b {
		t.Errorf("copy diverged: %d vs %d", a, b)
	}
	if a, b := g.Next64(), c.Next64(); a != b {
		t.Errorf("copy diverged: %d vs %d", a, b)
	}
}
