package serve

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/weirhq/weir/featurestore/online"
)

// Status of one value in a response.
const (
	statusPresent = iota
	statusMissing
	statusExpired
	numStatus
)

var statusJSON = [numStatus]string{`"present"`, `"missing"`, `"expired"`}

// statusNames are the statuses' names (metric labels).
var statusNames = [numStatus]string{"present", "missing", "expired"}

// cell is one entity's value of one column.
type cell struct {
	status   uint8
	value    float64
	et, age  int64
	hasTimes bool
}

// appendResponse writes the JSON answer: feats[e*len(p.views)+v] is entity
// e's read of p.views[v].
func (h *Handler) appendResponse(dst []byte, entities []string, p *plan, feats []online.Features, now time.Time) []byte {
	nowMs := now.UnixMilli()
	dst = append(dst, `{"now_ms":`...)
	dst = strconv.AppendInt(dst, nowMs, 10)
	dst = append(dst, `,"entity":`...)
	dst = appendString(dst, p.entity)
	dst = append(dst, `,"features":[`...)
	for i, c := range p.cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, c.ref)
	}
	dst = append(dst, `],"results":[`...)
	cells := make([]cell, len(p.cols))
	counts := make([][numStatus]float64, len(p.views))
	nv := len(p.views)
	for ei, e := range entities {
		for ci, c := range p.cols {
			f := &feats[ei*nv+c.view]
			cl := cell{status: statusMissing}
			if f.Found {
				if f.Has[c.slot] {
					cl = cell{status: statusPresent, value: f.Values[c.slot], et: f.EventTime, age: nowMs - f.EventTime, hasTimes: true}
					if ttl := p.views[c.view].ttlMs; ttl > 0 && cl.age > ttl {
						cl.status = statusExpired
					}
				}
			}
			cells[ci] = cl
			counts[c.view][cl.status]++
		}
		if ei > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"entity":`...)
		dst = appendString(dst, e)
		dst = append(dst, `,"values":[`...)
		for i, cl := range cells {
			if i > 0 {
				dst = append(dst, ',')
			}
			if cl.status == statusPresent {
				dst = appendFloat(dst, cl.value)
			} else {
				dst = append(dst, "null"...)
			}
		}
		dst = append(dst, `],"status":[`...)
		for i, cl := range cells {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, statusJSON[cl.status]...)
		}
		dst = append(dst, `],"event_time_ms":[`...)
		for i, cl := range cells {
			if i > 0 {
				dst = append(dst, ',')
			}
			if cl.hasTimes {
				dst = strconv.AppendInt(dst, cl.et, 10)
			} else {
				dst = append(dst, "null"...)
			}
		}
		dst = append(dst, `],"age_ms":[`...)
		for i, cl := range cells {
			if i > 0 {
				dst = append(dst, ',')
			}
			if cl.hasTimes {
				dst = strconv.AppendInt(dst, cl.age, 10)
			} else {
				dst = append(dst, "null"...)
			}
		}
		dst = append(dst, "]}"...)
	}
	dst = append(dst, "]}"...)
	h.m.answered(p.views, counts, len(entities))
	return dst
}

// appendFloat writes a finite value as a JSON number (shortest form that
// parses back to the same bits) and a non-finite one as a string.
func appendFloat(dst []byte, x float64) []byte {
	switch {
	case math.IsNaN(x):
		return append(dst, `"NaN"`...)
	case math.IsInf(x, 1):
		return append(dst, `"+Inf"`...)
	case math.IsInf(x, -1):
		return append(dst, `"-Inf"`...)
	}
	return strconv.AppendFloat(dst, x, 'g', -1, 64)
}

// appendString writes s as a JSON string: printable ASCII without quotes or
// backslashes as is, anything else through encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendError writes an Error's JSON body.
func appendError(dst []byte, e *Error) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, e.Code)
	dst = append(dst, `,"field":`...)
	dst = appendString(dst, e.Field)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	return append(dst, "}}\n"...)
}
