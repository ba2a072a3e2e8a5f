package dirlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Name is the lock file of a directory written as a whole: DIR/.ctxdep.lock.
const Name = ".ctxdep.lock"

// Path returns the lock file of dir.
func Path(dir string) string { return filepath.Join(dir, Name) }

// Beside returns the lock file of an output that is replaced as a whole
// (a file, or a directory renamed into place), which cannot hold its own
// lock: .NAME.ctxdep.lock in its parent.
func Beside(path string) string {
	parent, name := filepath.Split(filepath.Clean(path))
	return filepath.Join(parent, "."+name+Name)
}

// Holder is what a lock file says about the process that holds the lock.
type Holder struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	What  string    `json:"what"`           // e.g. "ctxdep cache build"
	Args  string    `json:"args,omitempty"` // the command line, shortened
	Since time.Time `json:"since"`
}

// String describes h: "pid 1234 on host h (ctxdep cache build, since
// 2025-01-02 15:04:05)"; a nil h is a holder its lock file does not name.
func (h *Holder) String() string {
	if h == nil {
		return "a process that its lock file does not name"
	}
	var paren []string
	if h.What != "" {
		paren = append(paren, h.What)
	}
	if !h.Since.IsZero() {
		paren = append(paren, "since "+h.Since.Local().Format("2006-01-02 15:04:05"))
	}
	s := fmt.Sprintf("pid %d on host %s", h.PID, orUnknown(h.Host))
	if h.Self() {
		s = fmt.Sprintf("this process (pid %d on host %s)", h.PID, orUnknown(h.Host))
	}
	if len(paren) > 0 {
		s += " (" + strings.Join(paren, ", ") + ")"
	}
	return s
}

// Self reports whether h is this process.
func (h *Holder) Self() bool { return h.PID == os.Getpid() && h.Host == hostname() }

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// Options say what a lock is for.
type Options struct {
	// What the holder does, written into the lock file for the message a
	// second writer gets: "ctxdep cache build".
	What string
	// Subject names what the lock guards in messages ("/data/cache-l8");
	// default: the lock file's directory.
	Subject string
	// Advice ends a BusyError's message; default "wait for it to finish,
	// or use another --out".
	Advice string
	// Notice is told when a lock that a process left behind is taken
	// over; nil writes the notice to stderr.
	Notice func(string)
	// KeepFile leaves the lock file in place at Release (emptied), for
	// lock files that other programs share.
	KeepFile bool
}

func (o *Options) subject(path string) string {
	if o.Subject != "" {
		return o.Subject
	}
	return filepath.Dir(path)
}

func (o *Options) notice(msg string) {
	if o.Notice != nil {
		o.Notice(msg)
		return
	}
	fmt.Fprintf(os.Stderr, "ctxdep: %s\n", msg)
}

// BusyError is the error of TryLock when another live process (or another
// lock in this one) holds the lock.
type BusyError struct {
	Path    string  // the lock file
	Subject string  // what it guards
	Holder  *Holder // nil when the lock file names no holder
	Advice  string
}

func (e *BusyError) Error() string {
	who := fmt.Sprintf("another process (its lock file %s does not say which)", e.Path)
	if e.Holder != nil {
		who = e.Holder.String()
	}
	advice := e.Advice
	if advice == "" {
		advice = "wait for it to finish, or use another --out"
	}
	return fmt.Sprintf("%s is being written by %s; %s", e.Subject, who, advice)
}

// Lock is a lock taken by TryLock or Wait, held until Release.
type Lock struct {
	path string
	f    *os.File
	keep bool
}

// Path returns the lock file.
func (l *Lock) Path() string { return l.path }

// Release drops the lock and removes its file (see the package comment).
// It is a no-op on a nil or released Lock, so it can be deferred.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	var err error
	if l.keep {
		err = f.Truncate(0)
	} else if fi, serr := f.Stat(); serr == nil {
		// Remove the file while the lock is held, and only if the path
		// still names it.
		if pi, perr := os.Stat(l.path); perr == nil && os.SameFile(fi, pi) {
			if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("release lock %s: %w", l.path, err)
	}
	return nil
}

// Held reports whether l still holds its lock.
func (l *Lock) Held() bool { return l != nil && l.f != nil }

// busyGrace is how long TryLock retries a busy lock before it reports it:
// a Probe holds a lock for microseconds, and a new holder writes its name
// just after it takes the lock.
const busyGrace = 300 * time.Millisecond

