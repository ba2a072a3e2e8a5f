package actcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// missingManifest returns ReadManifest's error for dir, which holds no
// manifest.json and no worker's manifest, saying what it found there: a
// build writing it now (its lock held), the complete shards of a build
// that stopped before it recorded them, the partly written files of one
// that stopped earlier, or nothing of a cache.
//
// A build writes its manifest after each shard (Writer.WriteShard): a
// directory with shards but no manifest is one whose build was killed or
// ran out of disk space between its first shard and its first manifest.
// The same build resumes there, but with no manifest to vouch for those
// shards it computes them again and compares them with the files
// (Writer.Unlisted).
func missingManifest(dir string) error {
	if fi, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		where := ""
		if !filepath.IsAbs(dir) {
			if wd, err := os.Getwd(); err == nil {
				where = " (relative paths start at " + wd + ")"
			}
		}
		return fmt.Errorf("actcache: %s: no such directory%s; build a cache there with `ctxdep cache build`", dir, where)
	} else if err == nil && !fi.IsDir() {
		return fmt.Errorf("actcache: %s is a file, not an activation cache (a directory holding %s and shards)", dir, ManifestName)
	}
	if h, held, err := dirlock.Probe(dirlock.Path(dir)); err == nil && held {
		return fmt.Errorf("actcache: %w", &dirlock.BusyError{Path: dirlock.Path(dir), Subject: dir, Holder: h,
			Advice: fmt.Sprintf("it has no %s until its first shard is done: wait for the build to finish", ManifestName)})
	}
	if running, err := runningWorkers(dir); err == nil && len(running) > 0 {
		r := running[0]
		return fmt.Errorf("actcache: %s is being written by worker %d of %d of a sharded build (%s), which has not finished a shard yet: wait for the workers to finish, then run `ctxdep cache merge %s`", dir, r.index, r.count, r.holder, dir)
	}
	f := scanLeftovers(dir)
	switch {
	case len(f.shards) > 0:
		them, those := "them", "those shards"
		if len(f.shards) == 1 {
			them, those = "it", "that shard"
		}
		why := "it was killed, or ran out of disk space"
		if len(f.manifestTemps) > 0 {
			why = fmt.Sprintf("it was killed, or ran out of disk space, while writing its manifest, of which %s remains", f.manifestTemps[0])
		}
		return fmt.Errorf("actcache: %s holds %s (%s) but no %s: the cache build that wrote %s stopped before it recorded %s (%s); rerun that same `ctxdep cache build` to finish it (with no manifest to vouch for %s, it computes %s again and compares %s with the files)",
			dir, plural(len(f.shards), "complete shard"), nameList(f.shards), ManifestName, them, them, why, those, them, them)
	case len(f.workerShards) > 0:
		idx := slices.Sorted(maps.Keys(f.workers))
		ws := make([]string, len(idx))
		for k, i := range idx {
			ws[k] = fmt.Sprint(i)
		}
		return fmt.Errorf("actcache: %s holds %s of worker(s) %s of %d of a sharded build (%s) but no worker's manifest: those workers stopped (killed, or out of disk space) before they recorded their shards; rerun each with the same flags and --shard i/%d (with no manifest to vouch for its shards, it computes them again and compares them with the files), then `ctxdep cache merge %s` once every worker is done",
			dir, plural(len(f.workerShards), "complete shard"), strings.Join(ws, ", "), f.count, nameList(f.workerShards), f.count, dir)
	case len(f.shardTemps) > 0:
		rerun := "that same `ctxdep cache build`"
		if w, n, ok := ParseWorkerShardName(f.shardTempOf); ok {
			rerun = fmt.Sprintf("that same `ctxdep cache build --shard %d/%d`", w, n)
		}
		return fmt.Errorf("actcache: %s holds no %s and no complete shard, only a partly written one (%s): a cache build into it stopped before its first shard was done; rerun %s (it removes that file and starts from the first shard)",
			dir, ManifestName, f.shardTemps[0], rerun)
	case len(f.manifestTemps) > 0:
		return fmt.Errorf("actcache: %s holds no shard and no %s, only a partly written manifest (%s) that a stopped command left: nothing of a cache remains; build one with `ctxdep cache build`",
			dir, ManifestName, f.manifestTemps[0])
	}
	return fmt.Errorf("actcache: %s is not an activation cache (no %s); build one with `ctxdep cache build`", dir, ManifestName)
}

// leftovers is what scanLeftovers found in a directory without a manifest.
type leftovers struct {
	shards        []string     // complete shards of a single-machine build
	workerShards  []string     // complete shards of workers (of one count)
	workers       map[int]bool // the workers that wrote them
	count         int          // their worker count
	shardTemps    []string     // partly written shards
	shardTempOf   string       // the shard the first of them was to become
	manifestTemps []string     // partly written manifests
}

// scanLeftovers lists what a stopped build left in dir, in name order.
func scanLeftovers(dir string) leftovers {
	f := leftovers{workers: map[int]bool{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return f
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if w, n, ok := ParseWorkerShardName(name); ok {
			if f.count == 0 || f.count == n {
				f.count = n
				f.workers[w] = true
				f.workerShards = append(f.workerShards, name)
			}
			continue
		}
		if isCacheFile(name) {
			if name != ManifestName && !isWorkerFile(name) {
				f.shards = append(f.shards, name)
			}
			continue
		}
		base, ok := atomicfile.ParseTempName(name)
		switch {
		case !ok || !isCacheFile(base):
		case base == ManifestName || isWorkerFile(base) && !isWorkerShard(base):
			f.manifestTemps = append(f.manifestTemps, name)
		default:
			if len(f.shardTemps) == 0 {
				f.shardTempOf = base
			}
			f.shardTemps = append(f.shardTemps, name)
		}
	}
	return f
}

func isWorkerShard(name string) bool {
	_, _, ok := ParseWorkerShardName(name)
	return ok
}

// nameList names files, the first two and a count of the others.
func nameList(names []string) string {
	if len(names) <= 2 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, %s and %d more", names[0], names[1], len(names)-2)
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ForeignFiles returns the names of the entries in dir that are not an
// activation cache's, sorted: anything but its manifest.json (of this
// format, or beside shards), shards and workers' manifests (hidden files,
// such as lock files and temporary files, are never counted). A cache
// build refuses a directory that holds any, so that it never mixes its
// shards with another tool's output (a fit's, say). A directory that does
// not exist holds none.
func ForeignFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A manifest.json of another format is another tool's, unless shards
	// lie beside it: then it is the cache's, damaged, which the build's
	// own checks describe.
	others := false
	for _, e := range entries {
		others = others || e.Name() != ManifestName && isCacheFile(e.Name())
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
		case name == "lost+found" && e.IsDir(): // a fresh file system's root
		case name == ManifestName && e.Type().IsRegular():
			if !others && !cacheManifest(filepath.Join(dir, name)) {
				out = append(out, name)
			}
		case isCacheFile(name) && e.Type().IsRegular():
		default:
			out = append(out, name)
		}
	}
	return out, nil
}

// cacheManifest reports whether the manifest file at path says it is an
// activation cache's (its "format"), however it is damaged otherwise: the
// build's own checks say what is wrong with it.
func cacheManifest(path string) bool {
	raw, err := os.ReadFile(path)
	var head struct {
		Format string `json:"format"`
	}
	return err == nil && json.Unmarshal(raw, &head) == nil && head.Format == Format
}
