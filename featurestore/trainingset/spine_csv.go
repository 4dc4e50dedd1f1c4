package trainingset

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// inferRows is how many rows of a CSV spine its column types are inferred
// from: fixed, so that the types do not depend on the chunk size.
const inferRows = 10_000

// CSVSpine reads a spine from a CSV file with a header row. Every column is
// nullable (an empty cell is null). A column's type is given in Types or
// inferred from the first 10,000 rows: Int64 when every non-empty cell is
// an integer, else Float64 when every one is a number, else String; a later
// cell that does not parse is an error naming the column.
type CSVSpine struct {
	f       *os.File
	r       *csv.Reader
	cols    []Column
	pending [][]string // rows read for inference, not yet returned
	line    int        // records returned so far, header included
}

// OpenCSV opens path; types fixes the type of the columns it names.
func OpenCSV(path string, types map[string]Type) (*CSVSpine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trainingset: spine: %w", err)
	}
	s := &CSVSpine{f: f, r: csv.NewReader(bufio.NewReaderSize(f, 1<<20)), line: 1}
	s.r.ReuseRecord = false
	header, err := s.r.Read()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("trainingset: spine %s: header: %w", path, err)
	}
	seen := map[string]bool{}
	for _, h := range header {
		if h == "" || seen[h] {
			f.Close()
			return nil, fmt.Errorf("trainingset: spine %s: empty or repeated column name %q in the header", path, h)
		}
		seen[h] = true
	}
	for name := range types {
		if !seen[name] {
			f.Close()
			return nil, fmt.Errorf("trainingset: spine %s: no column %q (has %v)", path, name, header)
		}
	}
	for len(s.pending) < inferRows {
		rec, err := s.r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("trainingset: spine %s: %w", path, err)
		}
		s.pending = append(s.pending, rec)
	}
	for i, h := range header {
		t, ok := types[h]
		if !ok {
			t = infer(s.pending, i)
		}
		s.cols = append(s.cols, Column{Name: h, Type: t, Nullable: true})
	}
	return s, nil
}

// infer returns the narrowest type that every non-empty cell of column i
// parses as.
func infer(rows [][]string, i int) Type {
	isInt, isFloat := true, true
	for _, r := range rows {
		s := r[i]
		if s == "" {
			continue
		}
		if isInt {
			if _, err := strconv.ParseInt(s, 10, 64); err != nil {
				isInt = false
			}
		}
		if !isInt {
			if _, err := strconv.ParseFloat(s, 64); err != nil {
				isFloat = false
				break
			}
		}
	}
	switch {
	case isInt:
		return Int64
	case isFloat:
		return Float64
	}
	return String
}

// Columns returns the header's columns and their types.
func (s *CSVSpine) Columns() []Column { return s.cols }

// Rows is -1: a CSV file's length is known only once read.
func (s *CSVSpine) Rows() int64 { return -1 }

// Next reads up to max rows.
func (s *CSVSpine) Next(c *Chunk, max int) error {
	c.Reset(s.cols)
	for c.Len < max {
		var rec []string
		if len(s.pending) > 0 {
			rec, s.pending[0] = s.pending[0], nil
			s.pending = s.pending[1:]
		} else {
			var err error
			rec, err = s.r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("trainingset: spine: %w", err)
			}
		}
		s.line++
		for i := range s.cols {
			col := &s.cols[i]
			if err := appendCell(&c.Cols[i], col.Type, true, rec[i]); err != nil {
				return fmt.Errorf("trainingset: spine: record %d, column %s (%s, inferred from the first %d rows unless given): %w",
					s.line, col.Name, col.Type, inferRows, err)
			}
		}
		c.Len++
	}
	if c.Len == 0 {
		return io.EOF
	}
	return nil
}

// Close closes the file.
func (s *CSVSpine) Close() error { return s.f.Close() }
