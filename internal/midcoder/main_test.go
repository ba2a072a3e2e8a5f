package midcoder

import (
	"os"
	"testing"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
)

// TestMain installs the build's BLAS, so that `go test -tags openblas`
// checks the numerics on OpenBLAS and plain `go test` on pure Go.
func TestMain(m *testing.M) {
	blasimpl.Use(0)
	os.Exit(m.Run())
}
