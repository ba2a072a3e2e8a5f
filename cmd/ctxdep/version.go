package main

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/ctxdep/ctxdep/internal/cuda"
)

func newVersionCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the BLAS backend and the kernel in use",
		Example: `  ctxdep version
  OPENBLAS_CORETYPE=Haswell ctxdep version --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVersion(g)
		},
	}
	addJSONFlag(cmd, g)
	return cmd
}

func runVersion(g *globalOptions) error {
	v := map[string]any{
		"version": version, "go": runtime.Version(), "os_arch": runtime.GOOS + "/" + runtime.GOARCH,
		"blas_backend": g.blas.Backend, "blas_kernel": g.blas.Kernel, "threads": g.blas.Threads, "cuda": cuda.Built,
	}
	cudaNote := ""
	if cuda.Simulated {
		v["cuda_simulated"] = true
		cudaNote = " (a simulated device: the kernels emulated on the CPU, for tests)"
	}
	if g.json {
		return json.NewEncoder(g.stdout).Encode(v)
	}
	fmt.Fprintf(g.stdout, "ctxdep %s (%s, %s)\nblas: %s, kernel %s, %d threads\ncuda: %v%s\n",
		version, runtime.Version(), v["os_arch"], g.blas.Backend, g.blas.Kernel, g.blas.Threads, cuda.Built, cudaNote)
	return nil
}
