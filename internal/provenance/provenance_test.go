package provenance

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHashAndListing(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	os.WriteFile(a, []byte("abc"), 0o644)
	p, err := Hash(a)
	// sha256("abc"), a standard test vector (FIPS 180-2).
	if err != nil || p.SHA256 != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" || p.Size != 3 {
		t.Fatalf("Hash = %+v, %v", p, err)
	}
	b := filepath.Join(dir, "b.txt")
	os.WriteFile(b, []byte("de"), 0o644)
	l1, err := Listing(dir, []string{a, b})
	if err != nil || l1.Size != 5 {
		t.Fatalf("Listing = %+v, %v", l1, err)
	}
	l2, _ := Listing(dir, []string{b, a})
	os.WriteFile(b, []byte("def"), 0o644)
	l3, _ := Listing(dir, []string{a, b})
	if Same(l1, l2) || Same(l1, l3) {
		t.Error("Listing does not tell reordered or resized files apart")
	}
	if l4, _ := Listing(dir, []string{a, b}); !Same(l3, l4) {
		t.Error("Listing is not deterministic")
	}
}
