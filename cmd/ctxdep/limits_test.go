package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestMulInt64(t *testing.T) {
	const maxI64 = math.MaxInt64
	for _, c := range []struct {
		factors []int64
		want    int64
		ok      bool
	}{
		{nil, 1, true},
		{[]int64{16, 32, 10}, 5120, true},
		{[]int64{16, 32, 1 << 59}, 0, false}, // 2^68: wrapped to 0 in Config.Epochs
		{[]int64{maxI64, 1}, maxI64, true},
		{[]int64{maxI64, 2}, 0, false},
		{[]int64{1 << 31, 1 << 31}, 1 << 62, true},
		{[]int64{1 << 32, 1 << 31}, 0, false},
		{[]int64{3037000499, 3037000499}, 3037000499 * 3037000499, true}, // ⌊√MaxInt64⌋²
		{[]int64{3037000500, 3037000500}, 0, false},
		{[]int64{maxI64, maxI64, 0}, 0, true}, // a zero factor: 0, however large the others
		{[]int64{-1, 2}, 0, false},
	} {
		if got, ok := mulInt64(c.factors...); got != c.want || ok != c.ok {
			t.Errorf("mulInt64(%v) = %d, %v; want %d, %v", c.factors, got, ok, c.want, c.ok)
		}
	}
}

