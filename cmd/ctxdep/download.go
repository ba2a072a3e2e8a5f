package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/hub"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// What `download` fetches.
const (
	owtRepo          = "Skylion007/openwebtext"
	transcoderWidth  = 24576
	owtParquetBranch = "refs/convert/parquet"
)

// downloadTargets are what `download` fetches, in its usage's order.
var downloadTargets = []string{"model", "transcoders", "owt"}

var modelFiles = []string{"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"}

type downloadOptions struct {
	layers   string
	revision string
	maxFiles int
}

func newDownloadCmd(g *globalOptions) *cobra.Command {
	o := &downloadOptions{}
	cmd := &cobra.Command{
		Use:   "download [model|transcoders|owt]...",
		Short: "Fetch GPT-2, the transcoders or OpenWebText into the Hugging Face cache",
		Long: `Fetches from the Hugging Face hub into the standard hub cache ($HF_HOME/hub,
default ~/.cache/huggingface/hub), where Python's huggingface_hub finds them too,
and where the default --model and --transcoders lookups of ctxdep look:

  model        openai-community/gpt2: config.json, model.safetensors and the tokenizer files
  transcoders  pchlenski/gpt2-transcoders: final_sparse_autoencoder_gpt2-small_blocks.{L}
               .ln2.hook_normalized_24576.pt and its _log_feature_sparsity.pt, for --layers
  owt          Skylion007/openwebtext parquet shards (the hub's parquet conversion when the
               main branch has none); --max-files limits how many; prints the folder that
               holds them, ready for --data

With no argument it fetches model and transcoders. Files already in the cache
(downloaded by ctxdep or by Python) are not fetched again; an interrupted transfer
resumes. Every file is checked before it is kept: against its SHA-256 (or git
blob id) from the hub's headers or metadata API, and its size; a file that
nothing can verify is kept only when its size matches, with a warning, and an
HTML page is never taken for a weights file. HF_ENDPOINT selects a mirror,
HF_TOKEN (or huggingface-cli login's token file) authenticates.

Prints where the files are, one line per target, its name and its folder
separated by a tab ("model<TAB>DIR"), so that a script can take the folder with
cut -f2 (with --json, one object: {"model": DIR, ...}).`,
		Example: `  ctxdep download
  ctxdep download transcoders --layers 8,9
  ctxdep download owt --max-files 2
  owt=$(ctxdep download owt --max-files 1 | cut -f2)   # the folder, for --data "$owt"`,
		ValidArgs: downloadTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDownload(cmd.Context(), g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.layers, "layers", "", "transcoder layers, e.g. 8,9 or 0-5 (default: all 12)")
	f.StringVar(&o.revision, "revision", "", "branch, tag or commit to fetch (default main)")
	f.IntVar(&o.maxFiles, "max-files", 0, "owt: fetch at most this many parquet files (default all)")
	addJSONFlag(cmd, g)
	return cmd
}

// releasedLayers is how many transcoders pchlenski/gpt2-transcoders holds,
// one per block of GPT-2 small.
const releasedLayers = 12

func runDownload(ctx context.Context, g *globalOptions, o *downloadOptions, what []string) error {
	if len(what) == 0 {
		what = []string{"model", "transcoders"}
	}
	spec := o.layers
	if spec == "" {
		spec = "all"
	}
	layers, err := parseLayerList(spec, releasedLayers)
	if err != nil {
		return err
	}
	if o.maxFiles < 0 {
		return usagef("--max-files %d: want 0 (all) or a positive count", o.maxFiles)
	}
	for _, w := range what {
		if !slices.Contains(downloadTargets, w) {
			return usagef("download %q: want %s", w, strings.Join(downloadTargets, ", "))
		}
	}
	c := hub.NewClient()
	c.Quiet = g.quiet
	c.Progress = g.stderr
	got := map[string]string{}
	for _, w := range what {
		var dir string
		switch w {
		case "model":
			dir, err = c.Download(ctx, hub.Model, modelRepo, o.revision, modelFiles)
		case "transcoders":
			var files []string
			for _, l := range layers {
				files = append(files, transcoder.FileName(l, transcoderWidth), transcoder.SparsityName(l, transcoderWidth))
			}
			dir, err = c.Download(ctx, hub.Model, transcodersRepo, o.revision, files)
		case "owt":
			dir, err = downloadOWT(ctx, c, o)
		}
		if err != nil {
			return err
		}
		got[w] = dir
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(got)
	}
	for _, w := range what {
		fmt.Fprintf(g.stdout, "%s\t%s\n", w, got[w])
	}
	return nil
}

// downloadOWT fetches OpenWebText's parquet files: from the requested
// revision, or from the hub's parquet conversion when main has none.
func downloadOWT(ctx context.Context, c *hub.Client, o *downloadOptions) (string, error) {
	rev := o.revision
	for _, try := range []string{rev, owtParquetBranch} {
		files, _, err := c.ListFiles(ctx, hub.Dataset, owtRepo, try)
		if err != nil {
			return "", err
		}
		var parquet []string
		for _, f := range files {
			if path.Ext(f.Path) == ".parquet" {
				parquet = append(parquet, f.Path)
			}
		}
		if len(parquet) == 0 {
			if rev != "" {
				return "", fmt.Errorf("%s at %s has no parquet files", owtRepo, rev)
			}
			continue
		}
		if o.maxFiles > 0 && len(parquet) > o.maxFiles {
			parquet = parquet[:o.maxFiles]
		}
		snap, err := c.Download(ctx, hub.Dataset, owtRepo, try, parquet)
		if err != nil {
			return "", err
		}
		// Print the folder that holds the shards (the parquet conversion
		// keeps them in a subfolder), ready for --data.
		return filepath.Join(snap, path.Dir(parquet[0])), nil
	}
	return "", fmt.Errorf("%s has no parquet files on main or %s", owtRepo, owtParquetBranch)
}
