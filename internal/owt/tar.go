package owt

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// tarSource walks an OpenWebText subset archive as the Hugging Face loading
// script does in streaming mode: the outer tar's members in tar
// order, keeping regular files whose names end in ".xz"; each of those is
// opened as a (compressed) tar and its regular ".txt" members are the
// documents, in tar order. At both levels members whose base name starts
// with "." or "__" are skipped (datasets' _iter_tar). Every skip is counted.
type tarSource struct {
	fileStream
	outerR *tailReader // the decompressed archive, as the tar reader sees it
	outer  *tar.Reader
	maxDoc int // bytes in one document
	stats  *Stats

	member       string      // the current .xz member
	innerR       *tailReader // its decompressed tar
	inner        *tar.Reader // nil between .xz members
	innerRelease func()
	buf          []byte
}

// newTarSource reads an archive from r; name is for messages.
func newTarSource(name string, r io.Reader, maxDoc int, st *Stats) (*tarSource, error) {
	r, release, kind, err := decompressed(r)
	if err != nil {
		return nil, streamErr(name, kind, err)
	}
	tr := &tailReader{r: r}
	return &tarSource{fileStream: fileStream{path: name, release: release}, outerR: tr, outer: tar.NewReader(tr), maxDoc: maxDoc, stats: st}, nil
}

func (s *tarSource) close() error {
	s.closeInner()
	return s.fileStream.close()
}

func (s *tarSource) closeInner() {
	if s.innerRelease != nil {
		s.innerRelease()
	}
	s.inner, s.innerR, s.innerRelease = nil, nil, nil
}

// finish checks, once a tar reader reports the end, that the archive
// really ended with its end-of-archive marker (Go's reader, like Python's
// tarfile, also ends quietly when the data simply stop at a member
// boundary), and reads the compressed stream to its end so that its
// checksums are verified. The rest is padding, at most one tar record.
func (s *tarSource) finish(tr *tailReader, member string) error {
	if !tr.endMarker() {
		return s.wrap(member, errors.New("truncated archive: no end-of-archive marker"))
	}
	if _, err := io.Copy(io.Discard, tr.r); err != nil {
		return s.wrap(member, err)
	}
	return nil
}

// tailReader remembers the last 1024 bytes read through it: a tar's
// end-of-archive marker is two zero blocks.
type tailReader struct {
	r    io.Reader
	last [1024]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	b := p[:n]
	if len(b) >= len(t.last) {
		copy(t.last[:], b[len(b)-len(t.last):])
	} else {
		copy(t.last[:], t.last[len(b):])
		copy(t.last[len(t.last)-len(b):], b)
	}
	t.n += int64(n)
	return n, err
}

func (t *tailReader) endMarker() bool {
	if t.n < int64(len(t.last)) {
		return false
	}
	for _, c := range t.last {
		if c != 0 {
			return false
		}
	}
	return true
}

// keep applies _iter_tar's filters, counting what it drops.
func (s *tarSource) keep(h *tar.Header) bool {
	switch {
	case h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeCont && h.Typeflag != tar.TypeGNUSparse:
		// tarfile's isreg(): REGTYPE, AREGTYPE (which Go reports as TypeReg),
		// CONTTYPE and GNUTYPE_SPARSE.
		s.stats.Skipped["tar member not a regular file"]++
		return false
	case hidden(path.Base(h.Name)):
		s.stats.Skipped["hidden tar member"]++
		return false
	}
	return true
}

func (s *tarSource) next() (string, error) {
	for {
		if s.inner == nil {
			if err := s.nextXZ(); err != nil {
				return "", err
			}
			continue
		}
		h, err := s.inner.Next()
		if err == io.EOF {
			if err := s.finish(s.innerR, s.member); err != nil {
				return "", err
			}
			s.closeInner()
			continue
		}
		if err != nil {
			return "", s.wrap(s.member, err)
		}
		if !s.keep(h) {
			continue
		}
		if !strings.HasSuffix(h.Name, ".txt") {
			s.stats.Skipped["tar member not .txt"]++
			continue
		}
		if h.Size > int64(s.maxDoc) {
			return "", fmt.Errorf("owt: %s: %s: %s is %d bytes, more than the %d-byte document limit", s.path, s.member, h.Name, h.Size, s.maxDoc)
		}
		s.buf, err = readAllInto(s.buf[:0], s.inner, h.Size)
		if err != nil {
			return "", s.wrap(s.member+": "+h.Name, err)
		}
		text, bad := normalizeDoc(s.buf)
		if bad > 0 {
			s.stats.Replaced++
		}
		return text, nil
	}
}

// nextXZ advances the outer tar to the next .xz member and opens it; io.EOF
// at the end of the archive.
func (s *tarSource) nextXZ() error {
	for {
		h, err := s.outer.Next()
		if err == io.EOF {
			if err := s.finish(s.outerR, ""); err != nil {
				return err
			}
			return io.EOF
		}
		if err != nil {
			return s.wrap("", err)
		}
		if !s.keep(h) {
			continue
		}
		if !strings.HasSuffix(h.Name, ".xz") {
			s.stats.Skipped["tar member not .xz"]++
			continue
		}
		// Python's tarfile "r|*" sniffs the compression rather than trusting
		// the name; so do we.
		r, release, kind, err := decompressed(s.outer)
		if err != nil {
			if kind != "" {
				err = fmt.Errorf("corrupt or truncated %s stream: %w", kind, err)
			}
			return s.wrap(h.Name, err)
		}
		s.member, s.innerR, s.innerRelease = h.Name, &tailReader{r: r}, release
		s.inner = tar.NewReader(s.innerR)
		return nil
	}
}

func (s *tarSource) wrap(member string, err error) error {
	where := s.path
	if member != "" {
		where += ": " + member
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("owt: %s: truncated archive or compressed stream: %w", where, err)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("owt: %s: corrupt tar (or not a tar): %w", where, err)
	}
	return fmt.Errorf("owt: %s: %w", where, err)
}

// readAllInto reads exactly n bytes of r into dst[:0], growing it.
func readAllInto(dst []byte, r io.Reader, n int64) ([]byte, error) {
	if int64(cap(dst)) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	if _, err := io.ReadFull(r, dst); err != nil {
		return nil, noEOF(err)
	}
	return dst, nil
}
