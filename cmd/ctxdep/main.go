// Command ctxdep studies how context-dependent the features of GPT-2
// small's transcoders are: it caches TransformerLens-exact activations,
// fits midcoders and evaluates them. See `ctxdep --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns its exit status; errors are
// printed to stderr as one line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, g := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	g.close()
	return exitCode(err, ctx, stderr)
}

// Exit statuses, as the root --help states them.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// usageError marks a bad flag or argument (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode prints err once, as one line, and maps it to an exit status.
func exitCode(err error, ctx context.Context, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "ctxdep: interrupted")
		return exitInterrupted
	}
	fmt.Fprintln(stderr, "ctxdep: "+oneLine(err.Error()))
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailure
}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
