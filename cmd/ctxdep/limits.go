package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Bounds of numeric flags: the arithmetic every command uses to check its
// flags before it allocates anything, so that an extreme value is a usage
// error naming the flag, never an overflow, a panic or an out-of-memory
// crash.

// maxRowTokens bounds --max-length, the tokens of one row: 2^20, a
// thousand times GPT-2's context of 1024 (the model commands bound it by
// the model's context as well).
const maxRowTokens = 1 << 20

// minThreadsBound is the least --threads allows on any machine; above it,
// up to four threads per core.
const minThreadsBound = 64

// maxThreads is the largest --threads: four per core, and at least
// minThreadsBound (Go stops a program at 10,000 threads).
func maxThreads() int { return max(4*runtime.NumCPU(), minThreadsBound) }

// checkThreads checks --threads: 0 (all cores) or a count up to maxThreads.
func checkThreads(n int) error {
	switch {
	case n < 0:
		return usagef("--threads %d: want a positive count (0, the default, uses all cores)", n)
	case n > maxThreads():
		return usagef("--threads %d: want at most %d on this machine of %d cores (0, the default, uses all of them)", n, maxThreads(), runtime.NumCPU())
	}
	return nil
}

// mulInt64 returns the product of factors, none negative, and false when
// it does not fit in an int64 (or a factor is negative).
func mulInt64(factors ...int64) (int64, bool) {
	for _, f := range factors {
		if f == 0 {
			return 0, true
		}
	}
	p := int64(1)
	for _, f := range factors {
		if f < 0 || p > math.MaxInt64/f {
			return 0, false
		}
		p *= f
	}
	return p, true
}

// fallbackMemory stands for the machine's memory where /proc/meminfo
// cannot be read: 1 TiB, so that only absurd sizes are refused there.
const fallbackMemory int64 = 1 << 40

// memLimit is the memory a command may use, and what sets it, as the
// error says: "this machine has" or "this process's cgroup allows".
type memLimit struct {
	bytes int64
	what  string
}

// machineMemory returns the memory ctxdep may use: MemTotal of
// /proc/meminfo (or fallbackMemory), or its cgroup's limit where that is
// lower (a Slurm job's --mem, a Kubernetes pod's limit, docker --memory:
// past it the kernel kills the process). It is read once.
var machineMemory = sync.OnceValue(func() memLimit {
	m := memLimit{fallbackMemory, "this machine has"}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if n, ok := memTotal(b); ok {
			m.bytes = n
		}
	}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		if n, ok := cgroupMemory("/sys/fs/cgroup", b); ok && n < m.bytes {
			m = memLimit{n, "this process's cgroup allows"}
		}
	}
	return m
})

// cgroupMemory returns the lowest memory limit of the cgroups that
// procCgroup (/proc/self/cgroup) names and their ancestors, under root
// (/sys/fs/cgroup): memory.max for cgroup v2 ("0::/path"),
// memory.limit_in_bytes of the memory hierarchy for v1
// ("N:memory,…:/path"). A container often sees its own cgroup as the
// root while /proc/self/cgroup names the host's path: files that do not
// exist are skipped, down to root's own. false: no cgroup file holds a
// number (v1 writes a huge one for "no limit").
func cgroupMemory(root string, procCgroup []byte) (int64, bool) {
	limit, found := int64(math.MaxInt64), false
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		var dir, file string
		switch {
		case f[0] == "0" && f[1] == "":
			dir, file = root, "memory.max"
		case slices.Contains(strings.Split(f[1], ","), "memory"):
			dir, file = filepath.Join(root, "memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		for p := path.Clean(f[2]); ; p = path.Dir(p) {
			b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p), file))
			if err == nil {
				// "max" (v2) is no limit; v1's is a huge number.
				if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < limit {
					limit, found = n, true
				}
			}
			if p == "/" {
				break
			}
		}
	}
	return limit, found
}

// memTotal parses the MemTotal line ("MemTotal:  24684084 kB") of
// /proc/meminfo into bytes.
func memTotal(meminfo []byte) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0, false
		}
		return mulInt64(kb, 1024)
	}
	return 0, false
}

// tokenBuffers are buffers whose size is a count of sequences, set by a
// flag, times the tokens of a sequence times bytes per token.
type tokenBuffers struct {
	flag     string // the flag that sets rows, e.g. "--batch-size"
	rows     int    // its value: the sequences the buffers hold
	perToken int64  // bytes per token
}

// checkMemory refuses, as a usage error naming the flags, buffers for
// sequences of t tokens that together need more than the machine's
// memory: the check of a size flag against what a command allocates from
// it, before it allocates.
func checkMemory(t int, bufs ...tokenBuffers) error {
	return checkMemoryOf(machineMemory(), t, bufs...)
}

