package owt

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// benchDocs are documents with OpenWebText's look: words, punctuation,
// quotes and paragraph breaks (so JSON has escapes to undo), lengths
// spread over 200–2200 bytes.
func benchDocs(n int) []string {
	words := strings.Fields(`the of and to a in that is was he for it with as his on be at by I this had not are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people Mr how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three "quoted" it's — café naïve 東京 😀`)
	rng := rand.New(rand.NewPCG(1, 2))
	docs := make([]string, n)
	var sb strings.Builder
	for i := range docs {
		sb.Reset()
		target := 200 + rng.IntN(2000)
		for sb.Len() < target {
			sb.WriteString(words[rng.IntN(len(words))])
			switch rng.IntN(40) {
			case 0:
				sb.WriteString(".\n\n")
			case 1, 2:
				sb.WriteString(", ")
			default:
				sb.WriteByte(' ')
			}
		}
		docs[i] = sb.String()
	}
	return docs
}

var benchDocsCache []string

// benchFile writes the benchmark corpus, 40,000 documents (~48 MB of
// text), in the layout a file name implies, and returns its path, the
// document count and the text bytes.
func benchFile(b *testing.B, name string) (string, int, int64) {
	b.Helper()
	if benchDocsCache == nil {
		benchDocsCache = benchDocs(40_000)
	}
	docs := benchDocsCache
	dir := b.TempDir()
	path := filepath.Join(dir, name)
	switch name {
	case "docs.jsonl":
		writeFile(b, dir, name, jsonLines(b, docs))
	case "docs.jsonl.zst":
		writeFile(b, dir, name, compress(b, "zst", jsonLines(b, docs)))
	case "docs.jsonl.gz":
		writeFile(b, dir, name, compress(b, "gz", jsonLines(b, docs)))
	case "docs.parquet":
		rows := make([]pqRow, len(docs))
		for i, s := range docs {
			rows[i] = pqRow{Text: s}
		}
		writeParquet(b, path, rows, parquet.MaxRowsPerRowGroup(10_000), parquet.PageBufferSize(1<<20), parquet.Compression(&parquet.Snappy))
	case "urlsf_subset00.tar":
		// An OWT-style subset archive: 40 .xz members of 1000 documents.
		var groups [][]string
		for k := 0; k < len(docs); k += 1000 {
			groups = append(groups, docs[k:k+1000])
		}
		writeFile(b, dir, name, subsetTar(b, groups))
	default:
		b.Fatalf("no benchmark corpus %s", name)
	}
	var n int64
	for _, s := range docs {
		n += int64(len(s))
	}
	return path, len(docs), n
}

func benchRead(b *testing.B, name string, o Options) {
	path, ndocs, nbytes := benchFile(b, name)
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(path, o)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		r.Close()
		if n != ndocs {
			b.Fatalf("%d documents, want %d", n, ndocs)
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(ndocs)/sec, "docs/s")
	b.ReportMetric(float64(nbytes)/1e6/sec, "MB/s")
}

// The baseline is plain JSON lines without shuffling; the others add the
// 10,000-document shuffle and decompression or another layout.
func BenchmarkReadJSONL(b *testing.B) { benchRead(b, "docs.jsonl", Options{}) }
func BenchmarkReadJSONLShuffled(b *testing.B) {
	benchRead(b, "docs.jsonl", Options{ShuffleBuffer: DefaultShuffleBuffer, Seed: DefaultSeed})
}
func BenchmarkReadJSONLZstdShuffled(b *testing.B) {
	benchRead(b, "docs.jsonl.zst", Options{ShuffleBuffer: DefaultShuffleBuffer, Seed: DefaultSeed})
}
func BenchmarkReadJSONLGzip(b *testing.B) { benchRead(b, "docs.jsonl.gz", Options{}) }
func BenchmarkReadParquetShuffled(b *testing.B) {
	benchRead(b, "docs.parquet", Options{ShuffleBuffer: DefaultShuffleBuffer, Seed: DefaultSeed})
}
func BenchmarkReadTarXZShuffled(b *testing.B) {
	benchRead(b, "urlsf_subset00.tar", Options{ShuffleBuffer: DefaultShuffleBuffer, Seed: DefaultSeed})
}

// BenchmarkShuffleOnly is the buffer shuffle alone over 1e6 integer items.
func BenchmarkShuffleOnly(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		s := newBufferShuffle[int](NewGenerator(42), DefaultShuffleBuffer)
		for i := range n {
			s.Add(i)
		}
		s.Finish()
	}
	b.ReportMetric(n/(b.Elapsed().Seconds()/float64(b.N)), "items/s")
}

func BenchmarkBinRead(b *testing.B) {
	for _, drop := range []bool{false, true} {
		b.Run(fmt.Sprintf("drop=%v", drop), func(b *testing.B) {
			ids := fakeStream(1, 4<<20)
			br, err := OpenBin(writeBin(b, b.TempDir(), ids), BinOptions{DropEOT: drop})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			const batch = 512
			dst := make([]int32, batch*br.RowLen())
			rows := 0
			b.ReportAllocs()
			for b.Loop() {
				for first := 0; first+batch <= br.NumRows(); first += batch {
					if err := br.Read(dst, first, batch); err != nil {
						b.Fatal(err)
					}
					rows += batch
				}
			}
			b.ReportMetric(float64(rows*br.RowLen())/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
