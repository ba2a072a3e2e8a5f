package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/progress"
)

func newCacheVerifyCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Re-hash every shard of a cache and name the workers to rerun",
		Long: `Re-hashes every shard of the cache in DIR against the size and SHA-256 that
its manifest recorded, and reports missing, truncated or corrupt shards.
DIR may be a single-machine cache, a sharded build before or after
` + "`ctxdep cache merge`" + `, or a layer set (cache build --layers: every layer's
cache is checked, and any layer's problem fails the command); for a sharded build it also checks what merge checks
(one worker count, every worker complete, the same inputs and settings,
row ranges that tile [0, R)) and that manifest.json lists the workers'
current shards.

Each problem names the worker whose rerun repairs it: run
` + "`ctxdep cache build`" + ` again with the same flags and --shard i/N (complete
shards are kept, damaged ones rewritten), then ` + "`ctxdep cache merge DIR`" + `.
With --json: {dir, sharded, workers, merged, rows, shards, bytes,
problems: [{kind, file, worker, message}], rerun_workers: [i, …]}; worker
is -1 where no worker's rerun is the fix.

Exit status: 0 every shard is intact (the report says whether a sharded
build still needs merging), 1 problems were found (listed on stdout) or
DIR is not a cache, 2 usage error.`,
		Example: `  ctxdep cache verify /shared/cache-l8
  ctxdep cache verify /shared/cache-l8 --json | jq -r '.rerun_workers[]'`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCacheVerify(cmd.Context(), g, args[0])
		},
	}
	addLayersJSONFlag(cmd, g)
	return cmd
}

func runCacheVerify(ctx context.Context, g *globalOptions, root string) error {
	var bad []string
	err := g.eachCache(root, func(dir, label string) error {
		err := verifyOne(ctx, g, dir, label)
		if err != nil && actcache.IsLayerSet(root) && ctx.Err() == nil {
			bad = append(bad, err.Error()) // the other layers are checked too
			return nil
		}
		return err
	})
	if err == nil && len(bad) > 0 {
		err = fmt.Errorf("%s", strings.Join(bad, "\n"))
	}
	return err
}

func verifyOne(ctx context.Context, g *globalOptions, dir, label string) error {
	bar := progress.New(g.stderr, "cache verify"+label, actcache.TotalBytes(dir), "bytes", g.quiet)
	c, err := actcache.Verify(ctx, dir, func(n int64) { bar.Add(n, "") })
	bar.Finish()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if g.json {
		if err := json.NewEncoder(g.stdout).Encode(c); err != nil {
			return err
		}
	} else {
		printCheck(g, c)
	}
	if c.OK() {
		return nil
	}
	msg := fmt.Sprintf("cache %s has %d problem(s)", dir, len(c.Problems))
	if len(c.Rerun) > 0 {
		var remove []int // workers whose files go before their rerun
		for _, p := range c.Problems {
			if (p.Kind == actcache.ProblemMismatch || p.Kind == actcache.ProblemBadManifest) && !slices.Contains(remove, p.Worker) {
				remove = append(remove, p.Worker)
			}
		}
		if len(remove) == 0 {
			msg += "; rerun worker(s) " + c.RerunList() + fmt.Sprintf(" of %d with the same flags (they resume), then `ctxdep cache merge %s`", c.Workers, dir)
		} else {
			slices.Sort(remove)
			msg += "; mend worker(s) " + c.RerunList() + fmt.Sprintf(" of %d as each problem says (remove the files of worker(s) %s first, as they were built with other inputs or settings or their manifest cannot be read; the others resume with the same flags), then `ctxdep cache merge %s`", c.Workers, actcache.LayersText(remove), dir)
		}
	}
	return fmt.Errorf("%s", msg)
}

func printCheck(g *globalOptions, c *actcache.Check) {
	kind := "single-machine cache"
	if c.Sharded {
		kind = fmt.Sprintf("sharded build of %d workers", c.Workers)
		if c.Merged {
			kind += ", merged"
		} else {
			kind += ", not merged"
		}
	}
	status := "ok"
	if !c.OK() {
		status = fmt.Sprintf("%d problem(s)", len(c.Problems))
	}
	missing := 0 // listed, not found: counted in c.Shards, never hashed
	for _, p := range c.Problems {
		if p.Kind == actcache.ProblemMissingShard {
			missing++
		}
	}
	hashed := fmt.Sprintf("%d shards re-hashed", c.Shards-missing)
	if missing > 0 {
		hashed += fmt.Sprintf(", %d missing", missing)
	}
	fmt.Fprintf(g.stdout, "cache %s: %s, %d rows, %s (%s): %s\n", c.Dir, kind, c.Rows, hashed, humanBytes(c.Bytes), status)
	if c.OK() && c.Sharded && !c.Merged {
		fmt.Fprintf(g.stdout, "all %d workers are complete: run `ctxdep cache merge %s`\n", c.Workers, c.Dir)
	}
	if c.OK() {
		return
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\tworker\tfile\tproblem")
	for _, p := range c.Problems {
		w := "-"
		if p.Worker >= 0 {
			w = fmt.Sprint(p.Worker)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Kind, w, p.File, p.Message)
	}
	tw.Flush()
	if len(c.Rerun) > 0 {
		var flags []string
		for _, w := range c.Rerun {
			flags = append(flags, fmt.Sprintf("--shard %d/%d", w, c.Workers))
		}
		fmt.Fprintf(g.stdout, "rerun: %s\n", strings.Join(flags, ", "))
	}
}
