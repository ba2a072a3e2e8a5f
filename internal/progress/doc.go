// Package progress reports the progress of long work on stderr: a line
// redrawn in place at most five times a second when stderr is a terminal,
// a plain line every 30 seconds otherwise (a batch job's log), and one
// summary line at the end unless quiet. Progress lines give the count,
// the rate, the elapsed time and, when the total is known, the ETA.
//
// New starts a Bar towards a total (0 when unknown); Add counts units done
// and may replace the text after the counts (a loss, say); Resumed counts
// units an earlier run did, outside the rate; Logf prints a message line
// above the bar; Finish writes the summary: the count, the rate and the
// elapsed time.
//
// Invariants: a Bar writes only to the writer it was given, and redraws
// in place only when that writer is a terminal, so logs and pipes get
// whole lines, never carriage returns; a quiet Bar writes nothing at all;
// Finish writes its line once however often it is called, and nothing is
// written by Add after it. A Bar is not safe for concurrent use.
package progress
