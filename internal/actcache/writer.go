package actcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// ErrNoRows is Finish's error for a build whose input (streamed, its rows
// not known in advance) ended before its first row.
var ErrNoRows = errors.New("actcache: the input holds no rows")

// Metadata keys of each shard's safetensors header.
const (
	metaFormat   = "format"
	metaSettings = "ctxdep_settings"
	metaFirstRow = "first_row"
)

// Writer builds a cache shard by shard, resuming a build that was
// interrupted with the same settings.
type Writer struct {
	dir      string
	man      Manifest
	key      string
	open     bool             // the rows are not known until the input ends (Data.ToEnd)
	kept     []*Shard         // per shard index: the complete shard on disk, or nil
	recorded map[string]Shard // shards the earlier run's manifest lists, by file name
	repair   []string         // shards on disk that do not match that record: rewritten
	unlisted map[int]unlisted // shards on disk that no manifest lists: computed again and compared
	lock     *dirlock.Lock    // the directory's lock, or the worker's; nil once released
	notice   func(string)
}

// unlisted is a shard file of this build's settings that the manifest does
// not list: the run that wrote it stopped (killed, or out of disk space)
// between renaming it into place and recording it. Nothing vouches for its
// content, so the build computes it again and compares.
type unlisted struct {
	name   string
	sha256 string // of the file found; "" when it could not be read to its end
	why    string // why it cannot be kept as it is, when its header already says so
}

// CreateOptions are Create's options.
type CreateOptions struct {
	// Notice receives what the writer tells the user while it prepares
	// the directory: a lock left by a killed run taken over, temporary
	// files removed, shards that no manifest lists computed again. nil
	// writes them to stderr.
	Notice func(string)
}