// TryLock takes the exclusive lock at path, creating the file, or returns
// a *BusyError naming the holder when a live process holds it. A lock file
// whose holder is gone is taken over with a notice.
func TryLock(path string, o Options) (*Lock, error) {
	deadline := time.Now().Add(busyGrace)
	for {
		l, h, err := try(path, &o)
		if l != nil || err != nil {
			return l, err
		}
		if h != nil && h.Self() {
			// Perhaps a lock of this process that was dropped without
			// Release: the collector closes its file, which frees it.
			runtime.GC()
		}
		if time.Now().After(deadline) {
			return nil, &BusyError{Path: path, Subject: o.subject(path), Holder: h, Advice: o.Advice}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Wait takes the lock at path as TryLock does, but waits while it is busy,
// polling, until ctx ends; waiting, when not nil, is called once with the
// holder (nil when unnamed) if the lock is busy at first.
func Wait(ctx context.Context, path string, o Options, waiting func(*Holder)) (*Lock, error) {
	told := false
	for {
		l, err := TryLock(path, o)
		var busy *BusyError
		if !errors.As(err, &busy) {
			return l, err
		}
		if !told && waiting != nil {
			waiting(busy.Holder)
		}
		told = true
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", busy.Subject, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// try makes one attempt: the lock, or (nil, holder, nil) when busy, or
// (nil, nil, nil) when the file was replaced under it (try again).
func try(path string, o *Options) (*Lock, *Holder, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	ok, err := flock(f, true)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !ok {
		h := readHolder(f)
		f.Close()
		return nil, h, nil
	}
	// The previous holder may have removed the file after this one opened
	// it: the lock is then on a file nobody else will look at.
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if pi, err := os.Stat(path); err != nil || !os.SameFile(fi, pi) {
		f.Close()
		return nil, nil, nil
	}
	if prev := readHolder(f); prev != nil && exclusive {
		o.notice(fmt.Sprintf("%s: taking over the lock left by %s", o.subject(path), gone(prev)))
	}
	me := Holder{PID: os.Getpid(), Host: hostname(), What: o.What, Args: args(), Since: time.Now().UTC().Truncate(time.Second)}
	raw, _ := json.Marshal(me)
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(append(raw, '\n'), 0)
	}
	if err != nil {
		l := &Lock{path: path, f: f}
		return nil, nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), l.Release())
	}
	return &Lock{path: path, f: f, keep: o.KeepFile}, nil, nil
}

// gone describes the holder of a lock that is free but still names it.
func gone(h *Holder) string {
	switch {
	case h.Self():
		return h.String() + ", which dropped it without releasing it (a writer that was not closed)"
	case h.Host != hostname():
		return h.String() + ", which no longer holds it (the process ended, or that host does not share file locks with this one)"
	case !processAlive(h.PID):
		return h.String() + ", which is no longer running"
	}
	return h.String() + ", which no longer holds it"
}

// Probe reports whether a live process holds the lock at path, and who
// (nil when the file does not say). It never creates the file and never
// keeps a lock. A lock that this process holds counts as held unless it
// was dropped without Release (the collector frees it first).
func Probe(path string) (*Holder, bool, error) {
	h, held, err := probe(path)
	for i := 0; held && err == nil && h != nil && h.Self() && i < 5; i++ {
		runtime.GC()
		time.Sleep(time.Duration(i+1) * 2 * time.Millisecond)
		h, held, err = probe(path)
	}
	return h, held, err
}

func probe(path string) (*Holder, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	defer f.Close()
	ok, err := flock(f, false)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	if ok {
		return nil, false, nil // closing the file drops the shared lock
	}
	return readHolder(f), true, nil
}

// readHolder returns the holder a lock file names; nil when it names none
// (empty, or being written).
func readHolder(f *os.File) *Holder {
	raw, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil || len(strings.TrimSpace(string(raw))) == 0 {
		return nil
	}
	var h Holder
	if json.Unmarshal(raw, &h) != nil || h.PID <= 0 {
		return nil
	}
	return &h
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// args returns the command line, shortened, for the lock file.
func args() string {
	a := make([]string, len(os.Args))
	copy(a, os.Args)
	if len(a) > 0 {
		a[0] = filepath.Base(a[0])
	}
	s := strings.Join(a, " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