// checkMemoryOf is checkMemory with the memory limit lim.
func checkMemoryOf(lim memLimit, t int, bufs ...tokenBuffers) error {
	mem := lim.bytes
	total, fits := int64(0), true
	part := make([]int64, len(bufs)) // each part's bytes; MaxInt64 when it overflows
	for i, b := range bufs {
		n, ok := mulInt64(int64(b.rows), int64(t), b.perToken)
		if !ok {
			n = math.MaxInt64
		}
		part[i] = n
		if !ok || total > math.MaxInt64-n {
			fits = false
			continue
		}
		total += n
	}
	if fits && total <= mem {
		return nil
	}
	// Name the flags too large on their own, or all of them when only
	// their sum is.
	var values, flags []string
	for pass := 0; pass < 2 && len(flags) == 0; pass++ {
		for i, b := range bufs {
			if pass == 1 || part[i] > mem {
				values = append(values, fmt.Sprintf("%s %d", b.flag, b.rows))
				flags = append(flags, b.flag)
			}
		}
	}
	need := humanBytes(total)
	if !fits {
		need = "more than " + humanBytes(math.MaxInt64)
	}
	verb := "needs"
	if len(values) > 1 {
		verb = "need"
	}
	return usagef("%s %s %s of memory for sequences of %d tokens, more than %s (%s): lower %s",
		strings.Join(values, " and "), verb, need, t, lim.what, humanBytes(mem), strings.Join(flags, " or "))
}

// Bytes per token of what the commands allocate per sequence of a batch
// or shard (float32 values, int32 tokens), for checkMemory. They count the
// dense buffers only (sparse activations vary with the data), so that they
// never overstate what a command needs.

// forwardTokenBytes is a CPU forward pass's workspace (gpt2.Workspace:
// residual, normalized input, q/k/v, attention output, scratch, MLP
// hidden) for a model of width c and MLP width n.
func forwardTokenBytes(c, n int) int64 { return 4 * (7*int64(c) + int64(n)) }

// buildBuffers are what cache build allocates (and cache plan plans) for
// a model of width c and MLP width n caching layers layers: two batches'
// tokens, x and y of each layer (one computed while the other is
// written), and the forward pass's workspace when it runs on the CPU; the
// shard being filled (tokens, x and y of each layer). A layer set's
// ln2.hook_scale (4 bytes per token and layer) is left out, as the sparse
// activations are.
func buildBuffers(batch, perShard, c, n, layers int, onCPU bool) []tokenBuffers {
	perToken := valueTokenBytes(c, layers)
	batchBytes := 2 * perToken
	if onCPU {
		batchBytes += forwardTokenBytes(c, n)
	}
	return []tokenBuffers{
		{flag: "--batch-size", rows: batch, perToken: batchBytes},
		{flag: "--sequences-per-shard", rows: perShard, perToken: perToken},
	}
}

// valueTokenBytes is a token's id and its x and y at each of layers.
func valueTokenBytes(c, layers int) int64 { return 4 * (2*int64(c)*int64(layers) + 1) }

// measureBuffers are what cache plan's timed pass of --sample-rows rows
// allocates: tokens, x, y (one batch), and the CPU pass's workspace.
func measureBuffers(rows, c, n int, onCPU bool) tokenBuffers {
	b := tokenBuffers{flag: "--sample-rows", rows: rows, perToken: valueTokenBytes(c, 1)}
	if onCPU {
		b.perToken += forwardTokenBytes(c, n)
	}
	return b
}

// fitBuffers are what a fit allocates per sequence of its batch: on the
// CPU the trainer's (mid, pre-activation, activation, output) and y, and
// from text two batches of tokens and y and the forward pass's workspace;
// on the GPU, the host's x and y of a cache's batch, or the token rows.
func fitBuffers(batch, c, n int, fromText, onCPU bool) tokenBuffers {
	c64, n64 := int64(c), int64(n)
	var b int64
	switch {
	case onCPU && fromText:
		b = 4*(3*c64+2*n64) + 2*4*(c64+1) + forwardTokenBytes(c, n)
	case onCPU:
		b = 4 * (3*c64 + 2*n64)
	case fromText:
		b = 2 * 4
	default:
		b = 4 * 2 * c64
	}
	return tokenBuffers{flag: "--batch-size", rows: batch, perToken: b}
}

// ceilDiv returns ⌈a / b⌉ for a ≥ 0 and b > 0, without the overflow of
// (a + b − 1) / b near math.MaxInt64.
func ceilDiv(a, b int64) int64 {
	if a == 0 {
		return 0
	}
	return (a-1)/b + 1
}
