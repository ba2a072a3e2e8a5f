package bpe

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// Golden files, written by testdata/gen/gen_bpe.py (an independent Python
// implementation of GPT-2's encoder.py; see its docstring to regenerate).
const (
	goldenText = "../../testdata/bpe/golden.txt"
	goldenJSON = "../../testdata/bpe/golden.json"
)

var shared struct {
	once   sync.Once
	tok    *Tokenizer
	naive  *naiveEncoder
	merges [][2]string
	err    error
}

// gpt2 returns the embedded tokenizer, its derived merges and the naive
// encoder over them, built once per test binary.
func gpt2(t testing.TB) (*Tokenizer, *naiveEncoder) {
	t.Helper()
	shared.once.Do(func() {
		shared.tok, shared.err = GPT2()
		if shared.err != nil {
			return
		}
		shared.merges, shared.err = deriveMerges(shared.tok.ranks)
		if shared.err != nil {
			return
		}
		shared.naive = newNaiveEncoder(shared.tok, shared.merges)
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.tok, shared.naive
}

type golden struct {
	InputSHA256 string `json:"input_sha256"`
	Known       []struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	} `json:"known"`
	Cases []struct {
		Name   string  `json:"name"`
		Offset int     `json:"offset"`
		Length int     `json:"length"`
		IDs    []int32 `json:"ids"`
	} `json:"cases"`
	Decode []struct {
		Name string  `json:"name"`
		IDs  []int32 `json:"ids"`
		Text string  `json:"text"`
	} `json:"decode"`
	UTF8 []struct {
		Hex  string `json:"hex"`
		Text string `json:"text"`
	} `json:"utf8"`
}

// loadGolden reads golden.json and golden.txt and checks that the text is
// the one the ids were made from.
func loadGolden(t testing.TB) (golden, []byte) {
	t.Helper()
	data, err := os.ReadFile(goldenJSON)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("%s: %v", goldenJSON, err)
	}
	text, err := os.ReadFile(goldenText)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(text); hex.EncodeToString(sum[:]) != g.InputSHA256 {
		t.Fatalf("%s does not match %s (sha256); rerun testdata/gen/gen_bpe.py", goldenText, goldenJSON)
	}
	return g, text
}

// englishText returns about n bytes of deterministic English-like text with
// numbers, punctuation, some accented and non-Latin words, contractions and
// whitespace runs.
func englishText(n int, seed uint64) string {
	words := strings.Fields(`the of and to in a is that for it as was with be by on not he I this are or his
		from at which but have an they you were her she there been one all we their has would when if so no
		will more can its time only new some could these two may first then do any like my now over such
		our man me even most made after also did many before must through back years where much your way
		well down should because each just those people how too little state good very make world still
		own see men work long get here between both life being under never day same another know while
		last might us great old year off come since against go came right used take three transformer
		feature residual attention layer token sparse activation gradient café naïve résumé Zürich
		straße São Ångström 東京 中文 русский Ελληνικά مرحبا हिन्दी 👍 🙂 don't it's we've they'll I'm you'd`)
	punct := []string{".", ",", ";", ":", "!", "?", " -", " —", "'s", ")", " (", "\""}
	r := rand.New(rand.NewPCG(seed, 42))
	var b strings.Builder
	for b.Len() < n {
		w := words[r.IntN(len(words))]
		if r.IntN(8) == 0 && w[0] < utf8.RuneSelf {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		b.WriteString(w)
		switch k := r.IntN(40); {
		case k < 6:
			b.WriteString(punct[r.IntN(len(punct))])
			b.WriteByte(' ')
		case k == 6:
			b.WriteString(" 19")
			b.WriteString(string(rune('0' + r.IntN(10))))
			b.WriteString("0s ")
		case k == 7:
			b.WriteString(".\n\n")
		case k == 8:
			b.WriteString("  \t ")
		case k == 9:
			b.WriteString(" 3.14 ")
		default:
			b.WriteByte(' ')
		}
	}
	return b.String()
}
