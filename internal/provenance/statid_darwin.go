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
		CtimeNs: int64(st.Ctimespec.Sec)*1e9 + int64(st.Ctimespec.Nsec),
		Inode:   st.Ino,
		Dev:     uint64(st.Dev),
	}, true
}
