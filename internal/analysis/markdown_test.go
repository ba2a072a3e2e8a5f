package analysis

import (
	"fmt"
	"strings"
	"testing"
)

// markdownTableErrors lists the rows of md's tables (runs of lines
// starting with "|") whose cell count differs from their header's: a
// stray "|" in a cell (say "P(active | f)") makes GitHub's renderer drop
// the whole table. Escaped pipes ("\|") are text, not separators. A
// document without tables is an error too.
func markdownTableErrors(md string) []string {
	var errs []string
	tables, want := 0, -1
	for n, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			want = -1
			continue
		}
		cells := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") - 1
		if want < 0 {
			want, tables = cells, tables+1
		} else if cells != want {
			errs = append(errs, fmt.Sprintf("line %d has %d cells, its table's header %d: %q", n+1, cells, want, line))
		}
	}
	if tables == 0 {
		errs = append(errs, "no table")
	}
	return errs
}

func checkMarkdownTables(t *testing.T, name, md string) {
	t.Helper()
	for _, e := range markdownTableErrors(md) {
		t.Errorf("%s: %s", name, e)
	}
}

func TestMarkdownTables(t *testing.T) {
	ok := mdHeader("a", "P(active | f)") + mdRow("1", "x|y") + "\ntext\n" + mdHeader("b") + mdRow(`|`)
	if errs := markdownTableErrors(ok); errs != nil {
		t.Errorf("escaped tables: %v\n%s", errs, ok)
	}
	bad := "| a | P(active | f) |\n|---|---|\n| 1 | 2 |\n"
	if errs := markdownTableErrors(bad); len(errs) == 0 {
		t.Error("an unescaped pipe in a header passes the check")
	}
	if got := mdRow("P(active | f)"); got != "| P(active \\| f) |\n" {
		t.Errorf("mdRow = %q", got)
	}
}
