package provenance

import "syscall"

// ctimeNs is the file's status-change time in nanoseconds.
func ctimeNs(st *syscall.Stat_t) int64 {
	return int64(st.Ctimespec.Sec)*1e9 + int64(st.Ctimespec.Nsec)
}
