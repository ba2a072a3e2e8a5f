package bpe

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkoukk/tiktoken-go"
)

// TestMergeHeapMatchesSmall runs both merge loops on every piece of the
// golden text and of generated text, short ones included.
func TestMergeHeapMatchesSmall(t *testing.T) {
	tok, _ := gpt2(t)
	_, text := loadGolden(t)
	pieces := pretokenize(ToValidUTF8(string(text)) + englishText(64<<10, 3))
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 { // random byte strings, most not valid UTF-8: merging works on bytes
		b := make([]byte, 1+r.IntN(smallPiece))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		pieces = append(pieces, string(b))
	}
	for _, p := range pieces {
		if len(p) > smallPiece {
			continue
		}
		small, big := tok.mergeSmall(nil, p), tok.mergeHeap(nil, p)
		if !slices.Equal(small, big) {
			t.Fatalf("piece %q: mergeSmall %v, mergeHeap %v", p, small, big)
		}
	}
}

// TestLongPieces compares Encode (heap merge) with the naive pair-rank BPE
// on pieces longer than smallPiece, and checks that they stay fast: the
// quadratic loop (and tiktoken-go's) takes seconds on 100 KB of newlines.
func TestLongPieces(t *testing.T) {
	tok, naive := gpt2(t)
	r := rand.New(rand.NewPCG(3, 4))
	letters := func(n int, alphabet string) string {
		a := []rune(alphabet)
		var b strings.Builder
		for range n {
			b.WriteRune(a[r.IntN(len(a))])
		}
		return b.String()
	}
	cases := map[string]string{
		"newlines":     strings.Repeat("\n", 5000),
		"newlines end": "x" + strings.Repeat("\n", 4999) + "y",
		"digits":       letters(3000, "0123456789"),
		"letters":      letters(3000, "abcdefghijklmnopqrstuvwxyz"),
		"aaaa":         strings.Repeat("a", 4097),
		"symbols":      letters(2000, "=-_*#~.!?"),
		"accents":      letters(1000, "éèêëàâäôöûüç"),
		"cjk":          letters(1000, "日本語中文字漢"),
		"65 letters":   letters(65, "abcdefghijklmnopqrstuvwxyz"),
		"tabs spaces":  letters(3000, " \t"),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			if got, want := tok.Encode(s), naive.encode(s); !slices.Equal(got, want) {
				i := firstDiff(got, want)
				t.Fatalf("Encode differs from the naive encoder at token %d: got %v, want %v", i, got[i:min(i+8, len(got))], want[i:min(i+8, len(want))])
			}
		})
	}
	start := time.Now()
	if ids := tok.Encode(strings.Repeat("\n", 1<<20)); len(ids) != 1<<19 {
		t.Errorf("1 MiB of newlines: %d ids, want %d (\"\\n\\n\" = 628 each)", len(ids), 1<<19)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("1 MiB of newlines took %v", d)
	}
}

// TestMatchesTiktoken compares Encode with tiktoken-go's own r50k_base
// encoder (regexp2 and its quadratic byte_pair_merge) on generated text.
func TestMatchesTiktoken(t *testing.T) {
	tok, _ := gpt2(t)
	core, err := tiktoken.NewCoreBPE(tok.ranks, map[string]int{EOTText: EOT}, Pattern)
	if err != nil {
		t.Fatal(err)
	}
	tk := tiktoken.NewTiktoken(core, &tiktoken.Encoding{Name: "gpt2", PatStr: Pattern, MergeableRanks: tok.ranks,
		SpecialTokens: map[string]int{EOTText: EOT}}, map[string]any{EOTText: true})
	_, golden := loadGolden(t)
	text := ToValidUTF8(string(golden)) + englishText(256<<10, 9)
	want := tk.Encode(text, []string{EOTText}, nil)
	got := tok.Encode(text)
	if len(got) != len(want) {
		t.Fatalf("Encode: %d ids, tiktoken-go %d", len(got), len(want))
	}
	for i := range got {
		if int(got[i]) != want[i] {
			t.Fatalf("Encode differs from tiktoken-go at token %d: %d, want %d", i, got[i], want[i])
		}
	}
}
