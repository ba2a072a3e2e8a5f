package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ctxdep/ctxdep/internal/npy"
)

const (
	cacheJobFile = "k8s/cache-job.yaml"
	mergeJobFile = "k8s/cache-merge-job.yaml"
	pvcFile      = "k8s/data-pvc.yaml"
	sbatchFile   = "slurm/cache.sbatch"

	tinyModel  = "../testdata/tiny-gpt2"
	tinyTokens = "../testdata/tokens/tiny-int64.npy"
	tinyLayer  = "1" // the fixture has 3 blocks; the manifests say 8 (GPT-2 small)

	// tileRows copies of the fixture's 6 rows make the test's token file:
	// 30 rows, which 8 workers split unevenly (3 or 4 rows each).
	tileRows = 5
)

// The parts of the Kubernetes objects that the checks read. Unknown fields
// are ignored; kubectl validates the rest.
type (
	job struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    *int   `yaml:"completions"`
			Parallelism    *int   `yaml:"parallelism"`
			Template       struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	podSpec struct {
		RestartPolicy  string      `yaml:"restartPolicy"`
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
		Volumes        []struct {
			Name                  string `yaml:"name"`
			PersistentVolumeClaim *struct {
				ClaimName string `yaml:"claimName"`
			} `yaml:"persistentVolumeClaim"`
		} `yaml:"volumes"`
	}
	container struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts []mount `yaml:"volumeMounts"`
	}
	mount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	}
	pvc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			AccessModes []string `yaml:"accessModes"`
		} `yaml:"spec"`
	}
)

// decodeOne decodes the single YAML document in path into v.
func decodeOne(t *testing.T, path string, v any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := yaml.NewDecoder(f)
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var more yaml.Node
	if err := d.Decode(&more); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: want one YAML document, found more (%v)", path, err)
	}
}

// flagValue returns the value of --name in args, written --name=v or
// --name v.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// hasFlag reports whether args set --name in either form.
func hasFlag(args []string, name string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == name || strings.HasPrefix(a, name+"=") })
}

