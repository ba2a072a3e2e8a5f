// Package atomicfile writes files so that they appear under their final
// name only when complete: data goes to a temporary file next to the
// destination, which is synced and then renamed into place. A crash or an
// error leaves the destination as it was.
//
// WriteFile does it for data held in memory. Writers that stream (the
// safetensors and .npy writers) use the parts: CreateTemp opens a fresh
// file named by TempName, .BASE.tmp-XXXXXXXX in the destination's
// directory, and Commit syncs, closes and renames it onto the destination,
// then syncs the directory (SyncDir, best effort).
//
// Invariants: the temporary file is in the destination's directory, so the
// rename stays within one filesystem and replaces the destination in one
// step; the file's data are synced before the rename; a failed Commit or
// WriteFile removes its temporary file. A caller that gives up before
// Commit closes and removes the temporary file itself; a crash can leave
// one behind, recognisable by its name: ParseTempName tells such names
// apart and Leftovers lists them in a directory, for the next writer
// there to remove (under its lock, so that a live writer's are never
// touched) and for checks to report.
package atomicfile
