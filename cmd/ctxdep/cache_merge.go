package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/progress"
)

func newCacheMergeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "merge DIR",
		Short: "Check the workers' shards of a sharded build and write DIR/manifest.json",
		Long: `Joins the workers of a sharded ` + "`ctxdep cache build --shard i/N`" + ` into one
cache. DIR may be a layer set (cache build --layers): each layer's cache is
merged in turn (with --json, one document: {"layers": [...], "results": [...]}). It reads every worker manifest (worker-IIIII-of-NNNNN.json) in DIR
and checks that
  - there is one worker count N, and all N workers ran to completion;
  - all workers used the same model, layer, dtype, token file (SHA-256),
    row count, context length, sequences per shard, batch size and transcoder;
  - their row ranges tile [0, R) exactly;
  - every shard file still has the size and SHA-256 its worker recorded
    (this reads the whole cache once).
Then it writes DIR/manifest.json, atomically, listing the workers' shards in
row order, with the inputs' provenance, as a single-machine build would:
fit, inspect-cache, evaluate and report read DIR like any cache.

Any problem is an error naming the shard and the worker to rerun
(` + "`cache build`" + ` with the same flags and --shard i/N resumes: complete shards
are kept, damaged ones rewritten), and nothing is written. Running merge
again is harmless: an identical manifest.json is left as it is, and the
merge of the same build (after a worker was rerun) is replaced; any other
manifest.json is refused and left untouched.

Exit status: 0 merged, 1 a problem (see the message, or run
` + "`ctxdep cache verify DIR`" + ` for the full list), 2 usage error.`,
		Example: `  ctxdep cache merge /shared/cache-l8
  ctxdep cache merge /shared/cache-l8 --json | jq .manifest.n_tokens`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheMerge(cmd.Context(), g, args[0])
		},
	}
	addLayersJSONFlag(cmd, g)
	return cmd
}

func runCacheMerge(ctx context.Context, g *globalOptions, root string) error {
	return g.eachCache(root, func(dir, label string) error { return mergeOne(ctx, g, dir, label) })
}

func mergeOne(ctx context.Context, g *globalOptions, dir, label string) error {
	start := time.Now()
	bar := progress.New(g.stderr, "cache merge"+label, actcache.TotalBytes(dir), "bytes", g.quiet)
	m, _, err := actcache.Merge(ctx, dir, func(n int64) { bar.Add(n, "") })
	bar.Finish()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := filepath.Join(dir, actcache.ManifestName)
	if g.json {
		return json.NewEncoder(g.stdout).Encode(map[string]any{"dir": dir, "manifest_path": path, "manifest": m, "seconds": time.Since(start).Seconds()})
	}
	fmt.Fprintf(g.stdout, "merged %d workers into %s: %s\n", m.Workers, path, cacheSummary(m))
	return nil
}
