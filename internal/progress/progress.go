package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// PlainInterval is how often a Bar that writes to no terminal prints a
// progress line.
const PlainInterval = 30 * time.Second

// redrawInterval is how often a Bar on a terminal redraws its line.
const redrawInterval = 200 * time.Millisecond

// Bar reports progress towards a total count of units.
type Bar struct {
	w        io.Writer
	label    string
	unit     string
	total    int64
	done     int64
	before   int64 // units done before this run (Resumed): not in the rate
	start    time.Time
	last     time.Time // last redraw or plain line
	live     bool      // redraw in place (a terminal)
	quiet    bool
	every    time.Duration // plain lines off a terminal; 0: none
	now      func() time.Time
	extra    string
	lastLen  int
	finished bool
}

// New starts a bar for total units (e.g. "tokens"; 0 when unknown) writing to w. live
// redraws are used only when w is a terminal; quiet silences everything.
// Off a terminal it prints a plain line every PlainInterval.
func New(w io.Writer, label string, total int64, unit string, quiet bool) *Bar {
	return newBar(w, label, total, unit, quiet, time.Now)
}

func newBar(w io.Writer, label string, total int64, unit string, quiet bool, now func() time.Time) *Bar {
	t := now()
	return &Bar{w: w, label: label, unit: unit, total: total, start: t, last: t, live: !quiet && isTerminal(w), quiet: quiet, every: PlainInterval, now: now}
}

// SetInterval sets how often the bar prints a plain line when it writes
// to no terminal (PlainInterval by default); 0 prints none until Finish.
// It returns b.
func (b *Bar) SetInterval(d time.Duration) *Bar {
	b.every = d
	return b
}

// Resumed counts n units as done by an earlier run: they count towards
// the total, but not towards the rate or the ETA.
func (b *Bar) Resumed(n int64) {
	b.done += n
	b.before += n
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Add records n more units done; extra, when not empty, replaces the text
// shown after the counts (e.g. "loss: 1.476e+00").
func (b *Bar) Add(n int64, extra string) {
	b.done += n
	if extra != "" {
		b.extra = extra
	}
	if b.quiet || b.finished {
		return
	}
	now := b.now()
	switch {
	case b.live:
		if now.Sub(b.last) >= redrawInterval || b.total > 0 && b.done >= b.total {
			b.last = now
			b.draw("\r", now, true)
		}
	case b.every > 0 && now.Sub(b.last) >= b.every && !(b.total > 0 && b.done >= b.total):
		// (At the total, Finish's line says it once.)
		b.last = now
		fmt.Fprintln(b.w, b.line(now, true))
	}
}

// formatRate writes a rate in whole units, or with two significant digits
// below 10, so that one slow step in 3 s reads 0.31, not 0 (and below
// 0.01, "<0.01").
func formatRate(r float64) string {
	if r > 0 && r < 0.01 {
		return "<0.01"
	}
	if r > 0 && r < 10 {
		return strconv.FormatFloat(r, 'g', 2, 64)
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

// line is the progress line at now: the label, the count (of the total,
// with the percentage, when known), the rate, the elapsed time, the ETA
// when eta and the total is known, and the extra text.
func (b *Bar) line(now time.Time, eta bool) string {
	el := now.Sub(b.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(b.done-b.before) / s
	}
	var s string
	if b.total > 0 {
		s = fmt.Sprintf("%s: %d/%d %s (%.0f%%)", b.label, b.done, b.total, b.unit, 100*float64(b.done)/float64(b.total))
	} else { // total unknown
		s = fmt.Sprintf("%s: %d %s", b.label, b.done, b.unit)
	}
	s += fmt.Sprintf(", %s %s/s, %s", formatRate(rate), b.unit, el.Round(100*time.Millisecond))
	if eta && b.total > 0 && b.done < b.total {
		if rate > 0 {
			left := time.Duration(float64(b.total-b.done) / rate * float64(time.Second))
			s += ", ETA " + left.Round(time.Second).String()
		} else {
			s += ", ETA unknown"
		}
	}
	if b.extra != "" {
		s += ", " + b.extra
	}
	return s
}

func (b *Bar) draw(prefix string, now time.Time, eta bool) {
	s := b.line(now, eta)
	pad := ""
	if n := b.lastLen - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	b.lastLen = len(s)
	fmt.Fprint(b.w, prefix+s+pad)
}

// Finish ends the bar with one summary line (nothing when quiet).
func (b *Bar) Finish() {
	if b.finished || b.quiet {
		return
	}
	b.finished = true
	now := b.now()
	if b.live {
		b.draw("\r", now, false)
		fmt.Fprintln(b.w)
		return
	}
	fmt.Fprintln(b.w, b.line(now, false))
}

// Logf prints a message line above the bar (nothing when quiet).
func (b *Bar) Logf(format string, a ...any) {
	if b.quiet {
		return
	}
	if b.live && b.lastLen > 0 {
		fmt.Fprint(b.w, "\r"+strings.Repeat(" ", b.lastLen)+"\r")
		b.lastLen = 0
	}
	fmt.Fprintf(b.w, format+"\n", a...)
}
