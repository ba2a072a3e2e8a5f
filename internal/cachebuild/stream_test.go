package cachebuild

import (
	"io"
	"strings"
	"testing"
)

func counter(t int, total int) func([]int32) error {
	next := 0
	return func(dst []int32) error {
		if next == total {
			return io.EOF
		}
		for i := range dst {
			dst[i] = int32(next*t + i)
		}
		next++
		return nil
	}
}

// Reads go forward, skipping rows in between, and the end of the input
// before the rows asked for is an error that says so.
func TestStreamRows(t *testing.T) {
	s := NewStreamRows(counter(3, 5), 3, 4)
	dst := make([]int32, 6)
	if err := s.Read(dst, 1, 2); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 3 || dst[5] != 8 {
		t.Errorf("rows 1..2 = %v", dst)
	}
	if err := s.Read(dst[:3], 3, 1); err != nil || dst[0] != 9 {
		t.Errorf("row 3 = %v, %v", dst[:3], err)
	}
	short := NewStreamRows(counter(3, 2), 3, 4)
	err := short.Read(make([]int32, 9), 0, 3)
	if err == nil || !strings.Contains(err.Error(), "ended after 2 rows") {
		t.Errorf("short input error = %v", err)
	}
}
