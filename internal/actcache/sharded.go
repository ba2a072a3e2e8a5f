package actcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

// Kinds of Problem.
const (
	ProblemMissingWorker    = "missing-worker"    // a worker never wrote its manifest
	ProblemIncompleteWorker = "incomplete-worker" // a worker stopped before its last shard
	ProblemBadManifest      = "bad-manifest"      // a manifest file that cannot be read
	ProblemMissingShard     = "missing-shard"     // a listed shard file is gone
	ProblemCorruptShard     = "corrupt-shard"     // a listed shard's size or hash changed
	ProblemMismatch         = "mismatch"          // a worker used other inputs or settings
	ProblemWorkerCount      = "worker-count"      // files of builds with different worker counts
	ProblemRanges           = "ranges"            // row ranges that do not tile [0, R)
	ProblemStaleManifest    = "stale-manifest"    // manifest.json does not list the workers' shards
	ProblemIncomplete       = "incomplete"        // a single-machine build that stopped
	ProblemRunningWorker    = "running-worker"    // a worker that is still writing (its lock is held)
	ProblemShardHeader      = "shard-header"      // a listed shard whose header the manifest does not describe
	ProblemTempFile         = "temp-file"         // a temporary file that a killed build left
)

// Problem is one defect of a cache directory.
type Problem struct {
	Kind    string `json:"kind"`
	File    string `json:"file"`   // the shard or manifest concerned, relative to the directory
	Worker  int    `json:"worker"` // the worker whose rerun repairs it; -1 when none does
	Message string `json:"message"`
}

// Check is what Verify found in a cache directory.
type Check struct {
	Dir      string    `json:"dir"`
	Sharded  bool      `json:"sharded"`
	Workers  int       `json:"workers"` // N of a sharded build, 0 for a single-machine one
	Merged   bool      `json:"merged"`  // manifest.json lists the whole cache
	Rows     int       `json:"rows"`    // rows the cache holds (or the workers split)
	Shards   int       `json:"shards"`  // shard files hashed
	Bytes    int64     `json:"bytes"`   // their size
	Problems []Problem `json:"problems"`
	Rerun    []int     `json:"rerun_workers"` // worker indices to rerun, ascending
}

// OK reports whether the check found nothing wrong.
func (c *Check) OK() bool { return len(c.Problems) == 0 }

func (c *Check) add(p Problem) {
	c.Problems = append(c.Problems, p)
	if p.Worker >= 0 && !slices.Contains(c.Rerun, p.Worker) {
		c.Rerun = append(c.Rerun, p.Worker)
		slices.Sort(c.Rerun)
	}
}

// Err summarizes the problems as one error: the first problem in full,
// how many more there are, and the workers to rerun; nil when OK.
func (c *Check) Err() error {
	if c.OK() {
		return nil
	}
	msg := c.Problems[0].Message
	if k := len(c.Problems) - 1; k > 0 {
		msg += fmt.Sprintf(" (and %d more problem(s); `ctxdep cache verify %s` lists them)", k, c.Dir)
	}
	if len(c.Rerun) > 0 && c.Workers > 0 {
		msg += fmt.Sprintf("; workers to rerun: %s (of %d)", c.RerunList(), c.Workers)
	}
	return errors.New(msg)
}

// RerunList returns the workers to rerun as text: "1, 3".
func (c *Check) RerunList() string { return LayersText(c.Rerun) }

// workerSet is the workers' manifests of a sharded build, by index.
type workerSet struct {
	n    int
	mans []*Manifest // nil where missing or unreadable
}

// rerunHint says how to rerun worker i of n.
func rerunHint(i, n int) string {
	return fmt.Sprintf("rerun worker %d with the same flags and --shard %d/%d (it resumes, keeping its complete shards)", i, i, n)
}

