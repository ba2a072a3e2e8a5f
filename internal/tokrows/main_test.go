package tokrows

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/ctxdep/ctxdep/internal/bpe"
)

var shared struct {
	once sync.Once
	tok  *bpe.Tokenizer
	err  error
}

func gpt2(t testing.TB) *bpe.Tokenizer {
	t.Helper()
	shared.once.Do(func() { shared.tok, shared.err = bpe.GPT2() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.tok
}

// sliceSource returns the documents one by one, then io.EOF.
func sliceSource(docs []string) func() (string, error) {
	i := 0
	return func() (string, error) {
		if i == len(docs) {
			return "", io.EOF
		}
		i++
		return docs[i-1], nil
	}
}

// collect reads a Stream to the end.
func collect(t testing.TB, s *Stream) [][]int32 {
	t.Helper()
	var rows [][]int32
	for {
		row := make([]int32, s.MaxLength())
		err := s.Next(row)
		if err == io.EOF {
			return rows
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
}

// corpusWords and corpusDocs are gen_tokrows.py's corpus(n): the same
// documents, from the same 64-bit LCG (checked against docs_sha256).
var corpusWords = []string{
	"the", "model", "reads", "a", "token", "and", "writes", "its", "feature", "to", "residual",
	"stream", "café", "naïve", "über", "東京", "数据", "мир", "λόγος", "👍", "don't", "it's",
	"we'll", "42", "3.14", "1999", "(see", "note)", "—", "x", "attention", "layer",
}

func lcg(x uint64) uint64 { return x*6364136223846793005 + 1442695040888963407 }

func corpusDocs(n int) []string {
	docs := make([]string, 0, n)
	for i := range n {
		x := lcg(uint64(i + 1))
		draw := func(m int) int {
			x = lcg(x)
			return int((x >> 33) % uint64(m))
		}
		if i%97 == 0 {
			docs = append(docs, "")
			continue
		}
		if i%131 == 5 {
			docs = append(docs, " \n\t  ")
			continue
		}
		nWords := 1 + draw(5)
		if i%149 == 3 {
			nWords = 60 + draw(40)
		}
		words := make([]string, nWords)
		for k := range words {
			words[k] = corpusWords[draw(len(corpusWords))]
		}
		doc := strings.Join(words, " ")
		if i%211 == 7 {
			doc += bpe.EOTText + corpusWords[draw(len(corpusWords))]
		}
		doc += []string{".", "!", "?", ".\n", "\n\n", ""}[draw(6)]
		docs = append(docs, doc)
	}
	return docs
}

// docsSHA256 is gen_tokrows.py's docs_sha256: each document as a uint64
// little-endian byte length and its UTF-8 bytes.
func docsSHA256(docs []string) string {
	h := sha256.New()
	for _, d := range docs {
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(d))))
		h.Write([]byte(d))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// englishDocs returns deterministic English-like documents of about
// docLen bytes each (OpenWebText's are ~5 KB), totalling about total bytes.
func englishDocs(total, docLen int, seed uint64) []string {
	words := strings.Fields(`the of and to in a is that for it as was with be by on not he I this are or his
		from at which but have an they you were her she there been one all we their has would when if so no
		will more can its time only new some could these two may first then do any like my now over such
		our man me even most made after also did many before must through back years where much your way
		well down should because each just those people how too little state good very make world still
		own see men work long get here between both life being under never day same another know while
		last might us great old year off come since against go came right used take three transformer
		feature residual attention layer token sparse activation gradient café naïve résumé Zürich
		don't it's we've they'll I'm you'd 2024 3.5 100`)
	r := rand.New(rand.NewPCG(seed, 11))
	var docs []string
	for n := 0; n < total; {
		var b strings.Builder
		for target := docLen/2 + r.IntN(docLen); b.Len() < target; {
			b.WriteString(words[r.IntN(len(words))])
			switch r.IntN(30) {
			case 0, 1, 2:
				b.WriteString(". ")
			case 3:
				b.WriteString(", ")
			case 4:
				b.WriteString(".\n\n")
			default:
				b.WriteByte(' ')
			}
		}
		docs = append(docs, b.String())
		n += b.Len()
	}
	return docs
}

var errSource = errors.New("source failed")
