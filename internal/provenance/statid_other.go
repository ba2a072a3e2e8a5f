//go:build !linux && !darwin

package provenance

import "os"

// fileID reports no identity on platforms where ctxdep does not read one:
// their files are hashed on every run.
func fileID(os.FileInfo) (statID, bool) { return statID{}, false }