// scanWorkers reads the worker manifests in dir and checks that they form
// one build: one worker count, every worker present and complete, the same
// inputs and settings, row ranges that tile [0, R). Shards are not hashed.
// It returns nil when dir holds no worker manifest.
func scanWorkers(dir string, c *Check) (*workerSet, error) {
	names, err := workerManifests(dir)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	byCount := map[int][]string{}
	var counts []int
	for _, name := range names {
		_, n, _ := parseWorkerManifestName(name)
		if byCount[n] == nil {
			counts = append(counts, n)
		}
		byCount[n] = append(byCount[n], name)
	}
	c.Sharded = true
	if len(counts) > 1 {
		var parts []string
		for _, n := range counts {
			parts = append(parts, fmt.Sprintf("%d workers (%s…)", n, byCount[n][0]))
		}
		c.add(Problem{Kind: ProblemWorkerCount, File: byCount[counts[1]][0], Worker: -1, Message: fmt.Sprintf(
			"%s holds the files of builds with %s: the worker count changed between runs and their row ranges overlap; remove the files of the count you do not want (w*-of-NNNNN-shard-*.safetensors and worker-*-of-NNNNN.json), then rerun the missing workers", dir, strings.Join(parts, " and "))})
		return nil, nil
	}
	n := counts[0]
	c.Workers = n
	ws := &workerSet{n: n, mans: make([]*Manifest, n)}
	for i := range n {
		name := WorkerManifestName(i, n)
		m, err := ReadManifestFile(filepath.Join(dir, name))
		h, running := workerRunning(dir, i, n)
		switch {
		case errors.Is(err, os.ErrNotExist) && running:
			c.add(Problem{Kind: ProblemRunningWorker, File: WorkerLockName(i, n), Worker: -1, Message: fmt.Sprintf(
				"worker %d of %d is still running (%s) and has written no shard yet: wait for it to finish, then run `ctxdep cache merge %s`", i, n, h, dir)})
			continue
		case errors.Is(err, os.ErrNotExist):
			c.add(Problem{Kind: ProblemMissingWorker, File: name, Worker: i, Message: fmt.Sprintf(
				"worker %d of %d has not run (no %s in %s): run it with --shard %d/%d", i, n, name, dir, i, n)})
			continue
		case err == nil && (m.Worker == nil || m.Worker.Index != i || m.Worker.Count != n):
			err = fmt.Errorf("actcache: %s: the manifest is not worker %d of %d's", name, i, n)
		}
		if err != nil {
			msg := fmt.Sprintf("%v; remove %s and %s", err, name, rerunHint(i, n))
			if errors.As(err, new(damagedError)) {
				msg = err.Error() // it says how to mend it
			}
			c.add(Problem{Kind: ProblemBadManifest, File: name, Worker: i, Message: msg})
			continue
		}
		ws.mans[i] = m
		if !m.Complete && running {
			c.add(Problem{Kind: ProblemRunningWorker, File: name, Worker: -1, Message: fmt.Sprintf(
				"worker %d of %d is still running (%s; %d of its shards written so far): wait for it to finish, then run `ctxdep cache merge %s`", i, n, h, len(m.Shards), dir)})
		} else if !m.Complete {
			c.add(Problem{Kind: ProblemIncompleteWorker, File: name, Worker: i, Message: fmt.Sprintf(
				"worker %d of %d stopped after %d of its shards (%s): %s", i, n, len(m.Shards), name, rerunHint(i, n))})
		}
	}
	// The reference is the build most workers agree on (the lowest index
	// breaks ties), so that the odd worker out is the one named.
	ref, best := -1, 0
	for i, m := range ws.mans {
		if m == nil {
			continue
		}
		agree := 0
		for _, o := range ws.mans {
			if o != nil && differences(m, o) == "" {
				agree++
			}
		}
		if agree > best {
			ref, best = i, agree
		}
	}
	if ref >= 0 {
		c.Rows = ws.mans[ref].Worker.TotalRows
	}
	for i, m := range ws.mans {
		if m == nil || i == ref {
			continue
		}
		if d := differences(ws.mans[ref], m); d != "" {
			c.add(Problem{Kind: ProblemMismatch, File: WorkerManifestName(i, n), Worker: i, Message: fmt.Sprintf(
				"worker %d of %d was built with other inputs or settings than worker %d (%s): all workers must use the same model, layer, token file, --n-tokens, --batch-size, --sequences-per-shard, --dtype and transcoder; remove worker %d's files (w%05d-of-%05d-shard-*.safetensors, %s) and rerun it with the same flags as the others",
				i, n, ref, d, i, i, n, WorkerManifestName(i, n))})
		}
	}
	// The ranges follow from (index, count, total rows), which check() and
	// differences() pin down; this guards the tiling itself.
	if ref < 0 {
		return ws, nil
	}
	next := 0
	for i, m := range ws.mans {
		if m == nil || differences(ws.mans[ref], m) != "" {
			next = -1
			continue
		}
		if next >= 0 && m.Data.FirstRow != next {
			c.add(Problem{Kind: ProblemRanges, File: WorkerManifestName(i, n), Worker: i, Message: fmt.Sprintf(
				"worker %d of %d starts at row %d, but the rows before end at %d: %s", i, n, m.Data.FirstRow, next, rerunHint(i, n))})
		}
		next = m.Data.FirstRow + m.Data.RowsTaken
	}
	if next >= 0 && next != ws.mans[ref].Worker.TotalRows {
		c.add(Problem{Kind: ProblemRanges, File: WorkerManifestName(n-1, n), Worker: n - 1, Message: fmt.Sprintf(
			"the workers' rows end at %d, not at %d: %s", next, ws.mans[ref].Worker.TotalRows, rerunHint(n-1, n))})
	}
	return ws, nil
}

