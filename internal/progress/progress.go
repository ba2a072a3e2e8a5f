package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Bar reports progress towards a total count of units.
type Bar struct {
	w        io.Writer
	label    string
	unit     string
	total    int64
	done     int64
	start    time.Time
	last     time.Time
	live     bool // redraw in place (a terminal)
	quiet    bool
	extra    string
	lastLen  int
	finished bool
}

// New starts a bar for total units (e.g. "tokens"; 0 when unknown) writing to w. live
// redraws are used only when w is a terminal; quiet silences everything.
func New(w io.Writer, label string, total int64, unit string, quiet bool) *Bar {
	now := time.Now()
	return &Bar{w: w, label: label, unit: unit, total: total, start: now, live: !quiet && isTerminal(w), quiet: quiet}
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
	if !b.live {
		return
	}
	if now := time.Now(); now.Sub(b.last) >= 200*time.Millisecond || b.total > 0 && b.done >= b.total {
		b.last = now
		b.draw("\r")
	}
}

func (b *Bar) line() string {
	el := time.Since(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(b.done) / el
	}
	var s string
	if b.total > 0 {
		s = fmt.Sprintf("%s: %d/%d %s (%.0f%%)", b.label, b.done, b.total, b.unit, 100*float64(b.done)/float64(b.total))
	} else { // total unknown
		s = fmt.Sprintf("%s: %d %s", b.label, b.done, b.unit)
	}
	s += fmt.Sprintf(", %.0f %s/s, %s", rate, b.unit, time.Duration(el*float64(time.Second)).Round(100*time.Millisecond))
	if b.extra != "" {
		s += ", " + b.extra
	}
	return s
}

func (b *Bar) draw(prefix string) {
	s := b.line()
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
	if b.live {
		b.draw("\r")
		fmt.Fprintln(b.w)
		return
	}
	fmt.Fprintln(b.w, b.line())
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
