package actcache

import (
	"errors"
	"testing"
)

// ResolveWorker reads the worker from --shard, a Slurm job array or a
// Kubernetes Indexed Job, in that order.
func TestResolveWorker(t *testing.T) {
	cases := []struct {
		name      string
		flag      string
		count     int // --shard-count; 0: not given
		env       map[string]string
		index, of int // of 0: not sharded
		source    string
	}{
		{"nothing", "", 0, nil, 0, 0, ""},
		{"flag", "2/5", 0, nil, 2, 5, "--shard 2/5"},
		{"flag beats environment", "2/5", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, 2, 5, "--shard 2/5"},
		{"bare index, --shard-count", "1", 3, nil, 1, 3, "--shard 1, --shard-count 3"},
		{"bare index, CTXDEP_SHARD_COUNT", "1", 0, map[string]string{"CTXDEP_SHARD_COUNT": "4"}, 1, 4, "--shard 1, CTXDEP_SHARD_COUNT=4"},
		{"none", "none", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, 0, 0, ""},
		{"Slurm count", "", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}, 3, 8, "SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_COUNT=8"},
		{"Slurm min/max", "", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8"}, 4, 8, "SLURM_ARRAY_TASK_ID=5, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_MAX=8"},
		{"Slurm all four", "", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, 0, 4, "SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=3, SLURM_ARRAY_TASK_COUNT=4"},
		{"Slurm id only, --shard-count", "", 6, map[string]string{"SLURM_ARRAY_TASK_ID": "2"}, 2, 6, "SLURM_ARRAY_TASK_ID=2, --shard-count 6"},
		{"Slurm beats Kubernetes", "", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "JOB_COMPLETION_INDEX": "0"}, 1, 2, "SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_COUNT=2"},
		// sbatch --array=3 reruns task 3 of 8: the one-task array's own size says nothing.
		{"Slurm rerun of one task", "", 0, map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "1", "CTXDEP_SHARD_COUNT": "8"}, 3, 8, "SLURM_ARRAY_TASK_ID=3, CTXDEP_SHARD_COUNT=8"},
		{"Kubernetes, CTXDEP_SHARD_COUNT", "", 0, map[string]string{"JOB_COMPLETION_INDEX": "7", "CTXDEP_SHARD_COUNT": "8"}, 7, 8, "JOB_COMPLETION_INDEX=7, CTXDEP_SHARD_COUNT=8"},
		{"Kubernetes, --shard-count", "", 16, map[string]string{"JOB_COMPLETION_INDEX": "0", "CTXDEP_SHARD_COUNT": "8"}, 0, 16, "JOB_COMPLETION_INDEX=0, --shard-count 16"},
		{"CTXDEP_SHARD_COUNT alone", "", 0, map[string]string{"CTXDEP_SHARD_COUNT": "8"}, 0, 0, ""},
		{"most workers", "99998/99999", 0, nil, 99998, MaxWorkers, "--shard 99998/99999"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ResolveWorker(c.flag, c.count, c.count > 0, func(k string) string { return c.env[k] })
			if err != nil {
				t.Fatalf("ResolveWorker: %v", err)
			}
			if c.of == 0 {
				if got != nil {
					t.Errorf("ResolveWorker = %+v, want not sharded", *got)
				}
				return
			}
			if got == nil || got.Index != c.index || got.Count != c.of || got.Source != c.source {
				t.Errorf("ResolveWorker = %+v, want %d of %d from %q", got, c.index, c.of, c.source)
			}
		})
	}
}