// envOf returns a container's env as a map.
func envOf(c container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand does Kubernetes' expansion of command and args: $(NAME) becomes
// the value of the container's variable NAME, $$ a literal $, and a
// reference to an undefined name stays as written.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// mountOf returns the volume mount that holds path.
func mountOf(path string, mounts []mount) (mount, bool) {
	for _, m := range mounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return mount{}, false
}

// k8sFiles loads and checks the three manifests, and returns the worker
// Job, the merge Job and N.
func k8sFiles(t *testing.T) (work, merge job, n int) {
	t.Helper()
	decodeOne(t, cacheJobFile, &work)
	decodeOne(t, mergeJobFile, &merge)
	var claim pvc
	decodeOne(t, pvcFile, &claim)

	if claim.Kind != "PersistentVolumeClaim" || !slices.Contains(claim.Spec.AccessModes, "ReadWriteMany") {
		t.Errorf("%s: kind %q, accessModes %v; want a PersistentVolumeClaim with ReadWriteMany (pods on several nodes write at once)",
			pvcFile, claim.Kind, claim.Spec.AccessModes)
	}
	for _, j := range []struct {
		file string
		job  job
	}{{cacheJobFile, work}, {mergeJobFile, merge}} {
		file, spec := j.file, j.job.Spec.Template.Spec
		if j.job.APIVersion != "batch/v1" || j.job.Kind != "Job" {
			t.Errorf("%s: %s %s, want batch/v1 Job", file, j.job.APIVersion, j.job.Kind)
		}
		if spec.RestartPolicy != "Never" {
			t.Errorf("%s: restartPolicy %q, want Never (retries are the Job's, per index)", file, spec.RestartPolicy)
		}
		claims := map[string]string{}
		for _, v := range spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				claims[v.Name] = v.PersistentVolumeClaim.ClaimName
			}
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			if len(c.Command) == 0 || c.Command[0] != "ctxdep" {
				t.Errorf("%s: container %s: command %q, want [ctxdep] (the test swaps in a fresh build)", file, c.Name, c.Command)
			}
			if c.Image == "" {
				t.Errorf("%s: container %s has no image", file, c.Name)
			}
			for _, m := range c.VolumeMounts {
				if claims[m.Name] != claim.Metadata.Name {
					t.Errorf("%s: container %s mounts %q at %s, which is not the PVC %s of %s",
						file, c.Name, m.Name, m.MountPath, claim.Metadata.Name, pvcFile)
				}
			}
		}
	}

	spec := work.Spec
	if spec.CompletionMode != "Indexed" {
		t.Errorf("%s: completionMode %q, want Indexed (JOB_COMPLETION_INDEX is the shard index)", cacheJobFile, spec.CompletionMode)
	}
	deref := func(p *int) string {
		if p == nil {
			return "unset"
		}
		return strconv.Itoa(*p)
	}
	if spec.Completions == nil || spec.Parallelism == nil || *spec.Completions != *spec.Parallelism || *spec.Completions < 1 {
		t.Fatalf("%s: completions %s, parallelism %s; want equal and positive", cacheJobFile, deref(spec.Completions), deref(spec.Parallelism))
	}
	n = *spec.Completions
	cs := spec.Template.Spec.Containers
	if len(cs) != 1 || len(spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("%s: %d containers and %d init containers, want one container", cacheJobFile, len(cs), len(spec.Template.Spec.InitContainers))
	}
	c := cs[0]
	args := c.Args
	if i := slices.Index(args, "cache"); i < 0 || i+1 == len(args) || args[i+1] != "build" {
		t.Errorf("%s: args %q do not run `cache build`", cacheJobFile, args)
	}
	if hasFlag(args, "--shard") {
		t.Errorf("%s: args set --shard; the index must come from JOB_COMPLETION_INDEX", cacheJobFile)
	}
	if v, ok := flagValue(args, "--shard-count"); !ok || v != strconv.Itoa(n) {
		t.Errorf("%s: --shard-count %q, want %d = completions", cacheJobFile, v, n)
	}
	if _, ok := c.Resources.Requests["memory"]; !ok {
		t.Errorf("%s: no memory request", cacheJobFile)
	}
	env := envOf(c)
	out, okOut := flagValue(args, "--out")
	tokens, okTok := flagValue(args, "--tokens")
	if !okOut || !okTok {
		t.Fatalf("%s: args %q lack --out or --tokens", cacheJobFile, args)
	}
	out, tokens = expand(out, env), expand(tokens, env)
	if m, ok := mountOf(out, c.VolumeMounts); !ok || m.ReadOnly {
		t.Errorf("%s: --out %s is not on a writable mount of the shared volume", cacheJobFile, out)
	}
	if _, ok := mountOf(tokens, c.VolumeMounts); !ok {
		t.Errorf("%s: --tokens %s is not on the shared volume", cacheJobFile, tokens)
	}

	// The merge Job: merge then verify, of the same directory.
	ms := merge.Spec.Template.Spec
	if len(ms.InitContainers) != 1 || len(ms.Containers) != 1 {
		t.Fatalf("%s: want one init container (merge) and one container (verify)", mergeJobFile)
	}
	for _, w := range []struct {
		c   container
		cmd string
	}{{ms.InitContainers[0], "merge"}, {ms.Containers[0], "verify"}} {
		want := []string{"cache", w.cmd, out}
		if got := w.c.Args; !slices.Equal(got, want) {
			t.Errorf("%s: container %s args %q, want %q", mergeJobFile, w.c.Name, got, want)
		}
	}
	if m, ok := mountOf(out, ms.InitContainers[0].VolumeMounts); !ok || m.ReadOnly {
		t.Errorf("%s: merge does not mount %s writable", mergeJobFile, out)
	}
	return work, merge, n
}

func TestK8sManifests(t *testing.T) {
	_, _, n := k8sFiles(t)
	t.Logf("Indexed Job of %d workers", n)
}

// sbatchDirectives returns the #SBATCH options of the script, and its
// lines that are not comments.
func sbatchDirectives(t *testing.T) (map[string]string, []string) {
	t.Helper()
	b, err := os.ReadFile(sbatchFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string]string{}
	var code []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if o, ok := strings.CutPrefix(line, "#SBATCH "); ok {
			k, v, _ := strings.Cut(strings.TrimSpace(o), "=")
			opts[k] = v
		} else if line != "" && !strings.HasPrefix(line, "#") {
			code = append(code, line)
		}
	}
	return opts, code
}

var arrayRange = regexp.MustCompile(`^0-([0-9]+)(%[0-9]+)?$`)

// sbatchArray checks the script's --array and returns N.
func sbatchArray(t *testing.T) int {
	t.Helper()
	opts, code := sbatchDirectives(t)
	m := arrayRange.FindStringSubmatch(opts["--array"])
	if m == nil {
		t.Fatalf("%s: #SBATCH --array=%q, want 0-(N-1) (N is the array's size)", sbatchFile, opts["--array"])
	}
	last, _ := strconv.Atoi(m[1])
	if opts["--output"] == "" || !strings.Contains(opts["--output"], "%a") {
		t.Errorf("%s: #SBATCH --output=%q, want one log per task (%%a)", sbatchFile, opts["--output"])
	}
	if !slices.ContainsFunc(code, func(l string) bool { return strings.Contains(l, "cache build") }) {
		t.Errorf("%s: runs no `cache build`", sbatchFile)
	}
	for _, l := range code {
		if strings.Contains(l, "--shard") {
			t.Errorf("%s: %q: the command must not set --shard (the index comes from SLURM_ARRAY_TASK_ID)", sbatchFile, l)
		}
	}
	return last + 1
}

