package owt

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestTarFixtureAgainstPython reads testdata/urlsf_subset00.tar, written
// by testdata/gen/gen_owt_text.py, whose urlsf_subset00.json holds what a
// copy of the HF loading script's _generate_examples and datasets 2.20's
// _iter_tar yield from it (tar order, skip rules, text clean-up).
func TestTarFixtureAgainstPython(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "urlsf_subset00.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Examples []struct{ Key, Text string }
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	var wantDocs []string
	for _, e := range want.Examples {
		wantDocs = append(wantDocs, e.Text)
	}
	docs, st := openAll(t, filepath.Join("testdata", "urlsf_subset00.tar"), Options{})
	if !reflect.DeepEqual(docs, wantDocs) {
		t.Errorf("documents =\n%q\nwant\n%q", docs, wantDocs)
	}
	wantSkipped := map[string]int64{
		"tar member not a regular file": 4, // outer dir and hardlink; inner dir and symlink
		"hidden tar member":             3, // ._urlsf…xz, .hidden.txt, __init__.txt
		"tar member not .xz":            1, // README
		"tar member not .txt":           1, // notes.md
	}
	if !reflect.DeepEqual(st.Skipped, wantSkipped) {
		t.Errorf("skipped = %v, want %v", st.Skipped, wantSkipped)
	}
	if st.Empty != 2 || st.Replaced != 1 || st.Documents != int64(len(wantDocs)) || st.Files != 1 {
		t.Errorf("stats = %+v, want 2 empty, 1 replaced, %d documents, 1 file", st, len(wantDocs))
	}
}

func TestTarSynthetic(t *testing.T) {
	dir := t.TempDir()
	groups := [][]string{{"one", "two\n\n\n\nparas", "  three  "}, {}, {"four"}}
	writeFile(t, dir, "urlsf_subset00.tar", subsetTar(t, groups))
	writeFile(t, dir, "urlsf_subset01.tar", subsetTar(t, [][]string{{"five", "six"}}))
	writeFile(t, dir, "README.md", []byte("not a corpus file"))
	writeFile(t, dir, ".gitattributes", []byte("*.tar filter=lfs"))
	docs, st := openAll(t, dir, Options{})
	want := []string{"one", "two\n\nparas", "three", "four", "five", "six"}
	if !reflect.DeepEqual(docs, want) {
		t.Errorf("documents = %q, want %q", docs, want)
	}
	if st.Files != 2 || st.Skipped["hidden file"] != 1 || st.Skipped["file of another format"] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestTarCompressedOuter(t *testing.T) {
	// Python's tarfile "r|*" opens a compressed outer archive too.
	for _, kind := range []string{"gz", "xz", "zst"} {
		t.Run(kind, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "openwebtext.tar."+kind, compress(t, kind, subsetTar(t, [][]string{{"a", "b"}})))
			docs, _ := openAll(t, p, Options{})
			if !reflect.DeepEqual(docs, []string{"a", "b"}) {
				t.Errorf("documents = %q", docs)
			}
		})
	}
}

func TestTarErrors(t *testing.T) {
	good := subsetTar(t, [][]string{{strings.Repeat("document text ", 200), "b"}, {"c"}})
	inner := buildTar(t, []tarMember{{name: "x/a.txt", data: []byte(strings.Repeat("z", 5000))}})
	xzInner := compress(t, "xz", inner)
	corruptXZ := append([]byte{}, xzInner...)
	corruptXZ[len(corruptXZ)/2] ^= 0xff
	tests := []struct {
		name  string
		data  []byte
		max   int
		frags []string
	}{
		{"truncated outer tar", good[:len(good)/2], 0, []string{"urlsf_subset00.tar", "truncated"}},
		{"truncated header", good[:700], 0, []string{"urlsf_subset00.tar"}},
		{"corrupt xz member", buildTar(t, []tarMember{{name: "m.xz", data: corruptXZ}}), 0, []string{"urlsf_subset00.tar: m.xz"}},
		{"truncated xz member", buildTar(t, []tarMember{{name: "m.xz", data: xzInner[:len(xzInner)-30]}}), 0, []string{"urlsf_subset00.tar: m.xz"}},
		{"xz member not a tar", buildTar(t, []tarMember{{name: "m.xz", data: compress(t, "xz", []byte(strings.Repeat("not a tar ", 100)))}}), 0, []string{"m.xz", "not a tar"}},
		{"document over the limit", buildTar(t, []tarMember{{name: "m.xz", data: xzInner}}), 1000, []string{"m.xz", "x/a.txt", "5000 bytes", "limit"}},
		{"no documents", buildTar(t, []tarMember{{name: "README", data: []byte("x")}, {name: "d/", typ: tar.TypeDir}}), 0, []string{"no documents", "1 tar member not .xz"}},
		{"empty file", nil, 0, []string{"no end-of-archive marker"}},
		{"ends at a member boundary", good[:len(good)-1024], 0, []string{"urlsf_subset00.tar: truncated", "no end-of-archive marker"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "urlsf_subset00.tar", tc.data)
			r, err := Open(p, Options{MaxDocBytes: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = readUntilError(r)
			wantErr(t, err, tc.frags...)
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("second Next error = %v, want the sticky %v", err2, err)
			}
		})
	}
}
