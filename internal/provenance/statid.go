package provenance

// statID is what identifies an unchanged file to a HashCache.
type statID struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"` // status change: set by every write, chmod or rename; not settable
	Inode   uint64 `json:"inode"`
	Dev     uint64 `json:"dev"`
}