// differences names what makes two workers' builds different; "" when they
// are parts of one build.
func differences(a, b *Manifest) string {
	var d []string
	diff := func(what string, x, y any) {
		if x != y {
			d = append(d, fmt.Sprintf("%s %v, not %v", what, y, x))
		}
	}
	short := func(s string) string { return fmt.Sprintf("%.12s…", s) }
	diff("model sha256", short(a.Model.SHA256), short(b.Model.SHA256))
	diff("layer", a.Layer, b.Layer)
	diff("dtype", a.DType, b.DType)
	diff("token file sha256", short(a.Data.SHA256), short(b.Data.SHA256))
	diff("data kind", a.Data.Kind, b.Data.Kind)
	if !a.Data.ToEnd && !b.Data.ToEnd {
		diff("input rows", a.Data.Rows, b.Data.Rows)
	}
	switch {
	case a.Worker != nil && b.Worker != nil:
		diff("rows split among the workers", a.Worker.TotalRows, b.Worker.TotalRows)
	case a.Data.ToEnd || b.Data.ToEnd:
		diff("the whole input (no --n-tokens)", a.Data.ToEnd, b.Data.ToEnd) // rows counted as read are no setting
	default:
		diff("rows", a.Data.RowsTaken, b.Data.RowsTaken)
	}
	diff("batch size", batchName(a.BatchSize), batchName(b.BatchSize))
	diff("d_model", a.DModel, b.DModel)
	diff("context length", a.ContextLength, b.ContextLength)
	diff("sequences per shard", a.SequencesPerShard, b.SequencesPerShard)
	diff("with acts", a.WithActs, b.WithActs)
	diff("y recomputed", a.YRecomputed, b.YRecomputed)
	diff("with scale", a.WithScale, b.WithScale)
	diff("d_sae", a.DSAE, b.DSAE)
	ta, tb := "", ""
	if a.Transcoder != nil {
		ta = a.Transcoder.SHA256
	}
	if b.Transcoder != nil {
		tb = b.Transcoder.SHA256
	}
	diff("transcoder sha256", short(ta), short(tb))
	diff("hooks", a.Hooks, b.Hooks)
	diff("data settings", fmt.Sprint(a.Data.Settings), fmt.Sprint(b.Data.Settings))
	return strings.Join(d, ", ")
}

// batchName describes a manifest's batch size for differences.
func batchName(b int) string {
	if b == 0 {
		return "unrecorded (a cache from an older ctxdep)"
	}
	return fmt.Sprint(b)
}

// orUnknown returns d, or a placeholder where differences found none of
// the settings it names.
func orUnknown(d string) string {
	if d == "" {
		return "a setting that shapes the rows"
	}
	return d
}

// hashJob is one listed shard to re-hash.
type hashJob struct {
	rec    Shard
	worker int       // -1 for a single-machine build
	n      int       // worker count
	man    *Manifest // the manifest that lists it, whose header it must match
	key    string    // the settings key its header must carry; "" when not known
}

