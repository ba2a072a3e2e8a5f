package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// clock is a fake time source that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestBar(w *bytes.Buffer, total int64, quiet bool) (*Bar, *clock) {
	c := &clock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newBar(w, "build", total, "tokens", quiet, c.now), c
}

// Off a terminal: nothing until the interval has passed, then one plain
// line per interval with the count, rate, elapsed time and ETA; the
// summary line has no ETA.
func TestPlainLines(t *testing.T) {
	var w bytes.Buffer
	b, c := newTestBar(&w, 1000, false)
	c.advance(10 * time.Second)
	b.Add(100, "")
	if w.Len() != 0 {
		t.Fatalf("a line before the interval: %q", w.String())
	}
	c.advance(20 * time.Second)
	b.Add(200, "loss: 1")
	want := "build: 300/1000 tokens (30%), 10 tokens/s, 30s, ETA 1m10s, loss: 1\n"
	if w.String() != want {
		t.Fatalf("after 30 s: %q, want %q", w.String(), want)
	}
	c.advance(29 * time.Second)
	b.Add(1, "")
	if w.String() != want {
		t.Fatalf("a second line within the interval: %q", w.String())
	}
	c.advance(time.Second)
	b.Add(299, "")
	c.advance(5 * time.Second)
	b.Add(400, "")
	b.Finish()
	b.Finish()
	b.Add(1, "")
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if len(lines) != 3 || lines[1] != "build: 600/1000 tokens (60%), 10 tokens/s, 1m0s, ETA 40s, loss: 1" ||
		lines[2] != "build: 1000/1000 tokens (100%), 15 tokens/s, 1m5s, loss: 1" {
		t.Errorf("lines %q", lines)
	}
	if strings.Contains(w.String(), "\r") {
		t.Error("carriage return off a terminal")
	}
}

// Reaching the total after an interval prints no periodic line: the
// summary line says 100% once (the report's pass ended at 100%, then its
// writing ended with a second 100% line).
func TestPlainTotalOnce(t *testing.T) {
	var w bytes.Buffer
	b, c := newTestBar(&w, 100, false)
	c.advance(40 * time.Second)
	b.Add(100, "")
	c.advance(5 * time.Second)
	b.Finish()
	if got := w.String(); got != "build: 100/100 tokens (100%), 2.2 tokens/s, 45s\n" {
		t.Errorf("%q", got)
	}
}

// An unknown total has no ETA; no rate yet says so; interval 0 prints
// only the summary; quiet prints nothing.
func TestPlainLineEdges(t *testing.T) {
	var w bytes.Buffer
	b, c := newTestBar(&w, 0, false)
	c.advance(time.Minute)
	b.Add(5, "")
	if got := w.String(); got != "build: 5 tokens, 0.083 tokens/s, 1m0s\n" {
		t.Errorf("unknown total: %q", got)
	}
	w.Reset()
	b, c = newTestBar(&w, 10, false)
	c.advance(time.Minute)
	b.Add(0, "")
	if got := w.String(); got != "build: 0/10 tokens (0%), 0 tokens/s, 1m0s, ETA unknown\n" {
		t.Errorf("no rate yet: %q", got)
	}
	w.Reset()
	b, c = newTestBar(&w, 10, false)
	b.SetInterval(0)
	c.advance(time.Hour)
	b.Add(5, "")
	b.Finish()
	if got := w.String(); got != "build: 5/10 tokens (50%), <0.01 tokens/s, 1h0m0s\n" {
		t.Errorf("interval 0: %q", got)
	}
	w.Reset()
	b, c = newTestBar(&w, 10, true)
	c.advance(time.Hour)
	b.Add(5, "")
	b.Logf("hello")
	b.Finish()
	if w.Len() != 0 {
		t.Errorf("quiet bar wrote %q", w.String())
	}
}

// Units resumed from an earlier run count in the total, not in the rate.
func TestResumed(t *testing.T) {
	var w bytes.Buffer
	b, c := newTestBar(&w, 100, false)
	b.Resumed(50)
	c.advance(30 * time.Second)
	b.Add(30, "")
	if got := w.String(); got != "build: 80/100 tokens (80%), 1 tokens/s, 30s, ETA 20s\n" {
		t.Errorf("resumed: %q", got)
	}
}

// On a terminal the bar redraws in place, with the ETA, at most every
// 200 ms, and ends with a newline.
func TestLiveBarETA(t *testing.T) {
	var w bytes.Buffer
	b, c := newTestBar(&w, 100, false)
	b.live = true
	c.advance(100 * time.Millisecond)
	b.Add(1, "")
	if w.Len() != 0 {
		t.Fatalf("redrawn within 200 ms: %q", w.String())
	}
	c.advance(9900 * time.Millisecond)
	b.Add(9, "")
	if got := w.String(); got != "\rbuild: 10/100 tokens (10%), 1 tokens/s, 10s, ETA 1m30s" {
		t.Errorf("live line %q", got)
	}
	w.Reset()
	c.advance(10 * time.Second)
	b.Add(90, "")
	b.Finish()
	// The previous line was 9 characters longer: blanked.
	if got := w.String(); got != "\rbuild: 100/100 tokens (100%), 5 tokens/s, 20s"+strings.Repeat(" ", 9)+"\rbuild: 100/100 tokens (100%), 5 tokens/s, 20s\n" {
		t.Errorf("live finish %q", got)
	}
}
