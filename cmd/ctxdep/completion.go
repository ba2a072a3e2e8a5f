package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/owt"
)

// flagValues are the values shell completion offers for flags of these
// names, in whichever command they appear.
var flagValues = map[string][]string{
	"init":   {"kaiming", "zeros", "pinv"},
	"act":    {midcoder.ReLU.String(), midcoder.GeluNew.String()},
	"device": {"cpu", "cuda"},
	"dtype":  {"float32", "float16"},
	"format": {string(owt.FormatJSONL), string(owt.FormatParquet), string(owt.FormatTar), string(owt.FormatTxt)},
}

// Flags that name a directory, and flags that name a file of a known kind
// (by its extensions); other path flags (--out, --data, --transcoder,
// which take a file or a directory) get the shell's plain file completion.
var (
	dirFlags  = []string{"cache", "model", "transcoders", "tokenizer"}
	fileFlags = map[string][]string{"tokens": {"npy"}, "midcoder": {"safetensors"}, "pinv": {"safetensors"}}
)

// registerCompletions gives every command's flags their completions, by
// flag name, walking the whole tree once: values for the flags of
// flagValues, directories or files for path flags.
func registerCompletions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// The flags c defines (persistent ones included), merged into
		// c.Flags(), where completions are registered.
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if vals, ok := flagValues[f.Name]; ok {
				_ = c.RegisterFlagCompletionFunc(f.Name, cobra.FixedCompletions(vals, cobra.ShellCompDirectiveNoFileComp))
				return
			}
			for _, d := range dirFlags {
				if f.Name == d {
					_ = c.MarkFlagDirname(f.Name)
					return
				}
			}
			if exts, ok := fileFlags[f.Name]; ok {
				_ = c.MarkFlagFilename(f.Name, exts...)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