// hashShards re-hashes the listed shards in parallel (the files are large;
// hashing is I/O bound on shared filesystems) and records missing and
// corrupt ones. progress, when not nil, is called with the bytes of each
// finished shard, from this goroutine. A cancelled ctx stops it between
// shards with ctx's error.
func hashShards(ctx context.Context, dir string, jobs []hashJob, c *Check, progress func(int64)) error {
	type result struct {
		p   provenance.File
		err error
	}
	res := make([]result, len(jobs))
	done := make(chan int)
	go par.Jobs(len(jobs), 8, func(_, i int) {
		if err := ctx.Err(); err != nil {
			res[i] = result{err: err}
		} else {
			p, err := provenance.Hash(filepath.Join(dir, jobs[i].rec.File))
			res[i] = result{p, err}
		}
		done <- i
	})
	for range jobs {
		i := <-done
		if progress != nil {
			progress(jobs[i].rec.Bytes)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, j := range jobs {
		rec, r := j.rec, res[i]
		hint := "rerun the same `ctxdep cache build` (it rewrites this shard and keeps the others)"
		who := ""
		if j.worker >= 0 {
			hint = fmt.Sprintf("rerun worker %d with the same flags and --shard %d/%d (it rewrites this shard and keeps the others)", j.worker, j.worker, j.n)
			who = fmt.Sprintf(" of worker %d of %d", j.worker, j.n)
		}
		c.Shards++
		switch {
		case errors.Is(r.err, os.ErrNotExist):
			c.add(Problem{Kind: ProblemMissingShard, File: rec.File, Worker: j.worker, Message: fmt.Sprintf(
				"shard %s%s is missing: %s", rec.File, who, hint)})
		case r.err != nil:
			c.add(Problem{Kind: ProblemCorruptShard, File: rec.File, Worker: j.worker, Message: fmt.Sprintf(
				"shard %s%s is unreadable (%v): %s", rec.File, who, r.err, hint)})
		case r.p.Size != rec.Bytes:
			c.Bytes += r.p.Size
			c.add(Problem{Kind: ProblemCorruptShard, File: rec.File, Worker: j.worker, Message: fmt.Sprintf(
				"shard %s%s is truncated or overwritten (%d bytes, the manifest recorded %d): %s", rec.File, who, r.p.Size, rec.Bytes, hint)})
		case r.p.SHA256 != rec.SHA256:
			c.Bytes += r.p.Size
			c.add(Problem{Kind: ProblemCorruptShard, File: rec.File, Worker: j.worker, Message: fmt.Sprintf(
				"shard %s%s is corrupt (sha256 %.12s…, the manifest recorded %.12s…): %s", rec.File, who, r.p.SHA256, rec.SHA256, hint)})
		default:
			c.Bytes += r.p.Size
			if j.man == nil {
				break
			}
			// The bytes are those recorded; the header must also be what
			// the manifest describes (an edited manifest keeps the hashes).
			if err := shardHeaderProblem(filepath.Join(dir, rec.File), j.man, rec, j.key); err != nil {
				fix := "restore the manifest, or rebuild the cache (into another --out, or after removing " + dir + ")"
				if j.worker >= 0 {
					fix = fmt.Sprintf("remove worker %d's files (w%05d-of-%05d-shard-*.safetensors, %s) and rerun it with --shard %d/%d", j.worker, j.worker, j.n, WorkerManifestName(j.worker, j.n), j.worker, j.n)
				}
				c.add(Problem{Kind: ProblemShardHeader, File: rec.File, Worker: j.worker, Message: fmt.Sprintf(
					"shard %s%s has the hash its manifest recorded, but %v: the manifest was edited, or describes other shards; %s", rec.File, who, err, fix)})
			}
		}
	}
	return nil
}

// workerJobs lists the shards of every readable worker manifest.
func (ws *workerSet) jobs() []hashJob {
	var jobs []hashJob
	for i, m := range ws.mans {
		if m == nil {
			continue
		}
		key := settingsKey(m)
		for _, s := range m.Shards {
			jobs = append(jobs, hashJob{rec: s, worker: i, n: ws.n, man: m, key: key})
		}
	}
	return jobs
}

// TotalBytes returns the bytes Verify or Merge will hash in dir (for a
// progress bar); 0 when it cannot tell.
func TotalBytes(dir string) int64 {
	var c Check
	if ws, _ := scanWorkers(dir, &c); ws != nil {
		var total int64
		for _, j := range ws.jobs() {
			total += j.rec.Bytes
		}
		return total
	}
	if m, err := ReadManifest(dir); err == nil {
		return m.Bytes()
	}
	return 0
}

// merged returns the manifest of the whole cache that the complete,
// consistent worker set ws makes: the workers' shards in row order, the
// inputs and settings they share, rows [0, R).
func (ws *workerSet) merged() *Manifest {
	first := ws.mans[0]
	m := *first
	m.Worker, m.Workers, m.Complete = nil, ws.n, true
	m.NSequences = first.Worker.TotalRows
	m.NTokens = int64(m.NSequences) * int64(m.ContextLength)
	m.Data.FirstRow, m.Data.RowsTaken = 0, m.NSequences
	m.Data.Counts = nil
	m.Shards = nil
	for _, w := range ws.mans {
		m.Shards = append(m.Shards, w.Shards...)
	}
	return &m
}

// Verify re-hashes every shard of the cache in dir (a single-machine build,
// the workers of a sharded one, merged or not) against the manifests that
// list them, checks each intact shard's header against its manifest (an
// edited manifest keeps the hashes), and checks a sharded build's workers
// as Merge does; a build or worker that is still running (its lock held)
// is reported as running, not as stopped. It also lists the temporary
// files that killed runs left (ProblemTempFile; a running writer's are
// not listed), which the next build, worker or merge in dir removes. Problems
// are reported in the Check, with the worker indices to rerun; the error
// is for a directory that is not a cache at all. progress, when not nil,
// receives the bytes hashed.
func Verify(ctx context.Context, dir string, progress func(int64)) (*Check, error) {
	c := &Check{Dir: dir, Problems: []Problem{}, Rerun: []int{}}
	ws, err := scanWorkers(dir, c)
	if err != nil {
		return nil, err
	}
	mpath := filepath.Join(dir, ManifestName)
	m, merr := ReadManifestFile(mpath)
	if merr != nil && !errors.Is(merr, os.ErrNotExist) {
		if !c.Sharded {
			return nil, merr
		}
		c.add(Problem{Kind: ProblemBadManifest, File: ManifestName, Worker: -1, Message: fmt.Sprintf(
			"%v; remove it and run `ctxdep cache merge %s`", merr, dir)})
	}
	if !c.Sharded {
		if errors.Is(merr, os.ErrNotExist) {
			_, err := ReadManifest(dir) // the error that says what dir is
			return nil, err
		}
		if m.Worker != nil {
			return nil, fmt.Errorf("actcache: %s is a worker's manifest", mpath)
		}
		c.Merged, c.Rows, c.Workers, c.Sharded = true, m.NSequences, m.Workers, m.Workers > 0
		if h, running, _ := dirlock.Probe(dirlock.Path(dir)); !m.Complete && running {
			c.add(Problem{Kind: ProblemIncomplete, File: ManifestName, Worker: -1, Message: fmt.Sprintf(
				"%s is incomplete: it is being written by %s (%d shards so far); wait for it to finish", dir, h, len(m.Shards))})
		} else if !m.Complete {
			c.add(Problem{Kind: ProblemIncomplete, File: ManifestName, Worker: -1, Message: fmt.Sprintf(
				"%s is incomplete (%d shards written before the build stopped): rerun the same `ctxdep cache build` (it resumes)", dir, len(m.Shards))})
		}
		// A merged cache whose worker manifests were removed: the shard
		// names still say which worker wrote them.
		var jobs []hashJob
		key := "" // a merged cache's shards carry their workers' keys
		if m.Workers == 0 {
			key = settingsKey(m)
		}
		for _, s := range m.Shards {
			w, n, ok := ParseWorkerShardName(s.File)
			if !ok || n != m.Workers {
				w, n = -1, 0
			}
			jobs = append(jobs, hashJob{rec: s, worker: w, n: n, man: m, key: key})
		}
		if err := hashShards(ctx, dir, jobs, c, progress); err != nil {
			return nil, err
		}
		if err := leftoverProblems(dir, c); err != nil {
			return nil, err
		}
		return c, nil
	}
	if ws != nil {
		if err := hashShards(ctx, dir, ws.jobs(), c, progress); err != nil {
			return nil, err
		}
	}
	if err := leftoverProblems(dir, c); err != nil {
		return nil, err
	}
	if merr != nil {
		return c, nil
	}
	c.Merged = true
	switch {
	case m.Workers == 0:
		c.add(Problem{Kind: ProblemWorkerCount, File: ManifestName, Worker: -1, Message: fmt.Sprintf(
			"%s holds both a single-machine cache (%s) and worker files: use separate directories", dir, ManifestName)})
	case c.Workers > 0 && m.Workers != c.Workers:
		c.add(Problem{Kind: ProblemWorkerCount, File: ManifestName, Worker: -1, Message: fmt.Sprintf(
			"%s was merged from %d workers, the worker files are of %d: the worker count changed between runs", ManifestName, m.Workers, c.Workers)})
	case c.OK():
		want, _ := encodeManifest(ws.merged())
		have, _ := encodeManifest(m)
		if !bytes.Equal(want, have) {
			c.add(Problem{Kind: ProblemStaleManifest, File: ManifestName, Worker: -1, Message: fmt.Sprintf(
				"%s does not list the workers' current shards (a worker ran after the merge): run `ctxdep cache merge %s` again", ManifestName, dir)})
		}
	}
	return c, nil
}

// Merge checks the workers of the sharded build in dir (one worker count,
// every worker complete, the same model, layer, dtype and token file, row
// ranges tiling [0, R), every shard's size and hash) and writes
// dir/manifest.json for the whole cache, atomically. Any problem is an
// error that names the shard and the worker to rerun, and nothing is
// written. An existing manifest.json is replaced only when it is the merge
// of the same build (rerunning merge after a worker was rerun); a
// single-machine cache or another build's merge is refused. progress, when
// not nil, receives the bytes hashed.
//
// Merge holds dir's lock (internal/dirlock) while it runs, so that a
// single-machine build or another merge cannot write there meanwhile, and
// refuses while a worker still runs (its own lock held), naming it; under
// the lock it removes the temporary files that killed workers or merges
// left.
func Merge(ctx context.Context, dir string, progress func(int64)) (*Manifest, *Check, error) {
	return MergeWith(ctx, dir, progress, nil)
}

// MergeWith is Merge with a notice function, which receives what Merge
// tells the user besides its result (a lock left by a killed run taken
// over, temporary files removed); nil writes it to stderr.
func MergeWith(ctx context.Context, dir string, progress func(int64), notice func(string)) (*Manifest, *Check, error) {
	if notice == nil {
		notice = func(s string) { fmt.Fprintf(os.Stderr, "ctxdep: %s\n", s) }
	}
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		l, err := dirlock.TryLock(dirlock.Path(dir), dirlock.Options{What: "ctxdep cache merge", Subject: dir, Notice: notice,
			Advice: "wait for it to finish, then merge"})
		if err != nil {
			return nil, nil, fmt.Errorf("actcache: %w", err)
		}
		defer l.Release()
		removeMergeLeftovers(dir, notice)
	}
	c := &Check{Dir: dir, Problems: []Problem{}, Rerun: []int{}}
	ws, err := scanWorkers(dir, c)
	if err != nil {
		return nil, nil, err
	}
	if !c.Sharded {
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("actcache: %w", err)
		}
		if m, err := ReadManifest(dir); err == nil && m.Workers == 0 {
			return nil, nil, fmt.Errorf("actcache: %s is a single-machine cache: there is nothing to merge", dir)
		}
		return nil, nil, fmt.Errorf("actcache: %s holds no worker manifests (worker-IIIII-of-NNNNN.json): run `ctxdep cache build --shard i/N --out %s` for i = 0..N-1 first", dir, dir)
	}
	if ws != nil && c.OK() {
		if err := hashShards(ctx, dir, ws.jobs(), c, progress); err != nil {
			return nil, nil, err
		}
	}
	if err := c.Err(); err != nil {
		return nil, c, fmt.Errorf("actcache: cannot merge %s: %w; nothing was written", dir, err)
	}
	m := ws.merged()
	c.Merged, c.Rows = true, m.NSequences
	raw, err := encodeManifest(m)
	if err != nil {
		return nil, c, err
	}
	path := filepath.Join(dir, ManifestName)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, raw):
		return m, c, nil // merged before: nothing to do
	case err == nil:
		om, rerr := parseManifest(path, old)
		if errors.As(rerr, new(damagedError)) {
			return nil, c, fmt.Errorf("%w (it is left as it is until then)", rerr) // the advice is to remove it and merge
		}
		if rerr != nil {
			return nil, c, fmt.Errorf("%w; it is left as it is: remove it to merge", rerr)
		}
		if om.Workers != m.Workers || settingsKey(om) != settingsKey(m) {
			return nil, c, fmt.Errorf("actcache: %s exists and describes another cache (%d workers, layer %d, %d sequences); it is left as it is: remove it, or merge into another directory", path, om.Workers, om.Layer, om.NSequences)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, c, fmt.Errorf("actcache: %w", err)
	}
	if err := atomicfile.WriteFile(path, raw); err != nil {
		return nil, c, fmt.Errorf("actcache: write %s: %w", path, err)
	}
	return m, c, nil
}

