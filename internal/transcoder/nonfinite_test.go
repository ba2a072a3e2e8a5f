package transcoder

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dtype"
)

// patchTensor writes a copy of the transcoder file src into a temporary
// directory with element k of the tensor whose float32 values are vals set
// to v, and returns its path. A zip container (torch.save's) is rewritten
// with the record patched, so that its CRC stays right; a legacy file is
// patched in place.
func patchTensor(t *testing.T, src string, vals []float32, k int, v float32) string {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(dtype.Bytes(vals))
	patch := func(b []byte) bool {
		at := bytes.Index(b, want)
		if at < 0 {
			return false
		}
		binary.LittleEndian.PutUint32(b[at+4*k:], math.Float32bits(v))
		return true
	}
	patched := false
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil { // the legacy container
		patched = patch(raw)
	} else {
		var out bytes.Buffer
		zw := zip.NewWriter(&out)
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !patched && strings.Contains(f.Name, "/data/") {
				patched = patch(b)
			}
			w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(b)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		raw = out.Bytes()
	}
	if !patched {
		t.Fatalf("%s: the tensor's bytes are not found", src)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A NaN or Inf in a transcoder's weights (issue 18, row 5: b_dec[0] = NaN
// read as "never fires", l0 0, exit 0) is refused at load, naming the file,
// the tensor and the index; in torch.save's zip container and the legacy
// one alike.
func TestLoadRefusesNonFinite(t *testing.T) {
	for _, src := range []string{
		filepath.Join(tinyDir, FileName(1, 64)),
		filepath.Join(tinyDir, "legacy", FileName(1, 64)),
	} {
		orig, err := Load(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			tensor string
			vals   []float32
			k      int
			v      float32
			index  string
		}{
			{"b_dec", orig.BDec, 0, float32(math.NaN()), "NaN at [0]"},
			{"W_dec", orig.WDec, 3*16 + 2, float32(math.Inf(1)), "+Inf at [3, 2]"},
			{"W_enc", orig.WEnc, 64 + 9, float32(math.Inf(-1)), "-Inf at [1, 9]"},
		} {
			path := patchTensor(t, src, tc.vals, tc.k, tc.v)
			_, err := Load(path)
			if err == nil {
				t.Errorf("%s: Load accepted %s with %s", src, tc.tensor, tc.index)
				continue
			}
			for _, s := range []string{path, tc.tensor + " holds " + tc.index} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Load error %q does not mention %q", err, s)
				}
			}
		}
	}
}
