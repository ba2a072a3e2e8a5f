package midcoder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// Files of a fit's output directory.
const (
	ResultFile     = "midcoder.safetensors"   // W_mid, b_mid and Meta
	HistoryFile    = "history.csv"            // epoch,loss,loss_norm,lr
	CheckpointFile = "checkpoint.safetensors" // parameters, AdamW moments and State, per epoch
)

// Job is one fit into an output directory: what it starts from (fresh, or
// the checkpoint of an interrupted run), a checkpoint at each epoch's end,
// and the result files at the end. The steps run on any Backend.
type Job struct {
	Config Config
	Dir    string
	Meta   Meta     // written into the checkpoints and the result
	Key    string   // the settings and inputs a checkpoint must have been written with (Key)
	Host   *Trainer // the host's parameters and AdamW moments, which the backend syncs into
	// Notice receives what Run tells the user besides the fit (a lock
	// that a killed fit left, taken over); nil writes it to stderr.
	Notice func(string)
}

// CheckpointPath returns the path of the job's checkpoint.
func (j *Job) CheckpointPath() string { return filepath.Join(j.Dir, CheckpointFile) }

// Check applies the output directory's rules before any work: a fit that
// another live process is running in Dir is refused, naming it (before
// what Dir holds is judged: that fit's checkpoint is not an interrupted
// one); without resume, a directory that holds a result or a checkpoint is
// refused (nothing is overwritten); with it, there must be a checkpoint.
func (j *Job) Check(resume bool) error {
	if err := j.checkBusy(); err != nil {
		return err
	}
	return j.checkFiles(resume)
}

// checkBusy refuses a Dir whose lock another live process holds.
func (j *Job) checkBusy() error {
	lock := dirlock.Path(j.Dir)
	if h, held, err := dirlock.Probe(lock); err == nil && held {
		return &dirlock.BusyError{Path: lock, Subject: j.Dir, Holder: h}
	}
	return nil
}

// checkFiles is Check's rules on what Dir holds.
func (j *Job) checkFiles(resume bool) error {
	_, errResult := os.Stat(filepath.Join(j.Dir, ResultFile))
	_, errCheckpoint := os.Stat(j.CheckpointPath())
	if !resume {
		switch {
		case errResult == nil:
			return fmt.Errorf("%s %w (%s), which a fit never overwrites: choose another --out, or remove %s to fit again", j.Dir, ErrFinished, ResultFile, j.Dir)
		case errCheckpoint == nil:
			return fmt.Errorf("%s holds the checkpoint of an interrupted fit (%s): pass --resume to continue it with the same settings, or choose another --out", j.Dir, CheckpointFile)
		}
		return nil
	}
	if errCheckpoint != nil {
		if errResult == nil {
			return fmt.Errorf("the fit in %s is %w (%s); nothing to resume: to fit again, choose another --out or remove %s", j.Dir, ErrComplete, ResultFile, j.Dir)
		}
		return fmt.Errorf("--resume: %s has no %s", j.Dir, CheckpointFile)
	}
	return nil
}

// ErrComplete is wrapped by Check's error for a resumed job whose result
// is already there, ErrFinished by its error for a fresh job there.
var (
	ErrComplete = errors.New("already complete")
	ErrFinished = errors.New("already holds a finished fit")
)

// notice tells the user msg through Notice, else on stderr.
func (j *Job) notice(msg string) {
	if j.Notice != nil {
		j.Notice(msg)
		return
	}
	fmt.Fprintln(os.Stderr, msg)
}

// Finished reports whether the job's directory holds the result of this
// very job: a readable midcoder whose settings and inputs give the job's
// Key. A sweep resumed with --resume skips such a job.
func (j *Job) Finished() bool {
	_, meta, err := Load(filepath.Join(j.Dir, ResultFile))
	return err == nil && Key(meta.Config, meta.Provenance) == j.Key
}

// Begin returns the state the job starts from, after Check: a fresh one,
// or with resume the checkpoint's, whose parameters and moments it loads
// into Host.
func (j *Job) Begin(resume bool) (*State, error) {
	if err := j.Check(resume); err != nil {
		return nil, err
	}
	if !resume {
		return &State{LR: j.Config.LR}, nil
	}
	return LoadCheckpoint(j.CheckpointPath(), j.Host, j.Key)
}

// Run fits on b from st to the end (Fit), creating Dir first. After each
// epoch it syncs the host and writes the checkpoint; at the end it writes
// the result (the host's parameters and Meta with the history) and
// history.csv, and removes the checkpoint. A non-finite loss is an error
// that names the checkpoint of the last complete epoch.
//
// Run holds Dir's lock (internal/dirlock) from start to end, so that a
// second fit into Dir is refused with a message naming this one, and
// checks Dir's rules again under it (Check, with resume for a state
// from a checkpoint): a fit that finished or began since Begin is
// never overwritten.
func (j *Job) Run(ctx context.Context, b Backend, st *State, hooks Hooks) error {
	if err := os.MkdirAll(j.Dir, 0o755); err != nil {
		return err
	}
	lock, err := dirlock.TryLock(dirlock.Path(j.Dir), dirlock.Options{What: "ctxdep fit", Subject: j.Dir, Notice: j.Notice})
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := j.checkFiles(st.Epoch > 0); err != nil {
		return err
	}
	// A fit killed while writing left its temporary file (a checkpoint's
	// holds W_mid and both moments: 226 MB at GPT-2 small's shapes).
	removed, err := atomicfile.RemoveLeftovers(j.Dir, func(base string) bool {
		return base == CheckpointFile || base == ResultFile || base == HistoryFile
	})
	if len(removed) > 0 {
		j.notice(fmt.Sprintf("removed %d temporary file(s) that a killed fit left in %s (%s)", len(removed), j.Dir, strings.Join(removed, ", ")))
	}
	if err != nil {
		j.notice(fmt.Sprintf("cannot remove the temporary files that a killed fit left in %s: %v", j.Dir, err))
	}
	ckpt := j.CheckpointPath()
	after := hooks.AfterEpoch
	hooks.AfterEpoch = func(st *State) error {
		if after != nil {
			if err := after(st); err != nil {
				return err
			}
		}
		if err := b.Sync(); err != nil {
			return err
		}
		return SaveCheckpoint(ckpt, j.Host, st, j.Meta, j.Key)
	}
	if err := Fit(ctx, j.Config, b, st, hooks); err != nil {
		var nf *NonFiniteError
		if errors.As(err, &nf) {
			if st.Epoch == 0 {
				return fmt.Errorf("%w (in the first epoch: no checkpoint was written)", err)
			}
			return fmt.Errorf("%w; %s holds the fit after epoch %d, before the loss went non-finite (resuming it with the same settings would end the same way: to fit again with other settings, remove it or choose another --out)", err, ckpt, st.Epoch)
		}
		return err
	}
	if err := b.SyncParams(); err != nil {
		return err
	}
	meta := j.Meta
	meta.History = st.History
	// The moments are current: the last epoch's hook synced them.
	meta.Untrained = j.Host.Opt.UntrainedRows(j.Host.Params.F, j.Host.Params.C)
	if err := Save(filepath.Join(j.Dir, ResultFile), j.Host.Params, meta); err != nil {
		return err
	}
	if err := WriteHistory(filepath.Join(j.Dir, HistoryFile), st.History); err != nil {
		return err
	}
	os.Remove(ckpt)
	return nil
}