// Every value that does not make sense is an error that wraps
// ErrWorkerSpec (the CLI's usage error, exit status 2) and whose text,
// the line the CLI prints, is exactly the one cmd/ctxdep printed before
// the resolution moved here, naming where the value came from.
func TestResolveWorkerErrors(t *testing.T) {
	cases := []struct {
		name  string
		flag  string
		count int // --shard-count; -1: not given
		env   map[string]string
		want  string
	}{
		{"index not below count", "3/3", -1, nil,
			"worker index 3 (--shard 3/3) is not below the worker count 3: workers are numbered 0..2"},
		{"zero count", "0/0", -1, nil, "worker count 0 (--shard 0/0) is not in 1..99999"},
		{"too many workers", "0/100000", -1, nil, "worker count 100000 (--shard 0/100000) is not in 1..99999"},
		{"not a number", "a/3", -1, nil, `--shard a/3 (want i/N): "a" is not a non-negative integer`},
		{"count not a number", "1/x", -1, nil, `--shard 1/x (want i/N): "x" is not a non-negative integer`},
		{"negative", "-1/3", -1, nil, `--shard -1/3 (want i/N): "-1" is not a non-negative integer`},
		{"bare index without count", "1", -1, nil,
			"--shard 1 needs the worker count: --shard 1/N, --shard-count N or $CTXDEP_SHARD_COUNT"},
		{"bad CTXDEP_SHARD_COUNT", "1", -1, map[string]string{"CTXDEP_SHARD_COUNT": "many"},
			`$CTXDEP_SHARD_COUNT: "many" is not a non-negative integer`},
		{"count disagrees", "1/3", 4, nil, "--shard-count 4 disagrees with the worker count 3 (--shard 1/3)"},
		{"none with a count", "none", 2, nil, "--shard none and --shard-count contradict each other"},
		{"count without index", "", 2, nil,
			"--shard-count 2 needs a worker index: --shard i, $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX"},
		{"index without count (k8s)", "", -1, map[string]string{"JOB_COMPLETION_INDEX": "1"},
			"JOB_COMPLETION_INDEX=1 is set but not the worker count: pass --shard-count N or set $CTXDEP_SHARD_COUNT to the Job's completions (or --shard none to build on this machine alone)"},
		{"bad Kubernetes index", "", -1, map[string]string{"JOB_COMPLETION_INDEX": "-2", "CTXDEP_SHARD_COUNT": "3"},
			`$JOB_COMPLETION_INDEX: "-2" is not a non-negative integer`},
		{"bad Slurm id", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
			`$SLURM_ARRAY_TASK_ID: "x" is not a non-negative integer`},
		{"Slurm id below min", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "5"},
			"$SLURM_ARRAY_TASK_ID 1 is below $SLURM_ARRAY_TASK_MIN 2"},
		{"Slurm max below min", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "2"},
			"$SLURM_ARRAY_TASK_MAX 2 is below $SLURM_ARRAY_TASK_MIN 3"},
		{"Slurm array with a step", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8", "SLURM_ARRAY_TASK_COUNT": "3"},
			"the Slurm array is not one range of consecutive indices (SLURM_ARRAY_TASK_ID=4, SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_MAX=8, SLURM_ARRAY_TASK_COUNT=3): submit it with --array=0-2, or pass --shard i/N"},
		{"Slurm id without the array's size", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "2"},
			"SLURM_ARRAY_TASK_ID=2 is set but not the array's size ($SLURM_ARRAY_TASK_COUNT or $SLURM_ARRAY_TASK_MAX): pass --shard i/N or --shard-count N"},
		{"one-task Slurm array rerun without the count", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "3", "SLURM_ARRAY_TASK_COUNT": "1"},
			"a one-task Slurm array with task ID 3 (SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_MIN=3, SLURM_ARRAY_TASK_MAX=3, SLURM_ARRAY_TASK_COUNT=1): to rerun task 3 of a larger array, set $CTXDEP_SHARD_COUNT or --shard-count to the array's size; to build the whole cache on this machine, pass --shard none"},
		{"Slurm id not below its count", "", -1, map[string]string{"SLURM_ARRAY_TASK_ID": "4", "CTXDEP_SHARD_COUNT": "4"},
			"worker index 4 (SLURM_ARRAY_TASK_ID=4, CTXDEP_SHARD_COUNT=4) is not below the worker count 4: workers are numbered 0..3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ResolveWorker(c.flag, c.count, c.count >= 0, func(k string) string { return c.env[k] })
			if err == nil {
				t.Fatalf("ResolveWorker = %+v, want the error %q", got, c.want)
			}
			if !errors.Is(err, ErrWorkerSpec) {
				t.Errorf("error %q does not wrap ErrWorkerSpec", err)
			}
			if err.Error() != c.want {
				t.Errorf("error\n%q, want\n%q", err, c.want)
			}
			if got != nil {
				t.Errorf("ResolveWorker returned %+v with its error", *got)
			}
		})
	}
}
