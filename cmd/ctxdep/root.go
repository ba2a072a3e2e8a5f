package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/blasimpl"
)

// version is set at link time (-ldflags "-X main.version=…").
var version = "dev"

// globalOptions are the persistent flags every command takes.
type globalOptions struct {
	model       string
	transcoders string
	transcoder  string
	layer       int
	device      string
	tf32        bool
	determ      bool
	threads     int
	quiet       bool
	verbose     bool
	json        bool

	blas    blasimpl.Info
	backend backend // from --device, chosen in setup
	stdout  io.Writer
	stderr  io.Writer

	// recorded is what the cache the command opened records about its
	// inputs (openCacheAt), consulted when --model and --transcoder(s)
	// and their environment variables are absent; nil without a cache.
	recorded *recordedInputs
	hashes   map[string]hashMemo // provenance of files already hashed
	// models holds the models loaded so far, by checkpoint directory: a
	// command that runs each layer of --layers in turn loads one once.
	models map[string]loadedModel
	noted  map[string]bool  // notices already printed (notef)
	lastTC loadedTranscoder // the transcoder loaded last (a layer's may be asked for twice in a row)
}

func newRootCmd(stdout, stderr io.Writer) (*cobra.Command, *globalOptions) {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "ctxdep",
		Short: "How context-dependent are GPT-2 small's transcoder features?",
		Long: `ctxdep caches TransformerLens-exact activations of GPT-2 small, loads the
per-layer transcoders of Dunefsky et al. (pchlenski/gpt2-transcoders), fits
and evaluates midcoders, and reports how context-dependent each transcoder
feature is, one layer or every layer at once (--layers), in one binary.
The command reference, file formats and method are in the repository's
docs/ (docs/cli, docs/formats.md, docs/method.md, docs/json.md for --json).

Inputs are found through --model and --transcoders, or $CTXDEP_MODEL and
$CTXDEP_TRANSCODERS, or, for a command given --cache, the model and
transcoder its manifest records (if still there with the recorded
SHA-256), or the Hugging Face hub cache ($HF_HOME/hub, default
~/.cache/huggingface/hub) where Python users' downloads already live.

Environment:
  CTXDEP_MODEL            default --model
  CTXDEP_TRANSCODERS      default --transcoders
  CTXDEP_HASH_CACHE       file remembering the SHA-256 of unchanged inputs (default
                          $XDG_CACHE_HOME/ctxdep/hashes.json); off: hash every run
  CTXDEP_SHARD_COUNT      cache build: worker count, with JOB_COMPLETION_INDEX
  SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN,
  SLURM_ARRAY_TASK_MAX    cache build: this worker of a Slurm job array
  JOB_COMPLETION_INDEX    cache build: this worker of a Kubernetes indexed Job
  HF_HOME                 Hugging Face folder (default $XDG_CACHE_HOME/huggingface,
                          else ~/.cache/huggingface); the hub cache is HF_HOME/hub
  HF_HUB_CACHE            the hub cache itself, overriding HF_HOME/hub
  XDG_CACHE_HOME          see HF_HOME
  HF_ENDPOINT             download: the hub or a mirror (default https://huggingface.co)
  HF_TOKEN                download: access token (else the file HF_TOKEN_PATH,
                          default HF_HOME/token, that huggingface-cli login writes)
  HF_TOKEN_PATH           see HF_TOKEN
  HF_HUB_OFFLINE          1: no network; download uses the hub cache or names what
                          it lacks (TRANSFORMERS_OFFLINE is read when it is unset)
  TRANSFORMERS_OFFLINE    see HF_HUB_OFFLINE
  CTXDEP_CUBLAS           CUDA build: the cuBLAS library to load
  CUDA_HOME, VIRTUAL_ENV  CUDA build: where else cuBLAS is looked for
  OPENBLAS_CORETYPE       OpenBLAS build: read by OpenBLAS, forces its kernel
  CTXDEP_CPUPROFILE       file to write a CPU profile of the run to (go tool pprof)

Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if cmd.HasSubCommands() {
				return nil // a bare group command only prints its help
			}
			return g.setup()
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.model, "model", "", "GPT-2 checkpoint directory: config.json plus model.safetensors or pytorch_model.bin,\nor a hub repository OWNER/NAME[@REV] in the hub cache\n(default $CTXDEP_MODEL, else the hub cache entry of openai-community/gpt2)")
	f.StringVar(&g.transcoders, "transcoders", "", "directory of per-layer transcoder files final_sparse_autoencoder_gpt2-small_blocks.{L}.ln2.hook_normalized_{F}.pt,\nor of SAELens transcoder directories (the one whose cfg.json hooks block L),\nor a hub repository OWNER/NAME[@REV] in the hub cache holding either\n(default $CTXDEP_TRANSCODERS, else the hub cache entry of pchlenski/gpt2-transcoders)")
	f.StringVar(&g.transcoder, "transcoder", "", "one transcoder, instead of looking it up in --transcoders: a .pt file, or a SAELens\ndirectory (cfg.json and sae_weights.safetensors)")
	f.IntVar(&g.layer, "layer", 8, "transformer block L whose MLP the transcoder replaces (with --cache: the cache's layer,\nor the one to open in a layer set; --layers LIST for several)")
	f.StringVar(&g.device, "device", "cpu", "cpu or cuda: where cache build, cache plan, fit, evaluate and report's effect statistics run\n(cuda needs a build with CUDA: make build-cuda)")
	f.BoolVar(&g.tf32, "tf32", false, "with --device cuda, let cuBLAS use TF32 tensor cores for GEMMs (faster; ~1e-3 relative error instead of float32's exact products)")
	f.BoolVar(&g.determ, "deterministic", false, "with --device cuda, sum the fit's gradients in a fixed order instead of with float atomics,\nso that a fit repeats bit for bit on the same GPU (the CPU always does)")
	f.IntVar(&g.threads, "threads", 0, "CPU threads to use (default: all cores; at most 4 per core, or 64)")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "no progress output")
	f.BoolVarP(&g.verbose, "verbose", "v", false, "more detail on stderr")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if args := cmd.Flags().Args(); cmd.HasSubCommands() && len(args) > 0 {
			// `cache biuld --out DIR`: the flag is unknown because the
			// subcommand is; name the subcommand.
			return unknownCommand(cmd, args[0])
		}
		var bad *pflag.InvalidValueError
		if errors.As(err, &bad) && bad.GetFlag() != nil && bad.GetFlag().Name == "layer" && bad.GetFlag().Value.Type() == "int" && cmd.Flags().Lookup("layers") != nil {
			// `--layer all` for `--layers all`: --layer is one block.
			return usagef("--layer %q: want one layer number, e.g. --layer 8 (several layers: --layers 2,3, 0-11 or all)", bad.GetValue())
		}
		return usageError{fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())}
	})
	root.AddCommand(newVersionCmd(g), newCacheCmd(g), newInspectCacheCmd(g), newFitCmd(g), newDownloadCmd(g), newTokenizeCmd(g), newPinvCmd(g), newEvaluateCmd(g), newReportCmd(g), newConnectionsCmd(g), newGenDocsCmd())
	root.SetOut(stdout) // before the completion command captures its writer
	root.SetErr(stderr)
	strictCommands(root)
	flagNoticesTo(root, stderr)
	registerCompletions(root)
	return root, g
}

// strictCommands makes every misuse of the command tree a usage error (exit
// status 2), as the root help promises: an unknown command or subcommand
// (cobra prints a group's help and exits 0 for `ctxdep cache biuld`, and
// exits 1 for `ctxdep fitt`), an unknown help topic, and a wrong argument
// count caught by cobra's own validators. A group command run bare still
// prints its help. cobra adds its help and completion commands only when
// it executes, so they are added here first to be covered too.
func strictCommands(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch {
		case c.Name() == "help" && c.Parent() == root && c.RunE == nil:
			show := c.Run
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if target, rest, err := root.Find(args); err == nil && len(rest) > 0 {
					return unknownCommand(target, rest[0])
				}
				show(cmd, args)
				return nil
			}
		case c.HasSubCommands() && !c.Runnable():
			c.Args = knownSubcommand
			c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
		case c.Args != nil:
			c.Args = usageArgs(c.Args)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// knownSubcommand is the Args of a group command: no argument (print the
// group's help), or the name of one of its subcommands, which cobra has
// already dispatched to, so any argument left is an unknown subcommand.
func knownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(cmd, args[0])
	}
	return nil
}

// unknownCommand is the usage error for name, which is no subcommand of
// cmd, with cobra's suggestions on the same line.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if !cmd.DisableSuggestions {
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default
		}
		if s := cmd.SuggestionsFor(name); len(s) > 0 {
			for i := range s {
				s[i] = strconv.Quote(s[i])
			}
			last := len(s) - 1
			if last > 0 {
				s = []string{strings.Join(s[:last], ", "), s[last]}
			}
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
	}
	return usagef("%s (see `%s --help`)", msg, cmd.CommandPath())
}

// usageArgs makes an argument validator's errors usage errors.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		err := v(cmd, args)
		var u usageError
		if err == nil || errors.As(err, &u) {
			return err
		}
		return usageError{fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())}
	}
}

func (g *globalOptions) setup() error {
	if err := checkThreads(g.threads); err != nil {
		return err
	}
	b, err := newBackend(g)
	if err != nil {
		return err
	}
	g.backend = b
	if g.threads > 0 {
		runtime.GOMAXPROCS(g.threads)
	}
	g.blas = blasimpl.Use(g.threads)
	return nil
}

// close releases what the command's backend holds.
func (g *globalOptions) close() {
	if g.backend != nil {
		g.backend.close()
	}
}

// logf prints a verbose-only line on stderr.
func (g *globalOptions) logf(format string, a ...any) {
	if g.verbose {
		fmt.Fprintf(g.stderr, format+"\n", a...)
	}
}

// notef prints a line on stderr unless --quiet: what a command chose on
// the user's behalf (an input taken from a cache's manifest, say).
func (g *globalOptions) notef(format string, a ...any) {
	if g.quiet {
		return
	}
	// A command that runs layer after layer resolves its inputs again for
	// each; say each thing once.
	msg := fmt.Sprintf(format, a...)
	if g.noted[msg] {
		return
	}
	if g.noted == nil {
		g.noted = map[string]bool{}
	}
	g.noted[msg] = true
	fmt.Fprintln(g.stderr, msg)
}

// addJSONFlag adds --json to a reporting command.
func addJSONFlag(cmd *cobra.Command, g *globalOptions) {
	cmd.Flags().BoolVar(&g.json, "json", false, "print one JSON document on stdout instead of a table")
}

// addLayersJSONFlag adds --json to a reporting command that runs layer by
// layer with --layers or on a layer set (printLayerDocs).
func addLayersJSONFlag(cmd *cobra.Command, g *globalOptions) {
	on := "with --layers, or on a\nlayer set"
	if cmd.Flags().Lookup("layers") == nil {
		on = "on a layer set"
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print one JSON document on stdout instead of a table ("+on+": {\"layers\": [L, ...], \"results\": [layer L's document, ...]})")
}

// exactArgs rejects any number of positional arguments but n as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d (see `%s --help`)", cmd.Name(), plural(n, "argument"), len(args), cmd.CommandPath())
		}
		return nil
	}
}

// removeIfNewAndEmpty is for a deferred call at the start of a command
// that makes its --out directory: when the command fails (*err not nil)
// and dir did not exist at the call, dir is removed if nothing in it holds
// data: it is empty, or holds only empty directories and a layer set's
// layers.json (cache build --layers writes them first), all this run's.
// So a run that failed before writing anything leaves no --out behind
// that would refuse the corrected rerun.
func removeIfNewAndEmpty(dir string) func(err *error) {
	_, statErr := os.Lstat(dir) // a dangling symlink is the user's too
	isNew := dir != "" && errors.Is(statErr, fs.ErrNotExist)
	return func(err *error) {
		if !isNew || *err == nil {
			return
		}
		entries, rerr := os.ReadDir(dir)
		if rerr != nil {
			return
		}
		for _, e := range entries {
			switch sub, serr := os.ReadDir(filepath.Join(dir, e.Name())); {
			case e.IsDir() && serr == nil && len(sub) == 0:
			case e.Type().IsRegular() && e.Name() == actcache.LayerSetName:
			default:
				return // data, or what cannot be read: kept
			}
		}
		for _, e := range entries {
			os.Remove(filepath.Join(dir, e.Name())) // a directory only while empty
		}
		os.Remove(dir)
	}
}
