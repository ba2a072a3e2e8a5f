package midcoder

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
)

// historyHeader is the first row of fit's history.csv.
var historyHeader = []string{"epoch", "loss", "loss_norm", "lr"}

// WriteHistory writes fit's history.csv: the header, then one row per
// epoch with the floats in their shortest exact form.
func WriteHistory(path string, h []Record) error {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	cw.Write(historyHeader)
	for _, r := range h {
		cw.Write([]string{strconv.Itoa(r.Epoch), strconv.FormatFloat(r.Loss, 'g', -1, 64), strconv.FormatFloat(r.LossNorm, 'g', -1, 64), strconv.FormatFloat(r.LR, 'g', -1, 64)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// ReadHistory reads fit's history.csv (epoch,loss,loss_norm,lr). A
// missing, empty or malformed file is an error that says what is wrong.
func ReadHistory(path string) ([]Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s is not valid CSV: %w", path, err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], historyHeader) {
		return nil, fmt.Errorf("%s does not start with the header %s", path, strings.Join(historyHeader, ","))
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("%s has no epochs", path)
	}
	var h []Record
	for i, r := range rows[1:] {
		var rec Record
		var vals [3]float64
		if rec.Epoch, err = strconv.Atoi(r[0]); err != nil {
			return nil, fmt.Errorf("%s line %d: epoch %q is not an integer", path, i+2, r[0])
		}
		for j := range vals {
			if vals[j], err = strconv.ParseFloat(r[j+1], 64); err != nil || math.IsNaN(vals[j]) || math.IsInf(vals[j], 0) {
				return nil, fmt.Errorf("%s line %d: %s %q is not a finite number", path, i+2, rows[0][j+1], r[j+1])
			}
		}
		rec.Loss, rec.LossNorm, rec.LR = vals[0], vals[1], vals[2]
		h = append(h, rec)
	}
	return h, nil
}
