package owt

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// shardDir writes the shards of an hf_stream case (shard k's j-th document
// is the decimal string of k·1e6 + j) as files of a format, named so that
// name order is shard order.
func shardDir(t *testing.T, format Format, sizes []int) string {
	t.Helper()
	dir := t.TempDir()
	for k, n := range sizes {
		docs := make([]string, n)
		for j := range docs {
			docs[j] = strconv.Itoa(k*1_000_000 + j)
		}
		name := fmt.Sprintf("shard-%05d", k)
		switch format {
		case FormatJSONL:
			writeFile(t, dir, name+".jsonl", jsonLines(t, docs))
		case FormatParquet:
			rows := make([]pqRow, n)
			for j, d := range docs {
				rows[j] = pqRow{Text: d}
			}
			writeParquet(t, filepath.Join(dir, name+".parquet"), rows)
		case FormatTar:
			// Split each shard over two .xz members.
			writeFile(t, dir, name+".tar", subsetTar(t, [][]string{docs[:n/2], docs[n/2:]}))
		}
	}
	return dir
}

func atoiDocs(t *testing.T, docs []string) []int64 {
	t.Helper()
	out := make([]int64, len(docs))
	for i, d := range docs {
		v, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = v
	}
	return out
}

// TestShuffledStreamAgainstPython runs the whole Reader (files → shard
// permutation → buffer shuffle) against the document order that
// testdata/gen/gen_owt_rng.py computed with numpy and a copy of the
// datasets 2.20 shuffle.
func TestShuffledStreamAgainstPython(t *testing.T) {
	v := loadRNGVectors(t)
	for _, c := range v.HFStream {
		formats := []Format{FormatJSONL}
		if c.Name == "21 shards buffer 1000" {
			formats = append(formats, FormatParquet, FormatTar)
		}
		for _, f := range formats {
			t.Run(c.Name+"/"+string(f), func(t *testing.T) {
				dir := shardDir(t, f, c.ShardSizes)
				r, err := Open(dir, Options{ShuffleBuffer: c.Buffer, Seed: c.Seed})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				if len(r.Files()) != len(c.ShardSizes) || r.Format() != f {
					t.Fatalf("%d files of %s, want %d of %s", len(r.Files()), r.Format(), len(c.ShardSizes), f)
				}
				checkStream(t, c, atoiDocs(t, readAll(t, r)))
				st := r.Stats()
				if st.Read != int64(c.Count) || st.Documents != int64(c.Count) || st.Files != len(c.ShardSizes) {
					t.Errorf("stats = %+v", st)
				}
			})
		}
	}
}

func TestShuffleOffAndShardsOnly(t *testing.T) {
	sizes := []int{3, 2, 4}
	dir := shardDir(t, FormatJSONL, sizes)
	var inOrder []int64
	for k, n := range sizes {
		for j := range n {
			inOrder = append(inOrder, int64(k*1_000_000+j))
		}
	}
	docs, _ := openAll(t, dir, Options{ShuffleBuffer: 0, Seed: 42})
	if got := atoiDocs(t, docs); !reflect.DeepEqual(got, inOrder) {
		t.Errorf("ShuffleBuffer 0: %v, want %v", got, inOrder)
	}
	perm := ShardOrder(3, 42)
	var shardsOnly []int64
	for _, k := range perm {
		for j := range sizes[k] {
			shardsOnly = append(shardsOnly, int64(k*1_000_000+j))
		}
	}
	docs, _ = openAll(t, dir, Options{ShuffleBuffer: 1, Seed: 42})
	if got := atoiDocs(t, docs); !reflect.DeepEqual(got, shardsOnly) {
		t.Errorf("ShuffleBuffer 1: %v, want %v (shard order %v)", got, shardsOnly, perm)
	}
}

