//go:build linux || darwin

package provenance

import (
	"os"
	"syscall"
)

// fileID returns fi's identity; false when the platform gives none.
func fileID(fi os.FileInfo) (statID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return statID{}, false
	}
	return statID{
		Size:    fi.Size(),
		MtimeNs: fi.ModTime().UnixNano(),
		CtimeNs: ctimeNs(st),
		Inode:   st.Ino,
		Dev:     uint64(st.Dev),
	}, true
}
