package tokrows

import (
	"strings"
	"testing"
)

// FuzzStream compares the Stream with the reference on documents made by
// splitting the input at NUL bytes, with small row lengths so that short
// inputs give rows. Seeds: the calls below.
func FuzzStream(f *testing.F) {
	f.Add("Hello world!\x00The quick brown fox.\x00\x00Bye.", uint8(4))
	f.Add("a\x00a\x00a\x00a\x00a\x00a\x00a\x00a", uint8(2))
	f.Add("<|endoftext|>x\x00 \t \x00日本語👍🏽\x00\xe2\x82 bad", uint8(3))
	f.Add("", uint8(128))
	tok := gpt2(f)
	f.Fuzz(func(t *testing.T, text string, maxLength uint8) {
		if maxLength < 2 {
			return
		}
		var docs []string
		if text != "" {
			docs = strings.Split(text, "\x00")
		}
		want := referenceRows(tok, docs, int(maxLength))
		got := collect(t, New(tok, sliceSource(docs), int(maxLength)))
		compareRows(t, "Stream", got, want)
	})
}
