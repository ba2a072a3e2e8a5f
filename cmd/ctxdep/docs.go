package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenDocsCmd is the hidden command that writes the command reference:
// `ctxdep gen-docs docs` (make docs) writes docs/cli/*.md and
// docs/man/*.1 from the command tree. A test checks that the files in the
// repository are what it writes.
func newGenDocsCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-docs DIR",
		Short:  "Write the command reference: DIR/cli/*.md and DIR/man/*.1",
		Hidden: true,
		Args:   exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := genDocs(cmd.Root())
			if err != nil {
				return err
			}
			n, err := writeDocs(args[0], files)
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %d files under %s\n", n, args[0])
			}
			return err
		},
	}
}

// docDirs are the folders genDocs fills, and the file extension of each.
var docDirs = map[string]string{"cli": ".md", "man": ".1"}

// genDocs renders the reference of every command under root: markdown
// (cli/NAME.md) and man pages (man/NAME.1), keyed by path relative to the
// docs folder. The output depends only on the command tree: no date, no
// "auto generated" footer.
func genDocs(root *cobra.Command) (map[string][]byte, error) {
	files := map[string][]byte{}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if c != root && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return nil
		}
		c.DisableAutoGenTag = true
		base := strings.ReplaceAll(c.CommandPath(), " ", "_")
		var md bytes.Buffer
		if err := doc.GenMarkdownCustom(c, &md, func(s string) string { return s }); err != nil {
			return err
		}
		files[filepath.Join("cli", base+".md")] = md.Bytes()
		var man bytes.Buffer
		header := &doc.GenManHeader{Section: "1", Source: "ctxdep", Manual: "ctxdep manual"}
		if err := doc.GenMan(c, header, &man); err != nil {
			return err
		}
		files[filepath.Join("man", strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")] = undate(man.Bytes())
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return files, walk(root)
}

// thLine is a man page's title line: .TH "TITLE" "SECTION" "DATE" ...
var thLine = regexp.MustCompile(`(?m)^(\.TH "[^"]*" "[^"]*") "[^"]*"`)

// undate empties the date cobra writes in a man page's title line (the
// month it ran), so that the pages depend on the commands alone.
func undate(b []byte) []byte { return thLine.ReplaceAll(b, []byte(`$1 ""`)) }

// writeDocs writes files under dir and removes the files of a former run
// that are no longer generated (a command removed or renamed).
func writeDocs(dir string, files map[string][]byte) (int, error) {
	for sub, ext := range docDirs {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
		old, err := filepath.Glob(filepath.Join(d, "*"+ext))
		if err != nil {
			return 0, err
		}
		for _, p := range old {
			if _, ok := files[filepath.Join(sub, filepath.Base(p))]; !ok {
				if err := os.Remove(p); err != nil {
					return 0, err
				}
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o644); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}
