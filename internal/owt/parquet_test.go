package owt

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/parquet-go/parquet-go"
)

type pqRow struct {
	Text string `parquet:"text"`
	URL  string `parquet:"url"`
}

type pqOptionalRow struct {
	URL  string  `parquet:"url"`
	Text *string `parquet:"text,optional"`
}

// writeParquet writes rows with small row groups and pages so that the
// reader crosses both boundaries.
func writeParquet[T any](t testing.TB, path string, rows []T, opts ...parquet.WriterOption) {
	t.Helper()
	var buf bytes.Buffer
	opts = append([]parquet.WriterOption{parquet.MaxRowsPerRowGroup(7), parquet.PageBufferSize(256)}, opts...)
	w := parquet.NewGenericWriter[T](&buf, opts...)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pqDocs(n int, prefix string) []string {
	docs := make([]string, n)
	for i := range docs {
		docs[i] = fmt.Sprintf("%s document %d: %s", prefix, i, bytes.Repeat([]byte{'a' + byte(i%26)}, i*7))
	}
	docs[3] = ""
	return docs
}

func TestParquet(t *testing.T) {
	docs := pqDocs(50, "pq")
	rows := make([]pqRow, len(docs))
	for i, d := range docs {
		rows[i] = pqRow{Text: d, URL: fmt.Sprint("u", i)}
	}
	for _, tc := range []struct {
		name  string
		codec parquet.WriterOption
	}{
		{"uncompressed", parquet.Compression(&parquet.Uncompressed)},
		{"snappy", parquet.Compression(&parquet.Snappy)},
		{"zstd", parquet.Compression(&parquet.Zstd)},
		{"page v1", parquet.DataPageVersion(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "train-00000-of-00001.parquet")
			writeParquet(t, p, rows, tc.codec)
			got, st := openAll(t, p, Options{})
			if !reflect.DeepEqual(got, docs) {
				t.Errorf("documents = %q…, want %q…", got[:min(4, len(got))], docs[:4])
			}
			if st.Empty != 1 || st.Documents != 50 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestParquetOptionalText(t *testing.T) {
	a, b := "alpha", "beta\xff" // invalid UTF-8 in a parquet string
	rows := []pqOptionalRow{{URL: "1", Text: &a}, {URL: "2"}, {URL: "3", Text: &b}}
	p := filepath.Join(t.TempDir(), "x.parquet")
	writeParquet(t, p, rows)
	got, st := openAll(t, p, Options{})
	if want := []string{"alpha", "beta\uFFFD"}; !reflect.DeepEqual(got, want) {
		t.Errorf("documents = %q, want %q", got, want)
	}
	if st.Skipped["null text"] != 1 || st.Replaced != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestParquetErrors(t *testing.T) {
	dir := t.TempDir()
	noText := filepath.Join(dir, "notext.parquet")
	writeParquet(t, noText, []struct {
		Body string `parquet:"body"`
		URL  string `parquet:"url"`
	}{{"x", "y"}})
	intText := filepath.Join(dir, "inttext.parquet")
	writeParquet(t, intText, []struct {
		Text int64 `parquet:"text"`
	}{{1}})
	listText := filepath.Join(dir, "listtext.parquet")
	writeParquet(t, listText, []struct {
		Text []string `parquet:"text"`
	}{{[]string{"a"}}})
	good := filepath.Join(dir, "good.parquet")
	writeParquet(t, good, []pqRow{{Text: "a"}, {Text: "b"}})
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := writeFile(t, dir, "truncated.parquet", data[:len(data)/2])
	notParquet := writeFile(t, dir, "text.parquet", []byte("just text, not parquet at all"))
	// Corrupt the first page header, then a page's data, keeping the
	// footer: reading must fail (or, for data, at worst yield garbage
	// text), never panic.
	bad := bytes.Clone(data)
	for i := 4; i < 12; i++ {
		bad[i] ^= 0xa5
	}
	corrupt := writeFile(t, dir, "corrupt.parquet", bad)
	empty := filepath.Join(dir, "empty.parquet")
	writeParquet(t, empty, []pqRow{})

	nested := filepath.Join(dir, "nested.parquet")
	writeParquet(t, nested, []struct {
		Text struct {
			Body string `parquet:"body"`
		} `parquet:"text"`
	}{{}})

	tests := []struct {
		path  string
		frags []string
	}{
		{nested, []string{"nested.parquet", "group"}},
		{noText, []string{"notext.parquet", `no "text" column`, `"body"`}},
		{intText, []string{"inttext.parquet", `column "text" is`}},
		{listText, []string{"listtext.parquet", "repeated"}},
		{truncated, []string{"truncated.parquet", "not a readable parquet file"}},
		{notParquet, []string{"text.parquet", "not a readable parquet file"}},
		{corrupt, []string{"corrupt.parquet"}},
		{empty, []string{"empty.parquet: no documents"}},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			r, err := Open(tc.path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = readUntilError(r)
			wantErr(t, err, tc.frags...)
		})
	}
}
