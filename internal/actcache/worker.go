package actcache

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// WorkerSpec is the worker of a sharded build that a process runs as, and
// where that came from.
type WorkerSpec struct {
	Index, Count int
	// Source names the flags or environment variables the worker came
	// from, e.g. "--shard 2/4" or "SLURM_ARRAY_TASK_ID=2,
	// SLURM_ARRAY_TASK_COUNT=4", for messages.
	Source string
}

// ErrWorkerSpec is wrapped by every error of ResolveWorker: a --shard
// value, worker count or environment that does not make sense, which is
// the caller's usage error. The errors' own text says what is wrong and
// where the value came from.
var ErrWorkerSpec = errors.New("actcache: bad worker specification")

// specError is an error of ResolveWorker: its message, wrapping
// ErrWorkerSpec without adding to the text.
type specError string

func (e specError) Error() string { return string(e) }
func (e specError) Unwrap() error { return ErrWorkerSpec }

func specf(format string, a ...any) error { return specError(fmt.Sprintf(format, a...)) }

// ResolveWorker works out which worker of a sharded build this process is
// (nil: not sharded): from flag, the value of --shard ("i/N", "i" with the
// count, "none"), else from a Slurm job array, else from a Kubernetes
// Indexed Job, reading the environment through getenv. The count for a
// bare index comes from --shard-count (flagCount, when countSet), else
// $CTXDEP_SHARD_COUNT. Anything that does not make sense is an error
// wrapping ErrWorkerSpec that names where the value came from.
//
// Slurm: i = $SLURM_ARRAY_TASK_ID − $SLURM_ARRAY_TASK_MIN (min 0 when
// unset), N = $SLURM_ARRAY_TASK_COUNT or $SLURM_ARRAY_TASK_MAX − min + 1;
// with a count from --shard-count or $CTXDEP_SHARD_COUNT (a rerun of some
// tasks of the array) the task ID is the index. Kubernetes: i =
// $JOB_COMPLETION_INDEX, N from --shard-count or $CTXDEP_SHARD_COUNT.
func ResolveWorker(flag string, flagCount int, countSet bool, getenv func(string) string) (*WorkerSpec, error) {
	num := func(what, v string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return 0, specf("%s: %q is not a non-negative integer", what, v)
		}
		return n, nil
	}
	// count returns the worker count of --shard-count or $CTXDEP_SHARD_COUNT.
	count := func() (int, string, error) {
		if countSet {
			return flagCount, fmt.Sprintf("--shard-count %d", flagCount), nil
		}
		if v := getenv("CTXDEP_SHARD_COUNT"); v != "" {
			n, err := num("$CTXDEP_SHARD_COUNT", v)
			return n, "CTXDEP_SHARD_COUNT=" + v, err
		}
		return 0, "", nil
	}
	finish := func(i, n int, source string) (*WorkerSpec, error) {
		switch {
		case n < 1 || n > MaxWorkers:
			return nil, specf("worker count %d (%s) is not in 1..%d", n, source, MaxWorkers)
		case i >= n:
			return nil, specf("worker index %d (%s) is not below the worker count %d: workers are numbered 0..%d", i, source, n, n-1)
		case countSet && flagCount != n:
			return nil, specf("--shard-count %d disagrees with the worker count %d (%s)", flagCount, n, source)
		}
		return &WorkerSpec{Index: i, Count: n, Source: source}, nil
	}
	switch flag = strings.TrimSpace(flag); {
	case flag == "none":
		if countSet {
			return nil, specf("--shard none and --shard-count contradict each other")
		}
		return nil, nil
	case flag != "":
		is, ns, hasN := strings.Cut(flag, "/")
		i, err := num("--shard "+flag+" (want i/N)", is)
		if err != nil {
			return nil, err
		}
		if hasN {
			n, err := num("--shard "+flag+" (want i/N)", ns)
			if err != nil {
				return nil, err
			}
			return finish(i, n, "--shard "+flag)
		}
		n, src, err := count()
		if err != nil {
			return nil, err
		}
		if src == "" {
			return nil, specf("--shard %s needs the worker count: --shard %s/N, --shard-count N or $CTXDEP_SHARD_COUNT", flag, flag)
		}
		return finish(i, n, "--shard "+flag+", "+src)
	case getenv("SLURM_ARRAY_TASK_ID") != "":
		v := getenv("SLURM_ARRAY_TASK_ID")
		id, err := num("$SLURM_ARRAY_TASK_ID", v)
		if err != nil {
			return nil, err
		}
		src := "SLURM_ARRAY_TASK_ID=" + v
		if n, csrc, err := count(); err != nil {
			return nil, err
		} else if csrc != "" {
			// A count given with the task ID: a rerun of some tasks of the
			// array (sbatch --array=3), whose own size says nothing, so the
			// task ID is the worker index.
			return finish(id, n, src+", "+csrc)
		}
		lo := 0
		if v := getenv("SLURM_ARRAY_TASK_MIN"); v != "" {
			if lo, err = num("$SLURM_ARRAY_TASK_MIN", v); err != nil {
				return nil, err
			}
			src += ", SLURM_ARRAY_TASK_MIN=" + v
		}
		if id < lo {
			return nil, specf("$SLURM_ARRAY_TASK_ID %d is below $SLURM_ARRAY_TASK_MIN %d", id, lo)
		}
		n := -1
		if v := getenv("SLURM_ARRAY_TASK_MAX"); v != "" {
			hi, err := num("$SLURM_ARRAY_TASK_MAX", v)
			if err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, specf("$SLURM_ARRAY_TASK_MAX %d is below $SLURM_ARRAY_TASK_MIN %d", hi, lo)
			}
			n = hi - lo + 1
			src += ", SLURM_ARRAY_TASK_MAX=" + v
		}
		if v := getenv("SLURM_ARRAY_TASK_COUNT"); v != "" {
			c, err := num("$SLURM_ARRAY_TASK_COUNT", v)
			if err != nil {
				return nil, err
			}
			if n >= 0 && c != n {
				return nil, specf("the Slurm array is not one range of consecutive indices (%s, SLURM_ARRAY_TASK_COUNT=%s): submit it with --array=0-%d, or pass --shard i/N", src, v, c-1)
			}
			n = c
			src += ", SLURM_ARRAY_TASK_COUNT=" + v
		}
		if n < 0 {
			return nil, specf("%s is set but not the array's size ($SLURM_ARRAY_TASK_COUNT or $SLURM_ARRAY_TASK_MAX): pass --shard i/N or --shard-count N", src)
		}
		if n == 1 && id > 0 {
			return nil, specf("a one-task Slurm array with task ID %d (%s): to rerun task %d of a larger array, set $CTXDEP_SHARD_COUNT or --shard-count to the array's size; to build the whole cache on this machine, pass --shard none", id, src, id)
		}
		return finish(id-lo, n, src)
	case getenv("JOB_COMPLETION_INDEX") != "":
		v := getenv("JOB_COMPLETION_INDEX")
		i, err := num("$JOB_COMPLETION_INDEX", v)
		if err != nil {
			return nil, err
		}
		n, csrc, err := count()
		if err != nil {
			return nil, err
		}
		if csrc == "" {
			return nil, specf("JOB_COMPLETION_INDEX=%s is set but not the worker count: pass --shard-count N or set $CTXDEP_SHARD_COUNT to the Job's completions (or --shard none to build on this machine alone)", v)
		}
		return finish(i, n, "JOB_COMPLETION_INDEX="+v+", "+csrc)
	case countSet:
		return nil, specf("--shard-count %d needs a worker index: --shard i, $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX", flagCount)
	}
	return nil, nil
}