// settingsKey hashes what determines a cache's content (not paths, not
// progress): two builds with the same key write identical shards.
func settingsKey(m *Manifest) string {
	id := struct {
		Layer, DModel, T, PerShard, DSAE int
		DType                            string
		WithActs                         bool
		YRecomputed                      bool `json:",omitempty"`
		WithScale                        bool `json:",omitempty"`
		Model, Transcoder, Data          string
		Rows, FirstRow, RowsTaken        int
		Format                           string
		DataSettings                     map[string]string
		Worker                           *Worker `json:",omitempty"` // absent: single-machine keys stay as they were
		BatchSize                        int     `json:",omitempty"` // absent in caches from before batch grids
		ToEnd                            bool    `json:",omitempty"`
	}{WithScale: m.WithScale, YRecomputed: m.YRecomputed, BatchSize: m.BatchSize, Layer: m.Layer, DModel: m.DModel, T: m.ContextLength, PerShard: m.SequencesPerShard, DSAE: m.DSAE,
		DType: m.DType, WithActs: m.WithActs, Model: m.Model.SHA256, Data: m.Data.SHA256,
		Rows: m.Data.Rows, FirstRow: m.Data.FirstRow, RowsTaken: m.Data.RowsTaken, ToEnd: m.Data.ToEnd, Format: Format + "/" + strconv.Itoa(Version), DataSettings: m.Data.Settings, Worker: m.Worker}
	if m.Transcoder != nil {
		id.Transcoder = m.Transcoder.SHA256
	}
	if m.Data.ToEnd {
		id.Rows, id.RowsTaken = 0, 0 // counted as the build goes
	}
	raw, _ := json.Marshal(id)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

// Create prepares dir for the build that man describes (its Shards and
// Complete fields are ignored). Complete shards from an earlier run with the
// same settings are kept; a directory holding a cache built with other
// settings is an error, and nothing in it is touched. A shard that the
// earlier run's manifest lists but that no longer matches its recorded hash
// (truncated or corrupted on disk) is rewritten; one whose hash matches
// but whose header is not this build's (the manifest was edited: its
// layer, say) is an error. A shard of this build's settings that the
// manifest does not list is computed again (Has is false) and compared
// (Unlisted). A directory that holds anything else than a cache's files
// (ForeignFiles: another tool's output) is refused, and left untouched.
//
// The writer holds dir's lock (internal/dirlock) from Create to Finish or
// Close, so that a second build into dir is refused with a message that
// names this one; under the lock, the temporary files that a killed run
// left (.shard-NNNNN.safetensors.tmp-*, .manifest.json.tmp-*) are removed.
// A write that fails releases the lock; a caller that gives up between
// writes calls Close (a process that exits releases it too).
//
// With man.Worker set, the writer is one worker of a sharded build: it
// caches the worker's range of rows (man's NSequences and the Data row
// fields are set from it), names its files with WorkerShardName and
// WorkerManifestName, and never writes the cache's manifest.json. It locks
// only its own files (WorkerLockName), so that the workers can share dir,
// and is refused while a single-machine build or a merge holds dir's lock.
func Create(dir string, man Manifest) (*Writer, error) {
	return CreateWith(dir, man, CreateOptions{})
}

// CreateWith is Create with options.
func CreateWith(dir string, man Manifest, o CreateOptions) (*Writer, error) {
	if wk := man.Worker; wk != nil {
		if err := wk.check(); err != nil {
			return nil, fmt.Errorf("actcache: %w", err)
		}
		man.Data.FirstRow, man.Data.RowsTaken = wk.Range()
		man.NSequences = man.Data.RowsTaken
	}
	open := man.Data.ToEnd && man.Worker == nil
	if open {
		man.NSequences, man.Data.Rows, man.Data.RowsTaken = 0, 0, 0
	}
	if man.SequencesPerShard <= 0 || (man.NSequences <= 0 && !open) || man.BatchSize < 0 {
		return nil, fmt.Errorf("actcache: nothing to write (%d sequences, %d per shard, batches of %d)", man.NSequences, man.SequencesPerShard, man.BatchSize)
	}
	man.Format, man.Version, man.Complete, man.Shards, man.Workers = Format, Version, false, nil, 0
	man.NTokens = int64(man.NSequences) * int64(man.ContextLength)
	w := &Writer{dir: dir, man: man, key: settingsKey(&man), open: open, unlisted: map[int]unlisted{}, notice: o.Notice}
	if w.notice == nil {
		w.notice = func(s string) { fmt.Fprintf(os.Stderr, "ctxdep: %s\n", s) }
	}
	w.kept = make([]*Shard, (man.NSequences+man.SequencesPerShard-1)/man.SequencesPerShard)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	if err := w.lockDir(); err != nil {
		return nil, err
	}
	if foreign, err := ForeignFiles(dir); err == nil && len(foreign) > 0 {
		w.release()
		if IsCacheDir(dir) {
			return nil, fmt.Errorf("actcache: %s is an activation cache, but also holds files that are not a cache's (%s): move them out of it to resume or rebuild the cache there, or choose an empty or new directory", dir, nameList(foreign))
		}
		return nil, fmt.Errorf("actcache: %s holds files that are not an activation cache's (%s): a cache build writes only into a new or empty directory, or one that holds a cache to resume; choose an empty or new directory", dir, nameList(foreign))
	}
	if err := w.prepare(); err != nil {
		w.release()
		return nil, err
	}
	w.noticeUnlisted()
	w.removeLeftovers()
	return w, nil
}

// prepare reads what an earlier run left in the directory: its manifest
// and its shards.
func (w *Writer) prepare() error {
	dir, man := w.dir, w.man
	// The earlier run's manifest: checkLayout has read manifest.json, a
	// single-machine build's own; a worker keeps its own file.
	old, err := w.checkLayout()
	if err != nil {
		return err
	}
	path := filepath.Join(dir, man.fileName())
	if man.Worker != nil {
		if old, err = ReadManifestFile(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err // a manifest we cannot read: do not overwrite it
		}
	}
	if old != nil {
		if settingsKey(old) != w.key {
			return fmt.Errorf("actcache: %s holds a cache built with other settings or inputs than this run's (%s); use the same settings to resume it, another --out, or remove it", path, orUnknown(differences(&w.man, old)))
		}
		w.recorded = map[string]Shard{}
		for _, s := range old.Shards {
			w.recorded[s.File] = s
		}
		// What the earlier run read of the input, kept unless this run
		// reads it all again (SetDataCounts).
		w.man.Data.Counts = old.Data.Counts
		if w.open && old.Complete {
			// Read to its end before: the rows are known now.
			w.open = false
			w.man.NSequences, w.man.NTokens, w.man.Data.Rows, w.man.Data.RowsTaken = old.NSequences, old.NTokens, old.Data.Rows, old.Data.RowsTaken
			w.kept = make([]*Shard, len(old.Shards))
		}
	}
	if w.open {
		// The complete shards an earlier run left, in order, up to the
		// first missing one or the short one the input ended with.
		for i := 0; ; i++ {
			s, err := w.existing(i)
			if err != nil {
				return err
			}
			if s == nil {
				break
			}
			w.kept = append(w.kept, s)
			if s.NSequences < man.SequencesPerShard {
				break
			}
		}
		return nil
	}
	for i := range w.kept {
		s, err := w.existing(i)
		if err != nil {
			return err
		}
		w.kept[i] = s
	}
	return nil
}

// lockDir takes the lock the writer holds while it writes: the
// directory's for a single-machine build, the worker's own for a worker,
// which then checks that no single-machine build or merge holds the
// directory's (and a single-machine build that no worker is running).
func (w *Writer) lockDir() error {
	wk := w.man.Worker
	if wk == nil {
		l, err := dirlock.TryLock(dirlock.Path(w.dir), dirlock.Options{What: "ctxdep cache build", Subject: w.dir, Notice: w.notice})
		if err != nil {
			return fmt.Errorf("actcache: %w", err)
		}
		running, err := runningWorkers(w.dir)
		if err == nil && len(running) > 0 {
			r := running[0]
			err = fmt.Errorf("actcache: %s is being written by worker %d of %d of a sharded build (%s): a single-machine build needs another --out", w.dir, r.index, r.count, r.holder)
		}
		if err != nil {
			return errors.Join(err, l.Release())
		}
		w.lock = l
		return nil
	}
	l, err := dirlock.TryLock(filepath.Join(w.dir, WorkerLockName(wk.Index, wk.Count)), dirlock.Options{
		What: fmt.Sprintf("ctxdep cache build --shard %d/%d", wk.Index, wk.Count), Subject: fmt.Sprintf("%s (worker %d of %d)", w.dir, wk.Index, wk.Count),
		Advice: "another run of this worker is in progress: wait for it to finish", Notice: w.notice})
	if err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	h, held, err := dirlock.Probe(dirlock.Path(w.dir))
	if err == nil && held {
		err = fmt.Errorf("actcache: %w", &dirlock.BusyError{Path: dirlock.Path(w.dir), Subject: w.dir, Holder: h,
			Advice: "a worker cannot write there meanwhile: wait for it to finish, or use another --out"})
	}
	if err != nil {
		return errors.Join(err, l.Release())
	}
	w.lock = l
	return nil
}

// runningWorker is a worker whose lock a live process holds.
type runningWorker struct {
	index, count int
	holder       *dirlock.Holder
}

// runningWorkers returns the workers of a sharded build that are writing
// into dir now (their WorkerLockName held), in name order.
func runningWorkers(dir string) ([]runningWorker, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	var out []runningWorker
	for _, e := range entries {
		i, n, ok := parseWorkerLockName(e.Name())
		if !ok {
			continue
		}
		h, held, err := dirlock.Probe(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("actcache: %w", err)
		}
		if held {
			out = append(out, runningWorker{i, n, h})
		}
	}
	return out, nil
}

// workerRunning returns the holder of worker i of n's lock in dir, and
// whether a live process holds it.
func workerRunning(dir string, i, n int) (*dirlock.Holder, bool) {
	h, held, err := dirlock.Probe(filepath.Join(dir, WorkerLockName(i, n)))
	return h, held && err == nil
}

// ownsTemp reports whether base, the destination of a temporary file, is
// a file of the build w describes: its shards and its manifest.
func (w *Writer) ownsTemp(base string) bool {
	if base == w.man.fileName() {
		return true
	}
	if wk := w.man.Worker; wk != nil {
		i, n, ok := ParseWorkerShardName(base)
		return ok && i == wk.Index && n == wk.Count
	}
	return isCacheFile(base) && base != ManifestName && !isWorkerFile(base)
}

// isWorkerFile reports whether name is a worker's shard or manifest.
func isWorkerFile(name string) bool {
	if _, _, ok := ParseWorkerShardName(name); ok {
		return true
	}
	_, _, ok := parseWorkerManifestName(name)
	return ok
}

// removeLeftovers removes, under the writer's lock, the temporary files
// of its own shards and manifest that a killed run left (a live writer's
// would be under its lock, which this one holds).
func (w *Writer) removeLeftovers() {
	removed, err := atomicfile.RemoveLeftovers(w.dir, w.ownsTemp)
	if err != nil {
		w.notice(fmt.Sprintf("cannot remove the temporary files that a killed run left in %s: %v", w.dir, err))
	}
	if len(removed) > 0 {
		w.notice(fmt.Sprintf("removed %d temporary file(s) that a killed run left in %s (%s)", len(removed), w.dir, strings.Join(removed, ", ")))
	}
}

// release drops the writer's lock; the writer cannot write afterwards.
func (w *Writer) release() error {
	err := w.lock.Release()
	w.lock = nil
	if err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	return nil
}

// usable returns the error of a write after the writer's lock was released.
func (w *Writer) usable() error {
	if w.lock == nil {
		return fmt.Errorf("actcache: the writer of %s is closed (after Finish, Close or a failed write)", w.ManifestPath())
	}
	return nil
}

// Close releases the writer's lock without finishing the cache: the shards
// written stay, listed in an incomplete manifest, for a later run to
// resume. It is a no-op after Finish, a failed write or another Close, so
// that a caller can defer it.
func (w *Writer) Close() error {
	if w == nil || w.lock == nil {
		return nil
	}
	return w.release()
}

// checkLayout refuses to mix a single-machine build and the workers of a
// sharded one, or workers of different counts, in one directory: their
// files would not add up to one cache. It returns the directory's
// manifest.json, nil when there is none; a manifest.json it cannot read is
// an error, so that it is not overwritten.
func (w *Writer) checkLayout() (*Manifest, error) {
	names, err := workerManifests(w.dir)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	merged, err := ReadManifestFile(filepath.Join(w.dir, ManifestName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	wk := w.man.Worker
	if wk == nil {
		if len(names) > 0 {
			return nil, fmt.Errorf("actcache: %s holds the shards of a sharded build (%s…): run its workers with --shard i/N, or use another --out", w.dir, names[0])
		}
		if merged != nil && merged.Workers > 0 {
			return nil, fmt.Errorf("actcache: %s holds a cache merged from %d workers: rerun a worker with --shard i/%d, or use another --out", w.dir, merged.Workers, merged.Workers)
		}
		return merged, nil
	}
	if merged != nil && merged.Workers == 0 {
		return nil, fmt.Errorf("actcache: %s holds a single-machine cache: a sharded build needs another --out", w.dir)
	}
	if merged != nil && merged.Workers != wk.Count {
		return nil, fmt.Errorf("actcache: %s holds a cache merged from %d workers, and this is worker %d of %d: the worker count cannot change between runs; rerun with --shard %d/%d, or use another --out", w.dir, merged.Workers, wk.Index, wk.Count, wk.Index, merged.Workers)
	}
	for _, name := range names {
		if _, n, _ := parseWorkerManifestName(name); n != wk.Count {
			return nil, fmt.Errorf("actcache: %s holds %s, written by a build with %d workers, and this is worker %d of %d: the worker count cannot change between runs; rerun every worker with --shard i/%d, or use another --out (or remove the %d-worker files)", w.dir, name, n, wk.Index, wk.Count, n, n)
		}
	}
	if err := w.checkSiblings(names); err != nil {
		return nil, err
	}
	return merged, nil
}

// checkSiblings compares a worker's build with the other workers' whose
// manifests are in the directory (names): their rows join into one cache
// only when they were built with the same inputs and settings, and merge
// would refuse this worker's files only after all of its work. This run is
// refused when it differs from every sibling it can read; when some agree
// with it, the others are the odd ones out, and a notice names them (merge
// and verify say how to mend them). Unreadable manifests are left to merge.
func (w *Writer) checkSiblings(names []string) error {
	wk := w.man.Worker
	var agree []int
	type odd struct {
		index int
		diff  string
	}
	var differ []odd
	for _, name := range names {
		i, n, _ := parseWorkerManifestName(name)
		if i == wk.Index {
			continue
		}
		m, err := ReadManifestFile(filepath.Join(w.dir, name))
		if err != nil || m.Worker == nil || m.Worker.Index != i || m.Worker.Count != n {
			continue
		}
		if d := differences(m, &w.man); d != "" {
			differ = append(differ, odd{i, d})
		} else {
			agree = append(agree, i)
		}
	}
	if len(differ) == 0 {
		return nil
	}
	files := func(i int) string {
		return fmt.Sprintf("w%05d-of-%05d-shard-*.safetensors and %s", i, wk.Count, WorkerManifestName(i, wk.Count))
	}
	d := differ[0]
	if len(agree) == 0 {
		more := ""
		if len(differ) > 1 {
			more = fmt.Sprintf(" (and %d other worker(s) built like it)", len(differ)-1)
		}
		return fmt.Errorf("actcache: this is worker %d of %d, run with other inputs or settings than worker %d was built with in %s%s (this run's %s): every worker of a sharded build must use the same model, layer, token file, --n-tokens, --batch-size, --sequences-per-shard, --dtype and transcoder, or the workers' rows do not join into one cache; rerun with worker %d's flags, or, if worker %d's are the ones to change, remove its files (%s) first",
			wk.Index, wk.Count, d.index, w.dir, more, d.diff, d.index, d.index, files(d.index))
	}
	for _, d := range differ {
		w.notice(fmt.Sprintf("note: worker %d of %d in %s was built with other inputs or settings than this worker and worker(s) %s (this run's %s): cache merge will refuse it; remove its files (%s) and rerun it with this run's flags",
			d.index, wk.Count, w.dir, LayersText(agree), d.diff, files(d.index)))
	}
	return nil
}

// existing checks shard i on disk: absent → nil; listed by the earlier
// manifest with the hash it has, and with this build's header → its
// description; listed but no longer matching its hash → nil (it is
// rewritten); not listed but of this build's settings → nil (it is
// computed again and compared: w.unlisted); anything else → an error.
func (w *Writer) existing(i int) (*Shard, error) {
	name := w.man.shardName(i)
	path := filepath.Join(w.dir, name)
	first, n := w.ShardRows(i)
	if rec, ok := w.recorded[name]; ok {
		p, err := provenance.Hash(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("actcache: %w", err)
		}
		if p.SHA256 == rec.SHA256 && p.Size == rec.Bytes && rec.FirstRow == first && (rec.NSequences == n || w.open && rec.NSequences > 0 && rec.NSequences < n) {
			// The bytes are those the manifest recorded; the header must
			// also be this build's: an edited manifest (its layer, say)
			// keeps its shards' hashes.
			if err := shardHeaderProblem(path, &w.man, rec, w.key); err != nil {
				return nil, fmt.Errorf("actcache: %s is listed in %s with its hash, but %v: the manifest was edited, or describes other shards; use another --out, or remove %s to rebuild it", path, w.ManifestPath(), err, w.rebuildWhat())
			}
			s := rec
			return &s, nil
		}
		w.repair = append(w.repair, name)
		return nil, nil
	}
	f, err := safetensors.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("actcache: %s is not listed in %s and is unreadable (remove it to rebuild it): %w", path, w.ManifestPath(), err)
	}
	md := f.Metadata()
	rows := n
	if t, ok := f.Tensor("tokens"); ok && w.open && len(t.Shape) == 2 && t.Shape[0] > 0 && t.Shape[0] < n {
		rows = t.Shape[0] // the short shard the input ended with
	}
	f.Close()
	if md[metaSettings] != w.key || md[metaFirstRow] != strconv.Itoa(first) {
		what := "other settings"
		switch {
		case md["layer"] != strconv.Itoa(w.man.Layer):
			what = fmt.Sprintf("other settings (layer %q, this build's is %d)", md["layer"], w.man.Layer)
		case md[metaFirstRow] != strconv.Itoa(first):
			what = fmt.Sprintf("other settings (its first row is %q, this build's shard %d starts at row %d)", md[metaFirstRow], i, first)
		}
		return nil, fmt.Errorf("actcache: %s was written by a build with %s; use another --out or remove it", path, what)
	}
	// This build's settings, but nothing recorded its content: compute it
	// again and compare (WriteShard). Its header and readability are
	// checked now, to say what is wrong with it.
	u := unlisted{name: name}
	nnz, _ := strconv.ParseInt(md["nnz"], 10, 64)
	if err := shardHeaderProblem(path, &w.man, Shard{File: name, NSequences: rows, FirstRow: first, NNZ: nnz}, w.key); err != nil {
		u.why = err.Error()
	} else if p, err := provenance.Hash(path); err != nil {
		u.why = fmt.Sprintf("it cannot be read to its end (%v)", err)
	} else {
		u.sha256 = p.SHA256
	}
	w.unlisted[i] = u
	if u.why != "" {
		w.notice(fmt.Sprintf("%s is not listed in %s, and %s: it is written again", path, w.ManifestPath(), u.why))
	}
	return nil, nil
}

// noticeUnlisted tells the user about the unlisted shards of this build's
// settings whose header is intact, in one notice.
func (w *Writer) noticeUnlisted() {
	idx := slices.Sorted(maps.Keys(w.unlisted))
	var names []string
	for _, i := range idx {
		if u := w.unlisted[i]; u.why == "" {
			names = append(names, u.name)
		}
	}
	if len(names) == 0 {
		return
	}
	list := strings.Join(names, ", ")
	if len(names) > 3 {
		list = fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
	}
	w.notice(fmt.Sprintf("%d shard(s) in %s are not listed in %s (the run that wrote them stopped before recording them): %s; they are computed again and compared before the cache lists them",
		len(names), w.dir, filepath.Base(w.ManifestPath()), list))
}

// shardHeaderProblem checks the safetensors header of the shard file at
// path against what a build of m writes for shard s: the tensors (names,
// dtypes, shapes for s's rows), the metadata (format, layer, hooks, first
// row, nnz, and the settings key when key is not ""). It returns what
// differs, as a phrase about the shard ("its header says layer 1, the
// manifest layer 2"), or nil.
func shardHeaderProblem(path string, m *Manifest, s Shard, key string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("its header cannot be read (%v)", err)
	}
	defer f.Close()
	md := f.Metadata()
	want := shardMetadata(m, s)
	if key != "" {
		want = append(want, metaEntry{key: metaSettings, value: key, what: "settings key"})
	}
	for _, c := range want {
		if (c.key == "x" || c.key == "y") && c.value == "" {
			continue // a manifest without hooks
		}
		got, ok := md[c.key]
		switch {
		case !ok && c.optional:
		case !ok:
			return fmt.Errorf("its header has no %s (%q)", c.what, c.key)
		case got != c.value:
			return fmt.Errorf("its header says %s %s, the manifest %s", c.what, got, c.value)
		}
	}
	n := s.NSequences
	tensors := shardTensors(m, n, s.NNZ)
	if got := len(f.Tensors()); got != len(tensors) {
		return fmt.Errorf("it holds %d tensors, a shard of this cache %d", got, len(tensors))
	}
	for _, wt := range tensors {
		gt, ok := f.Tensor(wt.Name)
		switch {
		case !ok:
			return fmt.Errorf("it has no tensor %q", wt.Name)
		case gt.DType != wt.DType:
			return fmt.Errorf("its tensor %q is %s, the manifest's dtype %s stores %s", wt.Name, gt.DType, m.DType, wt.DType)
		case !slices.Equal(gt.Shape, wt.Shape):
			return fmt.Errorf("its tensor %q has shape %v, a shard of %d rows %v", wt.Name, gt.Shape, n, wt.Shape)
		}
	}
	return nil
}

// Repaired returns the shards that an earlier run left but that no longer
// match the hash its manifest recorded; this run rewrites them.
func (w *Writer) Repaired() []string { return w.repair }

// Unlisted returns the shard files of this build's settings that an
// earlier run left but that its manifest does not list, and that this run
// has not yet written again: Has is false for them, so the build computes
// them again, and WriteShard replaces each (a notice says when the file
// found differed from the shard computed again).
func (w *Writer) Unlisted() []string {
	var names []string
	for _, i := range slices.Sorted(maps.Keys(w.unlisted)) {
		names = append(names, w.unlisted[i].name)
	}
	return names
}

// ManifestPath returns the path of the manifest the writer keeps: the
// cache's, or the worker's.
func (w *Writer) ManifestPath() string { return filepath.Join(w.dir, w.man.fileName()) }

// Rows returns the input rows [first, first+n) that the writer's shards
// hold: the whole cache's, or the worker's. n is -1 while a build that
// reads its input to the end (Data.ToEnd) has not ended.
func (w *Writer) Rows() (first, n int) {
	if w.open {
		return w.man.Data.FirstRow, -1
	}
	return w.man.Data.FirstRow, w.man.NSequences
}

// BuildRows returns the rows of the whole build the writer is part of (a
// worker's: all workers' rows), which its batch grid spans; -1 while a
// build that reads its input to the end has not ended.
func (w *Writer) BuildRows() int {
	switch {
	case w.open:
		return -1
	case w.man.Worker != nil:
		return w.man.Worker.TotalRows
	}
	return w.man.NSequences
}

// NumShards returns how many shards the cache will have; -1 while that is
// not known (see Rows).
func (w *Writer) NumShards() int {
	if w.open {
		return -1
	}
	return len(w.kept)
}

// ShardRows returns the range [first, first+n) of input rows that shard i
// holds; while the rows are not known (see Rows), n is the most it may
// hold.
func (w *Writer) ShardRows(i int) (first, n int) {
	off := i * w.man.SequencesPerShard
	if w.open {
		return w.man.Data.FirstRow + off, w.man.SequencesPerShard
	}
	return w.man.Data.FirstRow + off, min(w.man.SequencesPerShard, w.man.NSequences-off)
}

// NumKept returns how many shards an earlier run left complete.
func (w *Writer) NumKept() int {
	n := 0
	for _, s := range w.kept {
		if s != nil {
			n++
		}
	}
	return n
}

// Kept reports, for each shard index up to the last one complete on
// disk, whether it is (Has of each, as of now).
func (w *Writer) Kept() []bool {
	out := make([]bool, len(w.kept))
	for i, s := range w.kept {
		out[i] = s != nil
	}
	return out
}

// Has reports whether shard i is already complete on disk.
func (w *Writer) Has(i int) bool { return i < len(w.kept) && w.kept[i] != nil }

// WriteShard writes shard i: tokens (S_i·T), x and y (S_i·T·C), and acts
// (S_i·T rows) when the cache stores them. The file appears only when
// complete; the manifest then lists it. While the rows are not known (see
// Rows), shards are written in order and only the last may be short.
//
// A float16 cache refuses a value beyond float16's range (±65504), which
// would be stored as ±Inf. Any error releases the writer's lock: a failed
// write ends the build.
func (w *Writer) WriteShard(i int, tokens []int32, x, y, scale []float32, acts *transcoder.Acts) (err error) {
	if err := w.usable(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.release()
		}
	}()
	first, n := w.ShardRows(i)
	t, c := w.man.ContextLength, w.man.DModel
	if w.open {
		if i != len(w.kept) || len(tokens) == 0 || len(tokens) > n*t {
			panic(fmt.Sprintf("actcache: shard %d of %d tokens written after %d shards", i, len(tokens), len(w.kept)))
		}
		if k := len(w.kept); k > 0 && w.kept[k-1].NSequences < n {
			panic(fmt.Sprintf("actcache: shard %d written after the short shard %d", i, k-1))
		}
		n = len(tokens) / t
	}
	if w.man.YRecomputed {
		y = nil // not stored: readers compute it from x
	}
	if len(tokens) != n*t || len(x) != n*t*c || (len(y) != n*t*c && !w.man.YRecomputed) {
		panic(fmt.Sprintf("actcache: shard %d: got %d tokens, %d x, %d y for %d sequences", i, len(tokens), len(x), len(y), n))
	}
	if (scale != nil) != w.man.WithScale || (scale != nil && len(scale) != n*t) {
		panic(fmt.Sprintf("actcache: shard %d: scale does not match the manifest", i))
	}
	if (acts != nil) != w.man.WithActs || (acts != nil && acts.Rows() != n*t) {
		panic(fmt.Sprintf("actcache: shard %d: acts do not match the manifest", i))
	}
	dt := StorageDType(w.man.DType)
	if dt == safetensors.F16 {
		if err := w.checkFloat16(i, first, x, y); err != nil {
			return err
		}
	}
	var nnz int64
	if acts != nil {
		nnz = int64(len(acts.Indices))
	}
	md := map[string]string{metaSettings: w.key}
	for _, e := range shardMetadata(&w.man, Shard{FirstRow: first, NNZ: nnz}) {
		md[e.key] = e.value
	}
	infos := shardTensors(&w.man, n, nnz)
	name := w.man.shardName(i)
	path := filepath.Join(w.dir, name)
	sw, err := safetensors.Create(path, infos, md)
	if err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	err = sw.WriteInt32(tokens)
	if err == nil {
		err = sw.WriteFloat32(x)
	}
	if err == nil && y != nil {
		err = sw.WriteFloat32(y)
	}
	if err == nil && scale != nil {
		err = sw.WriteFloat32(scale)
	}
	if err == nil && acts != nil {
		if err = sw.WriteInt64(acts.Indptr); err == nil {
			if err = sw.WriteInt32(acts.Indices); err == nil {
				err = sw.WriteFloat32(acts.Values)
			}
		}
	}
	if err != nil {
		sw.Abort()
		return fmt.Errorf("actcache: %w", err)
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	// The writer hashed the bytes as it wrote them: no second read of the shard.
	size, sum := sw.Sum()
	if u, ok := w.unlisted[i]; ok {
		delete(w.unlisted, i)
		if u.why == "" && u.sha256 != sum {
			w.notice(fmt.Sprintf("%s: the unlisted file differed from the shard computed again (corrupt, or computed on other hardware): replaced", path))
		}
	}
	if i == len(w.kept) {
		w.kept = append(w.kept, nil) // a build that reads its input to the end
	}
	w.kept[i] = &Shard{File: name, NSequences: n, FirstRow: first, Bytes: size, SHA256: sum, NNZ: nnz}
	return w.writeManifest(false)
}

// writeManifest lists the complete prefix of shards.
func (w *Writer) writeManifest(complete bool) error {
	m := w.man
	m.Complete = complete
	m.Shards = nil
	for _, s := range w.kept {
		if s == nil {
			break
		}
		m.Shards = append(m.Shards, *s)
	}
	if err := writeManifest(w.dir, &m); err != nil {
		return fmt.Errorf("actcache: %s: %w", w.ManifestPath(), err)
	}
	return nil
}

// rebuildWhat names what to remove to rebuild the writer's part of the
// cache: the directory, or only a worker's files in a shared one.
func (w *Writer) rebuildWhat() string {
	if wk := w.man.Worker; wk != nil {
		return fmt.Sprintf("worker %d's files (%s and w%05d-of-%05d-shard-*.safetensors in %s)", wk.Index, WorkerManifestName(wk.Index, wk.Count), wk.Index, wk.Count, w.dir)
	}
	return w.dir
}

// SetDataCounts records what the build read from its input, for the
// manifest that Finish writes.
func (w *Writer) SetDataCounts(c map[string]int64) { w.man.Data.Counts = c }

// Finish marks the cache complete. Every shard must have been written or
// kept; a build that read its input to the end records the rows it holds.
//
// Finish releases the writer's lock, whether it succeeds or not.
func (w *Writer) Finish() error {
	if err := w.usable(); err != nil {
		return err
	}
	err := w.finish()
	if rerr := w.release(); err == nil {
		err = rerr
	}
	return err
}

func (w *Writer) finish() error {
	if w.open {
		n := 0
		for _, s := range w.kept {
			n += s.NSequences
		}
		if n == 0 {
			return ErrNoRows
		}
		w.man.NSequences, w.man.Data.Rows, w.man.Data.RowsTaken = n, n, n
		w.man.NTokens = int64(n) * int64(w.man.ContextLength)
		w.open = false
	}
	for i, s := range w.kept {
		if s == nil {
			return fmt.Errorf("actcache: shard %d was never written", i)
		}
	}
	return w.writeManifest(true)
}

// float16Max is the largest finite float16 value.
const float16Max = 65504

// checkFloat16 refuses x or y values of shard i (rows from first) that a
// float16 cache cannot hold: beyond ±65504, float16's largest value (from
// ±65520 on, the conversion gives ±Inf). NaN and ±Inf are not its
// concern: they are not out of range, and the model's weights are checked
// for them when it is loaded.
func (w *Writer) checkFloat16(i, first int, x, y []float32) error {
	t, c := w.man.ContextLength, w.man.DModel
	for _, v := range []struct {
		name, hook string
		data       []float32
	}{{"x", w.man.Hooks.X, x}, {"y", w.man.Hooks.Y, y}} {
		for k, f := range v.data {
			if f <= float16Max && f >= -float16Max || math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				continue
			}
			hook := ""
			if v.hook != "" {
				hook = " (" + v.hook + ")"
			}
			return fmt.Errorf("actcache: %s: %s%s is %g at input row %d, position %d, channel %d, beyond float16's range (±%d): a float16 cache cannot hold it (it would become Inf); build the cache with --dtype float32 (into another --out, or after removing %s)",
				filepath.Join(w.dir, w.man.shardName(i)), v.name, hook, f, first+k/(t*c), k/c%t, k%c, float16Max, w.dir)
		}
	}
	return nil
}