func TestSbatchFile(t *testing.T) {
	n := sbatchArray(t)
	if bash, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(bash, "-n", sbatchFile).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", sbatchFile, err, out)
		}
	}
	t.Logf("job array of %d tasks", n)
}

// build compiles ctxdep and cachecmp into dir.
func build(t *testing.T, dir string) (ctxdep, cachecmp string) {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build ctxdep with")
	}
	cmd := exec.Command(gotool, "build", "-o", dir+string(filepath.Separator),
		"github.com/ctxdep/ctxdep/cmd/ctxdep", "github.com/ctxdep/ctxdep/scripts/cachecmp")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "ctxdep"), filepath.Join(dir, "cachecmp")
}

// cleanEnv is this process's environment without anything that would pick a
// shard for ctxdep.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SLURM_") || strings.HasPrefix(kv, "JOB_COMPLETION_INDEX=") ||
			strings.HasPrefix(kv, "CTXDEP_SHARD_COUNT=") || strings.HasPrefix(kv, "CTXDEP_MODEL=")
	})
}

// command is name args with env added to cleanEnv.
func command(env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(cleanEnv(), env...)
	return cmd
}

// run runs a command and returns its exit status and output; a failure to
// start it is fatal.
func run(t *testing.T, env []string, name string, args ...string) (int, string) {
	t.Helper()
	out, err := command(env, name, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return 0, string(out)
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	code, out := run(t, env, name, args...)
	if code != 0 {
		t.Fatalf("%s %q (env %q): exit %d\n%s", filepath.Base(name), args, env, code, out)
	}
	return out
}

// parallel runs f(i) for i in idx at once, as the cluster would, and
// returns the failures.
func parallel(idx []int, f func(i int) error) error {
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for k, i := range idx {
		wg.Go(func() { errs[k] = f(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runErr runs a command and returns an error describing a non-zero exit.
func runErr(env []string, name string, args ...string) error {
	if out, err := command(env, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %q (env %q): %v\n%s", filepath.Base(name), args, env, err, out)
	}
	return nil
}

// writeTokens writes the fixture's rows tileRows times to path.
func writeTokens(t *testing.T, path string) {
	t.Helper()
	data, shape, err := npy.ReadInt32(tinyTokens)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]int64, 0, tileRows*len(data))
	for range tileRows {
		for _, v := range data {
			rows = append(rows, int64(v))
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := npy.WriteInt64(path, rows, []int{tileRows * shape[0], shape[1]}); err != nil {
		t.Fatal(err)
	}
}

// TestRunLocally runs the Kubernetes Job's pods and the Slurm array's tasks
// as local processes, on the tiny fixture, and checks each merged cache
// equals a single-process build.
func TestRunLocally(t *testing.T) {
	tmp := t.TempDir()
	ctxdep, cachecmp := build(t, filepath.Join(tmp, "bin"))
	if _, help := run(t, nil, ctxdep, "cache", "build", "--help"); !strings.Contains(help, "--shard-count") {
		t.Fatalf("%s cache build has no --shard-count: its sharding flags are missing", ctxdep)
	}
	model, err := filepath.Abs(tinyModel)
	if err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(tmp, "single")
	refTokens := filepath.Join(tmp, "tokens.npy")
	writeTokens(t, refTokens)
	mustRun(t, nil, ctxdep, "--model", model, "--layer", tinyLayer, "-q", "cache", "build", "--tokens", refTokens, "--out", ref)
	same := func(t *testing.T, dir string) {
		t.Helper()
		t.Log(strings.TrimSpace(mustRun(t, nil, cachecmp, ref, dir)))
	}

	t.Run("k8s", func(t *testing.T) {
		work, merge, n := k8sFiles(t)
		if t.Failed() {
			return
		}
		data := filepath.Join(tmp, "k8s-data")
		// The pod's view: the image's ctxdep is the fresh build, /data is
		// the temp dir, and the settings for GPT-2 small on a GPU become
		// the fixture's on the CPU.
		override := map[string]string{"MODEL": model, "LAYER": tinyLayer, "DEVICE": "cpu"}
		local := func(c container) (string, []string, []string) {
			env := envOf(c)
			for k, v := range override {
				if _, ok := env[k]; ok {
					env[k] = v
				}
			}
			mounts := c.VolumeMounts
			path := func(s string) string {
				if m, ok := mountOf(s, mounts); ok {
					return filepath.Join(data, strings.TrimPrefix(s, m.MountPath))
				}
				return s
			}
			var args []string
			for _, a := range c.Args {
				a = expand(a, env)
				if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
					a = k + "=" + path(v)
				} else {
					a = path(a)
				}
				args = append(args, a)
			}
			var kv []string
			for k, v := range env {
				kv = append(kv, k+"="+v)
			}
			return ctxdep, args, kv
		}
		c := work.Spec.Template.Spec.Containers[0]
		for k := range override {
			if _, ok := envOf(c)[k]; !ok {
				t.Fatalf("%s: container %s has no env %s for the test to set", cacheJobFile, c.Name, k)
			}
		}
		bin, args, env := local(c)
		tokens, _ := flagValue(args, "--tokens")
		out, _ := flagValue(args, "--out")
		if !strings.HasPrefix(tokens, data) || !strings.HasPrefix(out, data) {
			t.Fatalf("after mapping /data: --tokens %s, --out %s; want both under %s", tokens, out, data)
		}
		writeTokens(t, tokens)
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		err := parallel(idx, func(i int) error {
			return runErr(slices.Concat(env, []string{"JOB_COMPLETION_INDEX=" + strconv.Itoa(i)}), bin, args...)
		})
		if err != nil {
			t.Fatalf("%d pods of %s: %v", n, cacheJobFile, err)
		}
		ms := merge.Spec.Template.Spec
		for _, c := range slices.Concat(ms.InitContainers, ms.Containers) {
			bin, args, env := local(c)
			mustRun(t, env, bin, args...)
		}
		same(t, out)
	})

	t.Run("slurm", func(t *testing.T) {
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Skip("no bash")
		}
		n := sbatchArray(t)
		submit := filepath.Join(tmp, "slurm")
		tokens, out := filepath.Join(submit, "tokens.npy"), filepath.Join(submit, "cache")
		writeTokens(t, tokens)
		base := []string{"CTXDEP=" + ctxdep, "TOKENS=" + tokens, "OUT=" + out, "MODEL=" + model,
			"LAYER=" + tinyLayer, "DEVICE=cpu", "SLURM_SUBMIT_DIR=" + submit, "SLURM_CPUS_PER_TASK=1",
			"SLURM_ARRAY_JOB_ID=7"}
		// task returns the environment Slurm gives task i of an array
		// submitted with --array=lo-hi (its size is hi-lo+1).
		task := func(i, lo, hi int) []string {
			return append(slices.Clone(base), fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", i),
				fmt.Sprintf("SLURM_ARRAY_TASK_MIN=%d", lo), fmt.Sprintf("SLURM_ARRAY_TASK_MAX=%d", hi),
				fmt.Sprintf("SLURM_ARRAY_TASK_COUNT=%d", hi-lo+1), fmt.Sprintf("SLURM_JOB_ID=%d", 100+i))
		}
		// The array with task 2 failed: all tasks but 2 ran.
		var idx []int
		for i := range n {
			if i != 2 {
				idx = append(idx, i)
			}
		}
		if err := parallel(idx, func(i int) error { return runErr(task(i, 0, n-1), bash, sbatchFile) }); err != nil {
			t.Fatalf("tasks of %s: %v", sbatchFile, err)
		}
		if code, msg := run(t, nil, ctxdep, "cache", "merge", out); code == 0 {
			t.Fatalf("cache merge without task 2's rows: exit 0, want an error\n%s", msg)
		}
		if code, msg := run(t, nil, ctxdep, "cache", "verify", out); code != 1 {
			t.Errorf("cache verify without task 2's rows: exit %d, want 1\n%s", code, msg)
		}
		// `sbatch --array=2 cache.sbatch` alone would compute a 1-worker
		// shard: the script refuses; with SHARD_COUNT=N it is the rerun.
		if code, msg := run(t, task(2, 2, 2), bash, sbatchFile); code != 2 {
			t.Errorf("rerun of task 2 without SHARD_COUNT: exit %d, want 2\n%s", code, msg)
		}
		mustRun(t, append(task(2, 2, 2), "SHARD_COUNT="+strconv.Itoa(n)), bash, sbatchFile)
		mustRun(t, nil, ctxdep, "cache", "merge", out)
		mustRun(t, nil, ctxdep, "cache", "verify", out)
		same(t, out)
	})
}