func TestCeilDiv(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{0, 16, 0}, {1, 16, 1}, {16, 16, 1}, {17, 16, 2},
		{math.MaxInt64, 16, math.MaxInt64/16 + 1}, // (a + b − 1) / b wrapped negative
		{math.MaxInt64, 1, math.MaxInt64},
	} {
		if got := ceilDiv(c.a, c.b); got != c.want {
			t.Errorf("ceilDiv(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestMemTotal(t *testing.T) {
	for _, c := range []struct {
		meminfo string
		want    int64
		ok      bool
	}{
		{"MemTotal:       24684084 kB\nMemFree:         1234 kB\n", 24684084 * 1024, true},
		{"MemFree:         1234 kB\nMemTotal: 1 kB\n", 1024, true},
		{"MemFree:         1234 kB\n", 0, false},
		{"MemTotal:       lots kB\n", 0, false},
		{"MemTotal:       1234 MB\n", 0, false},
		{"MemTotal:       0 kB\n", 0, false},
		{"MemTotal:       9223372036854775807 kB\n", 0, false},
	} {
		if got, ok := memTotal([]byte(c.meminfo)); got != c.want || ok != c.ok {
			t.Errorf("memTotal(%q) = %d, %v; want %d, %v", c.meminfo, got, ok, c.want, c.ok)
		}
	}
	if m := machineMemory(); m.bytes <= 0 || m.what == "" {
		t.Errorf("machineMemory() = %+v", m)
	}
}

func TestCheckMemory(t *testing.T) {
	const gib = int64(1) << 30
	// GPT-2 small (C = 768, N = 3072): the defaults and the notebook's run
	// fit in a few GiB; absurd sizes do not, and overflow is caught.
	c, n := 768, 3072
	for _, cpu := range []bool{true, false} {
		if err := checkMemoryOf(memLimit{1 * gib, "this machine has"}, 128, buildBuffers(32, 128, c, n, 1, cpu)...); err != nil {
			t.Errorf("cache build defaults (cpu %v): %v", cpu, err)
		}
		if err := checkMemoryOf(memLimit{4 * gib, "this machine has"}, 128, fitBuffers(64, c, n, true, cpu)); err != nil {
			t.Errorf("the notebook's fit from text (cpu %v): %v", cpu, err)
		}
		if err := checkMemoryOf(memLimit{1 * gib, "this machine has"}, 16, measureBuffers(8, c, n, cpu)); err != nil {
			t.Errorf("cache plan defaults (cpu %v): %v", cpu, err)
		}
	}
	for _, c := range []struct {
		name    string
		mem     int64
		t       int
		bufs    []tokenBuffers
		want    []string
		notWant []string
	}{
		{"one flag too large", 16 * gib, 16, []tokenBuffers{{"--batch-size", 100000000000, 836}, {"--sequences-per-shard", 128, 132}},
			[]string{"--batch-size 100000000000 needs 1.2 PiB of memory", "sequences of 16 tokens", "more than this machine has (16.0 GiB): lower --batch-size"}, []string{"--sequences-per-shard"}},
		{"overflow", 16 * gib, 1024, []tokenBuffers{{"--batch-size", math.MaxInt64, 836}},
			[]string{"--batch-size 9223372036854775807 needs more than 8.0 EiB"}, nil},
		{"sum overflows", 16 * gib, 1, []tokenBuffers{{"--batch-size", math.MaxInt64 / 2, 2}, {"--sequences-per-shard", math.MaxInt64 / 2, 2}},
			[]string{"--batch-size", "--sequences-per-shard", "more than 8.0 EiB"}, nil},
		{"only together too large", 1000, 1, []tokenBuffers{{"--batch-size", 600, 1}, {"--sequences-per-shard", 600, 1}},
			[]string{"--batch-size 600 and --sequences-per-shard 600 need 1.2 KiB", "lower --batch-size or --sequences-per-shard"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkMemoryOf(memLimit{c.mem, "this machine has"}, c.t, c.bufs...)
			var u usageError
			if !errors.As(err, &u) {
				t.Fatalf("checkMemoryOf: %v, want a usage error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%q mentions %q", err, w)
				}
			}
		})
	}
	if err := checkMemoryOf(memLimit{1000, "this machine has"}, 1, tokenBuffers{"--batch-size", 1000, 1}); err != nil {
		t.Errorf("buffers of exactly the machine's memory: %v", err)
	}
}

// The cgroup memory limit is the lowest along the cgroup's path, v2
// (memory.max, "max" meaning none) or v1 (the memory hierarchy's
// memory.limit_in_bytes); a path the container does not see is skipped
// down to the root it does see.
func TestCgroupMemory(t *testing.T) {
	root := t.TempDir()
	write := func(rel, v string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("memory.max", "8589934592")                            // a container's own root (v2)
	write("job_7/memory.max", "4294967296")                      // a Slurm job
	write("job_7/step_0/memory.max", "max")                      // a step without its own limit
	write("memory/memory.limit_in_bytes", "9223372036854771712") // v1: no limit
	write("memory/kube/pod1/memory.limit_in_bytes", "2147483648")
	write("bad/memory.max", "lots")
	for _, c := range []struct {
		name, cgroup string
		want         int64
		ok           bool
	}{
		{"v2, Slurm step under a job's limit", "0::/job_7/step_0\n", 4 << 30, true},
		{"v2, namespaced container", "0::/\n", 8 << 30, true},
		{"v2, host path the container cannot see", "0::/system.slice/docker-1.scope\n", 8 << 30, true},
		{"v1, Kubernetes pod", "12:pids:/kube/pod1\n4:memory:/kube/pod1\n3:cpu,cpuacct:/kube/pod1\n", 2 << 30, true},
		{"v1, no limit", "4:memory:/elsewhere\n", 9223372036854771712, true},
		{"unreadable value and no cgroup file", "0::/bad\n", 8 << 30, true},
		{"no memory controller", "3:cpu:/x\n", 0, false},
		{"garbage", "not a cgroup line", 0, false},
	} {
		got, ok := cgroupMemory(root, []byte(c.cgroup))
		if ok != c.ok || ok && got != c.want {
			t.Errorf("%s: cgroupMemory = %d, %v; want %d, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if _, ok := cgroupMemory(filepath.Join(root, "none"), []byte("0::/\n")); ok {
		t.Errorf("a limit found where no cgroup file exists")
	}
}

func TestCheckThreads(t *testing.T) {
	limit := maxThreads()
	if limit < minThreadsBound || limit < 4*runtime.NumCPU() {
		t.Errorf("maxThreads() = %d with %d cores", limit, runtime.NumCPU())
	}
	for _, n := range []int{0, 1, limit} {
		if err := checkThreads(n); err != nil {
			t.Errorf("--threads %d: %v", n, err)
		}
	}
	for _, n := range []int{-1, limit + 1, 100000, math.MaxInt} {
		var u usageError
		if err := checkThreads(n); !errors.As(err, &u) {
			t.Errorf("--threads %d: %v, want a usage error", n, err)
		}
	}
}