// tempOwner returns who writes the file that base, the destination of a
// temporary file in a cache directory, names: worker w of n, or w = -1
// for a single-machine build or a merge; ok is false for files that are
// not a cache's.
func tempOwner(base string) (w, n int, ok bool) {
	if w, n, ok := ParseWorkerShardName(base); ok {
		return w, n, true
	}
	if w, n, ok := parseWorkerManifestName(base); ok {
		return w, n, true
	}
	return -1, 0, isCacheFile(base)
}

// liveTemp reports whether the writer of a temporary file of the cache
// directory dir is running: its lock (the worker's, or the directory's)
// is held.
func liveTemp(dir, base string) bool {
	w, n, _ := tempOwner(base)
	if w >= 0 {
		_, held := workerRunning(dir, w, n)
		return held
	}
	_, held, err := dirlock.Probe(dirlock.Path(dir))
	return held || err != nil
}

// leftoverProblems adds a Problem for each temporary file in dir that a
// killed build or merge left (one whose writer is not running).
func leftoverProblems(dir string, c *Check) error {
	names, err := atomicfile.Leftovers(dir, func(base string) bool {
		_, _, ok := tempOwner(base)
		return ok
	})
	if err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	for _, name := range names {
		base, _ := atomicfile.ParseTempName(name)
		if liveTemp(dir, base) {
			continue
		}
		var size int64
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			size = fi.Size()
		}
		w, n, _ := tempOwner(base)
		fix := "rerun the same `ctxdep cache build` (it removes it and resumes), or delete it"
		switch {
		case w >= 0:
			fix = fmt.Sprintf("rerun worker %d with the same flags and --shard %d/%d (it removes it and resumes), or delete it", w, w, n)
		case base == ManifestName && c.Sharded:
			fix = fmt.Sprintf("run `ctxdep cache merge %s` (it removes it), or delete it", dir)
		}
		c.add(Problem{Kind: ProblemTempFile, File: name, Worker: w, Message: fmt.Sprintf(
			"%s is a temporary file (%d bytes) that a killed run left while writing %s; nothing reads it: %s", filepath.Join(dir, name), size, base, fix)})
	}
	return nil
}

// removeMergeLeftovers removes, under dir's lock, the temporary files of
// manifest.json and of the workers that are not running.
func removeMergeLeftovers(dir string, notice func(string)) {
	removed, _ := atomicfile.RemoveLeftovers(dir, func(base string) bool {
		w, n, ok := tempOwner(base)
		if !ok {
			return false
		}
		if w < 0 {
			return true // under dir's lock, which Merge holds
		}
		_, running := workerRunning(dir, w, n)
		return !running
	})
	if len(removed) > 0 {
		notice(fmt.Sprintf("removed %d temporary file(s) that killed runs left in %s (%s)", len(removed), dir, strings.Join(removed, ", ")))
	}
}
