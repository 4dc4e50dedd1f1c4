package schemas

import (
	"encoding/binary"
	"math"
)

// Hand-written Avro binary encoders for the records on the hot path. They
// write exactly what the embedded schemas declare, field by field, with no
// reflection and no allocation beyond dst's growth; a test checks each
// against hamba/avro's decoder.

func appendLong(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) } // Avro zigzag varint
func appendString(dst []byte, s string) []byte {
	return append(binary.AppendVarint(dst, int64(len(s))), s...)
}
func appendDouble(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}
func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// AppendFeatureRow appends the Avro body (no wire header) of r, written
// under feature_row.avsc, to dst.
func AppendFeatureRow(dst []byte, r *FeatureRow) []byte {
	dst = appendString(dst, r.Entity)
	dst = appendString(dst, r.View)
	dst = appendString(dst, r.ViewVersion)
	dst = appendLong(dst, r.EventTime)
	dst = appendLong(dst, r.KnownTime)
	dst = appendString(dst, r.SourceTopic)
	dst = appendLong(dst, int64(r.SourcePartition))
	dst = appendLong(dst, r.SourceOffset)
	dst = appendString(dst, r.EventID)
	if n := len(r.Values); n > 0 {
		dst = appendLong(dst, int64(n))
		for i := range r.Values {
			v := &r.Values[i]
			dst = appendString(dst, v.Name)
			dst = appendDouble(dst, v.Value)
			if len(v.List) > 0 {
				dst = appendLong(dst, int64(len(v.List)))
				for _, x := range v.List {
					dst = appendDouble(dst, x)
				}
			}
			dst = append(dst, 0)
			if len(v.Labels) > 0 {
				dst = appendLong(dst, int64(len(v.Labels)))
				for _, l := range v.Labels {
					dst = appendString(dst, l)
				}
			}
			dst = append(dst, 0)
		}
	}
	dst = append(dst, 0) // end of the array's blocks
	dst = appendLong(dst, r.WindowStart)
	dst = appendLong(dst, r.WindowEnd)
	return appendLong(dst, r.RevisesOffset)
}

// AppendPrediction appends the Avro body (no wire header) of p, written
// under prediction.avsc, to dst.
func AppendPrediction(dst []byte, p *Prediction) []byte {
	dst = appendString(dst, p.PredictionID)
	dst = appendString(dst, p.Entity)
	dst = appendLong(dst, p.EventTime)
	dst = appendLong(dst, p.ScoredTime)
	dst = appendString(dst, p.ModelName)
	dst = appendLong(dst, int64(p.ModelVersion))
	dst = appendString(dst, p.RolloutArm)
	dst = appendDouble(dst, p.Score)
	dst = appendDouble(dst, p.Threshold)
	dst = appendBool(dst, p.Decision)
	dst = appendLong(dst, int64(p.SourcePartition))
	dst = appendLong(dst, p.SourceOffset)
	dst = appendLong(dst, p.LatencyUs)
	if n := len(p.Features); n > 0 {
		dst = appendLong(dst, int64(n))
		for i := range p.Features {
			dst = appendString(dst, p.Features[i].Name)
			dst = appendDouble(dst, p.Features[i].Value)
			dst = appendLong(dst, p.Features[i].AgeMs)
			dst = appendBool(dst, p.Features[i].Stale)
		}
	}
	dst = append(dst, 0) // end of the features array
	return appendBool(dst, p.Shadow)
}

// AppendHeader appends the wire-format header of the serde's schema id.
func (s *Serde) AppendHeader(dst []byte) []byte { return AppendHeader(dst, s.id) }
