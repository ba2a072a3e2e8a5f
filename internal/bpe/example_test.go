package bpe_test

import (
	"fmt"
	"log"

	"github.com/ctxdep/ctxdep/internal/bpe"
)

// Encode a prompt as TransformerLens's tokenizer does (to_tokens would
// prepend bpe.EOT as BOS), then decode a cut multi-byte character.
func Example() {
	tok, err := bpe.GPT2()
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("Hello world!<|endoftext|>👍")
	fmt.Println(ids)
	text, err := tok.Decode(ids[:len(ids)-1]) // "👍" is split over two tokens
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+q\n", text)
	// Output:
	// [15496 995 0 50256 41840 235]
	// "Hello world!<|endoftext|>\ufffd"
}
