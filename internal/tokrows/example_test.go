package tokrows_test

import (
	"fmt"
	"io"
	"log"

	"github.com/ctxdep/ctxdep/internal/bpe"
	"github.com/ctxdep/ctxdep/internal/tokrows"
)

// Cut three documents into rows of 8 tokens (BOS + 7), as
// tokenize_and_concatenate(max_length=8) would. The batch text is only 86
// code points, so its 20 chunks are 5 code points each: words are cut, and
// so are both separators, which survive as text (TL issue #1133); with real
// batches of 1000 documents the chunks are long and this is rare.
func Example() {
	tok, err := bpe.GPT2()
	if err != nil {
		log.Fatal(err)
	}
	docs := []string{"Hello world!", "The quick brown fox jumps over the lazy dog.", "Bye."}
	i := 0
	next := func() (string, error) {
		if i == len(docs) {
			return "", io.EOF
		}
		i++
		return docs[i-1], nil
	}
	s := tokrows.New(tok, next, 8)
	defer s.Close()
	row := make([]int32, 8)
	for {
		if err := s.Next(row); err == io.EOF {
			break
		} else if err != nil {
			log.Fatal(err)
		}
		text, _ := tok.Decode(row[1:])
		fmt.Printf("%v %q\n", row, text)
	}
	fmt.Printf("%+v\n", s.Stats())
	// Output:
	// [50256 15496 476 75 67 0 27 91] "Hello world!<|"
	// [50256 68 358 11205 2302 91 29 464] "endoftext|>The"
	// [50256 10662 84 624 220 33282 21831 220] " quick brown fox "
	// [50256 73 8142 625 262 220 75 12582] "jumps over the lazy"
	// [50256 220 9703 29847 91 31110 69 5239] " dog.<|endoftext"
	// {Documents:3 Batches:1 Tokens:40 Rows:5 Discarded:5 EOTRemoved:0}
}