func TestStatsWhileBuffering(t *testing.T) {
	p := writeFile(t, t.TempDir(), "a.jsonl", jsonLines(t, []string{"a", "b", "c", "d", "e"}))
	r, err := Open(p, Options{ShuffleBuffer: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Read != 4 || st.Documents != 1 || st.Bytes != 1 {
		t.Errorf("after one document: %+v, want 4 read, 1 returned", st)
	}
	st := r.Stats()
	st.Skipped["mutated"] = 1
	if _, ok := r.Stats().Skipped["mutated"]; ok {
		t.Error("Stats shares its Skipped map with the reader")
	}
}

func TestFormatDetection(t *testing.T) {
	dir := t.TempDir()
	jsonl := jsonLines(t, []string{"x"})
	tarData := subsetTar(t, [][]string{{"x"}})
	pq := filepath.Join(dir, "data.parquet")
	writeParquet(t, pq, []pqRow{{Text: "x"}})
	pqBytes, err := os.ReadFile(pq)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want Format
	}{
		{"a.jsonl", jsonl, FormatJSONL},
		{"a.JSONL.GZ", compress(t, "gz", jsonl), FormatJSONL},
		{"a.json.zst", compress(t, "zst", jsonl), FormatJSONL},
		{"a.ndjson.xz", compress(t, "xz", jsonl), FormatJSONL},
		{"urlsf_subset00.tar", tarData, FormatTar},
		{"openwebtext.tar.xz", compress(t, "xz", tarData), FormatTar},
		{"openwebtext.tgz", compress(t, "gz", tarData), FormatTar},
		{"doc.txt", []byte("x"), FormatTxt},
		{"train-00000-of-00080.parquet", pqBytes, FormatParquet},
		{"sniffed-parquet", pqBytes, FormatParquet},
		{"sniffed-tar", tarData, FormatTar},
		{"sniffed-json", append([]byte("\n  "), jsonl...), FormatJSONL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), tc.name, tc.data)
			r, err := Open(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Format() != tc.want {
				t.Errorf("Format() = %s, want %s", r.Format(), tc.want)
			}
			if docs := readAll(t, r); !reflect.DeepEqual(docs, []string{"x"}) {
				t.Errorf("documents = %q", docs)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	mixed := t.TempDir()
	writeFile(t, mixed, "a.jsonl", jsonLines(t, []string{"j"}))
	writeFile(t, mixed, "b.txt", []byte("t"))
	writeFile(t, mixed, "c.txt", []byte("t2"))
	empty := t.TempDir()
	writeFile(t, empty, ".hidden.jsonl", []byte(`{"text":"x"}`))
	writeFile(t, empty, "README.md", []byte("x"))
	if err := os.Mkdir(filepath.Join(empty, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	unknown := writeFile(t, t.TempDir(), "blob.dat", []byte("\x00\x01 binary"))
	bin := writeFile(t, t.TempDir(), "train.bin", []byte{1, 0})
	tests := []struct {
		name  string
		path  string
		o     Options
		frags []string
	}{
		{"mixed directory", mixed, Options{}, []string{"mixes corpus formats", "1 jsonl", "2 txt"}},
		{"no corpus files", empty, Options{}, []string{"no corpus files", "1 hidden file", "1 file of another format", "1 directory entry not a file"}},
		{"unknown file", unknown, Options{}, []string{"blob.dat", "cannot tell the corpus format"}},
		{"token file", bin, Options{}, []string{"train.bin", "nanoGPT token file", "--tokens"}},
		{"missing", filepath.Join(empty, "nope"), Options{}, []string{"nope", "no such file"}},
		{"negative buffer", mixed, Options{ShuffleBuffer: -1}, []string{"shuffle buffer -1"}},
		{"negative max", mixed, Options{MaxDocBytes: -1}, []string{"max document size"}},
		{"unknown format", mixed, Options{Format: "csv"}, []string{`unknown format "csv"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path, tc.o)
			wantErr(t, err, tc.frags...)
		})
	}
	// A forced format picks its files out of a mixed directory.
	docs, st := openAll(t, mixed, Options{Format: FormatTxt})
	if !reflect.DeepEqual(docs, []string{"t", "t2"}) || st.Skipped["file of another format"] != 1 {
		t.Errorf("forced txt: %q %+v", docs, st)
	}
}

func TestTxtDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.txt", []byte("second\n\n\n\nparagraph\n"))
	writeFile(t, dir, "a.txt", []byte("\x1c first \u3000"))
	writeFile(t, dir, "c.txt", []byte("\n\n\n"))
	writeFile(t, dir, "d.txt", []byte("bad \xc3 byte"))
	writeFile(t, dir, "__MACOSX.txt", []byte("hidden"))
	docs, st := openAll(t, dir, Options{})
	if want := []string{"first", "second\n\nparagraph", "", "bad \uFFFD byte"}; !reflect.DeepEqual(docs, want) {
		t.Errorf("documents = %q, want %q", docs, want)
	}
	if st.Files != 4 || st.Empty != 1 || st.Replaced != 1 || st.Skipped["hidden file"] != 1 {
		t.Errorf("stats = %+v", st)
	}
	big := writeFile(t, t.TempDir(), "big.txt", make([]byte, 2000))
	r, err := Open(big, Options{MaxDocBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	wantErr(t, err, "big.txt", "1000-byte document limit")
}

func TestClose(t *testing.T) {
	p := writeFile(t, t.TempDir(), "a.jsonl", jsonLines(t, []string{"a", "b"}))
	r, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	wantErr(t, err, "closed")
}

// TestMemoryBounded reads a 30 MB JSON-lines file through a 1000-document
// shuffle and checks that the live heap stays far below the file size.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 30 MB file")
	}
	const n = 100_000
	var buf []byte
	doc := strings.Repeat("x", 280)
	for i := range n {
		buf = fmt.Appendf(buf, "{\"text\":\"%d %s\"}\n", i, doc)
	}
	p := writeFile(t, t.TempDir(), "big.jsonl", buf)
	size := len(buf)
	buf = nil
	r, err := Open(p, Options{ShuffleBuffer: 1000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var peak uint64
	for i := 0; ; i++ {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%20_000 == 10_000 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	// The buffer holds ~0.3 MB of documents, the readers ~0.3 MB of buffers.
	if peak > 8<<20 {
		t.Errorf("live heap reached %d bytes reading a %d-byte file", peak, size)
	}
	t.Logf("peak live heap %d bytes for a %d-byte file", peak, size)
}
