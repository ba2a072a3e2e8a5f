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
	"runtime/pprof"
	"syscall"

	"github.com/ctxdep/ctxdep/internal/atomicdir"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile(os.Getenv("CTXDEP_CPUPROFILE"), os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

// startProfile writes a CPU profile of the whole run to path when it is
// not empty ($CTXDEP_CPUPROFILE: `go tool pprof bin/ctxdep FILE` shows
// where a command spends its time); the returned function ends it. A
// profile that cannot be written is a warning, not a failed command.
func startProfile(path string, stderr io.Writer) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ctxdep: warning: no CPU profile (CTXDEP_CPUPROFILE): %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "ctxdep: warning: CPU profile %s: %v\n", path, err)
		}
	}
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

// outUsage makes an output directory check's error a usage error where
// --out names something that is not a directory (atomicdir.ErrNotDir).
func outUsage(err error) error {
	if errors.Is(err, atomicdir.ErrNotDir) {
		return usageError{err}
	}
	return err
}

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
