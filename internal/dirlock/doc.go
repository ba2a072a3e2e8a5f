// Package dirlock keeps two processes from writing one output at once: an
// exclusive lock taken on a lock file, for the whole of a write, that
// names its holder.
//
// A lock is an flock on a small file (for a directory, DIR/.ctxdep.lock:
// Name) into which the holder writes its pid, host, what it is doing and
// since when (Holder), so that a second writer is refused with a message
// that names the first (BusyError): "DIR is being written by pid 1234 on
// host h (ctxdep cache build, since …); wait for it to finish, or use
// another --out". TryLock refuses at once; Wait polls until the lock is
// free or its context ends: internal/hub waits so for another download
// of the same blob, with KeepFile set, since huggingface_hub shares those
// lock files.
//
// The kernel drops an flock when its holder dies, however it dies, so a
// lock is never stale: a lock file whose flock is free but that still
// names a holder was left by a process that ended without releasing it
// (a crash or SIGKILL). The next TryLock takes it over and says so
// through Options.Notice ("taking over the lock left by pid N on host h,
// which is no longer running"). Probe asks, without taking the lock,
// whether a live process holds it (a shared flock, so probes never
// exclude each other).
//
// Release removes the lock file while still holding the lock and then
// drops it; a process that opened the file before the removal and gets
// the flock after it finds that the path no longer names the file it
// locked, and starts again. The file therefore exists only while a write
// runs, or after a crash until the next writer comes.
//
// Within one process, two locks on one file exclude each other as two
// processes' do (flocks belong to open files, not to processes). A lock
// that was dropped without Release, with everything that held it, is
// released when the garbage collector closes its file; TryLock, finding
// its own process named as the holder, collects garbage before it gives
// up, so that a writer abandoned on an error path does not keep the
// output locked for the rest of the process.
//
// Where flock does not exist (lock_other.go), locks are not exclusive:
// the lock file still names its holder, but nothing stops a second one.
package dirlock
