package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/progress"
)

type tokenizeOptions struct {
	data  string
	out   string
	nRows int
	int64 bool
	force bool
	dataOptions
}

func newTokenizeCmd(g *globalOptions) *cobra.Command {
	o := &tokenizeOptions{}
	cmd := &cobra.Command{
		Use:   "tokenize --data PATH --out FILE.npy",
		Short: "Tokenize a text corpus into rows of 128 tokens, exactly as the notebook's tokenize_and_concatenate",
		Long: `Streams documents from --data and writes token rows to a .npy of shape
[rows, --max-length] (int32, or int64 with --int64), BOS (50256) first in each row,
as TransformerLens's tokenize_and_concatenate does: batches of 1000
documents joined by <|endoftext|>, cut into 20 chunks by code points, each chunk
tokenized with GPT-2's BPE, every 50256 dropped, rows of 127 tokens with BOS
prepended, each batch's remainder dropped.

Documents come in the order of the Hugging Face streaming pipeline that the
notebook used: the files (shards) permuted and a --shuffle-buffer of 10,000
documents shuffled with numpy's generator seeded by --shuffle-seed;
--shuffle-buffer 0 reads files in name order and documents in file order.

Formats: JSON lines with a "text" field (.jsonl/.json, optionally .gz/.zst/.xz),
a directory of .txt files (one document each), parquet files with a "text"
column (Hugging Face's current OpenWebText layout), the original OpenWebText
urlsf_subsetNN.tar archives, or a directory of one of these. Invalid UTF-8
becomes U+FFFD, as Python's errors="replace" does, and is counted.

An existing --out is replaced only with --force, and never one inside an
activation cache; the file appears complete or not at all.`,
		Example: `  ctxdep tokenize --data ~/owt/ --out owt-rows.npy --n-rows 10000
  ctxdep tokenize --data docs.jsonl.zst --shuffle-buffer 0 --out rows.npy`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenize(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "corpus file or directory")
	f.StringVar(&o.out, "out", "", "output .npy")
	f.IntVar(&o.nRows, "n-rows", 0, "stop after this many rows; a corpus that ends first is written whole, with a note (default: the whole corpus)")
	f.BoolVar(&o.int64, "int64", false, "write int64 (as torch's tokenizer output) instead of int32")
	f.BoolVar(&o.force, "force", false, "replace an existing --out file (never one inside an activation cache)")
	addDataFlags(f, &o.dataOptions, "seed")
	addJSONFlag(cmd, g)
	return cmd
}

func runTokenize(ctx context.Context, g *globalOptions, o *tokenizeOptions) (err error) {
	switch {
	case o.data == "" || o.out == "":
		return usagef("tokenize needs --data PATH and --out FILE.npy")
	case o.nRows < 0:
		return usagef("--n-rows %d: want a positive count", o.nRows)
	}
	if same, err := outIsInput(o.out, o.data); err == nil && same {
		return usagef("--out %s is the corpus --data %s reads, or inside it: choose another path", o.out, o.data)
	}
	src, err := openText(o.data, o.dataOptions)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := checkOutFile(o.out, o.force); err != nil {
		return err
	}
	made, err := makeDirs(filepath.Dir(o.out), o.out) // a missing parent, as fit and cache build make theirs
	if err != nil {
		return err
	}
	defer made.removeIfFailed(&err) // after the lock, whose file is in it
	lock, err := lockOutFile(g, o.out, "tokenize", o.force)
	if err != nil {
		return err
	}
	defer lock.Release()
	w, err := npy.CreateRows(o.out, o.maxLength, o.int64)
	if err != nil {
		return err
	}
	total := int64(o.nRows)
	bar := progress.New(g.stderr, "tokenize", total, "rows", g.quiet)
	row := make([]int32, o.maxLength)
	for o.nRows == 0 || w.Rows() < o.nRows {
		if err := ctx.Err(); err != nil {
			w.Abort()
			return err
		}
		err := src.Next(row)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			w.Abort()
			return err
		}
		if err := w.Append(row); err != nil {
			w.Abort()
			return err
		}
		bar.Add(1, "")
	}
	bar.Finish()
	if w.Rows() == 0 {
		w.Abort()
		return fmt.Errorf("%s yielded no complete row of %d tokens (%s)", o.data, o.maxLength, src.summary())
	}
	if err := w.Close(); err != nil {
		return err
	}
	if o.nRows > 0 && w.Rows() < o.nRows {
		g.notef("note: %s ended after %d rows, fewer than the %d --n-rows asks for: %s holds all of them", o.data, w.Rows(), o.nRows, o.out)
	}
	if g.json {
		rs := src.readerStats()
		return json.NewEncoder(g.stdout).Encode(map[string]any{"out": o.out, "rows": w.Rows(), "tokens": w.Rows() * o.maxLength,
			"documents": rs.Documents, "files": rs.Files, "empty": rs.Empty, "replaced": rs.Replaced, "skipped": rs.Skipped, "tokenizer": src.stream.Stats()})
	}
	fmt.Fprintf(g.stdout, "%s: %d rows × %d tokens from %s\n", o.out, w.Rows(), o.maxLength, src.summary())
	return nil
}

// outIsInput reports whether the file out is the input path data (the
// same file, whatever the path's spelling) or lies inside the directory
// data: --force must never replace the corpus being read.
func outIsInput(out, data string) (bool, error) {
	di, err := os.Stat(data)
	if err != nil {
		return false, err
	}
	if oi, err := os.Stat(out); err == nil && os.SameFile(oi, di) {
		return true, nil
	}
	if !di.IsDir() {
		return false, nil
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return false, err
	}
	for p := filepath.Dir(absOut); ; p = filepath.Dir(p) {
		if pi, err := os.Stat(p); err == nil && os.SameFile(pi, di) {
			return true, nil
		}
		if filepath.Dir(p) == p {
			return false, nil
		}
	}
}
