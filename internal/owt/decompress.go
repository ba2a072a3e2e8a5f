package owt

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// zstdMaxWindow caps the zstd window a stream may ask for: 128 MiB covers
// every level up to --ultra -22 (which uses 128 MiB) while refusing a
// crafted header that would make us allocate gigabytes.
const zstdMaxWindow = 128 << 20

// sniffCompression names the compression of a stream from its first bytes,
// with the checks Python's tarfile stream mode ("r|*") makes
// (tarfile._StreamProxy.getcomptype), plus zstd: "gz", "bz2", "xz", "lzma",
// "zst", or "" for none.
func sniffCompression(p []byte) string {
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b, 0x08}):
		return "gz"
	case len(p) >= 10 && bytes.HasPrefix(p, []byte("BZh")) && string(p[4:10]) == "1AY&SY":
		return "bz2"
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return "xz"
	case bytes.HasPrefix(p, []byte{0x5d, 0x00, 0x00, 0x80}):
		return "lzma"
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zst"
	}
	return ""
}

// decompressed wraps r in the decompressor its first bytes call for (or
// none) and returns the reader, a close function for the decompressor's
// resources and the compression's name. The close function does not close
// r.
func decompressed(r io.Reader) (io.Reader, func(), string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(10)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, nil, "", err
	}
	nop := func() {}
	switch kind := sniffCompression(head); kind {
	case "gz":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, kind, err
		}
		return zr, func() { zr.Close() }, kind, nil
	case "bz2":
		return bzip2.NewReader(br), nop, kind, nil
	case "xz":
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, kind, err
		}
		return zr, nop, kind, nil
	case "lzma":
		zr, err := lzma.NewReader(br)
		if err != nil {
			return nil, nil, kind, err
		}
		return zr, nop, kind, nil
	case "zst":
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, nil, kind, err
		}
		return zr, zr.Close, kind, nil
	default:
		return br, nop, "", nil
	}
}

// streamErr words a failure to start decompressing.
func streamErr(name, kind string, err error) error {
	if kind == "" {
		return fmt.Errorf("owt: read %s: %w", name, err)
	}
	return fmt.Errorf("owt: %s: corrupt or truncated %s stream: %w", name, kind, err)
}

// fileStream is what jsonSource and tarSource share: their input's name (for
// messages), its decompressor and, when openFileStream opened it, the file.
type fileStream struct {
	path    string
	f       io.Closer // the file, or nil
	release func()    // the decompressor's resources
}

func (s *fileStream) setFile(f io.Closer) { s.f = f }

// close releases the decompressor, then closes the file if there is one.
func (s *fileStream) close() error {
	s.release()
	if s.f == nil {
		return nil
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("owt: close %s: %w", s.path, err)
	}
	return nil
}

// openFileStream opens path and reads it with newSource; the source owns
// the file from then on and closes it in close.
func openFileStream[S interface {
	docSource
	setFile(io.Closer)
}](path string, maxDoc int, st *Stats, newSource func(name string, r io.Reader, maxDoc int, st *Stats) (S, error)) (docSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("owt: open corpus: %w", err)
	}
	s, err := newSource(path, f, maxDoc, st)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.setFile(f)
	return s, nil
}
