package trainingset

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CSVWriter writes a training set as CSV with a header row (RFC 4180
// quoting, "\n" line ends): integers in decimal, bools as true/false,
// floats in the shortest form that reads back the same (strconv 'g', NaN as
// NaN), null as an empty cell. The description goes to the sidecar
// <path>.json. Both are written to temporary files beside path and renamed
// into place by Finish, so a failed or interrupted build leaves no partial
// output under the final names.
type CSVWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	cols []Column
	buf  []byte
}

// NewCSVWriter returns a writer to path.
func NewCSVWriter(path string) *CSVWriter { return &CSVWriter{path: path} }

// SidecarPath is the description file of a CSV training set.
func SidecarPath(path string) string { return path + ".json" }

// Begin creates the temporary file and writes the header.
func (w *CSVWriter) Begin(cols []Column) error {
	f, err := createTemp(w.path)
	if err != nil {
		return err
	}
	w.f, w.w, w.cols = f, bufio.NewWriterSize(f, 1<<20), cols
	b := w.buf[:0]
	for i, c := range cols {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, c.Name)
	}
	b = append(b, '\n')
	_, err = w.w.Write(b)
	w.buf = b
	return w.err(err)
}

func (w *CSVWriter) err(err error) error {
	if err != nil {
		return fmt.Errorf("trainingset: write %s: %w", w.path, err)
	}
	return nil
}

// Write appends the chunk's rows.
func (w *CSVWriter) Write(c *Chunk) error {
	for i := 0; i < c.Len; i++ {
		b := w.buf[:0]
		for j, col := range w.cols {
			if j > 0 {
				b = append(b, ',')
			}
			v := &c.Cols[j]
			if v.IsNull(i) {
				continue
			}
			switch col.Type {
			case Int64:
				b = strconv.AppendInt(b, v.Ints[i], 10)
			case Bool:
				b = strconv.AppendBool(b, v.Ints[i] != 0)
			case Float64:
				b = appendFloat(b, v.Floats[i])
			case String:
				b = appendCSVField(b, v.Strs[i])
			}
		}
		b = append(b, '\n')
		w.buf = b
		if _, err := w.w.Write(b); err != nil {
			return w.err(err)
		}
	}
	return nil
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) {
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendCSVField quotes s when it holds a comma, a quote or a line break,
// or starts with a space (as encoding/csv does).
func appendCSVField(b []byte, s string) []byte {
	if s == "" || !strings.ContainsAny(s, ",\"\r\n") && s[0] != ' ' && s[0] != '\t' {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// Finish writes the sidecar and renames both files into place, the CSV
// file last.
func (w *CSVWriter) Finish(d *Description) error {
	if err := w.w.Flush(); err != nil {
		return w.err(err)
	}
	if err := w.f.Close(); err != nil {
		return w.err(err)
	}
	js, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return w.err(err)
	}
	side := SidecarPath(w.path)
	if err := writeFileAtomic(side, append(js, '\n')); err != nil {
		return err
	}
	return w.err(os.Rename(w.f.Name(), w.path))
}

// Abort removes the temporary file.
func (w *CSVWriter) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// createTemp creates a temporary file beside path, to be renamed to it,
// with mode 0644 (os.CreateTemp's is 0600).
func createTemp(path string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("trainingset: write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("trainingset: write %s: %w", path, err)
	}
	return f, nil
}

// writeFileAtomic writes b to a temporary file beside path and renames it.
func writeFileAtomic(path string, b []byte) error {
	f, err := createTemp(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("trainingset: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("trainingset: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("trainingset: write %s: %w", path, err)
	}
	return nil
}
