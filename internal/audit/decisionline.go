package audit

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

// lineBuffers are the buffers decision log lines are encoded in.
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendDecisionLine appends the decision log line of r (without its
// newline) to b: byte for byte what json.Marshal writes for the
// decisionLine of r, without reflection.
func appendDecisionLine(b []byte, r *admission.Record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","msg":`...)
	b = appendString(b, DecisionLogMessage)
	b = append(b, `,"webhook":`...)
	b = appendString(b, r.Webhook)
	b = append(b, `,"uid":`...)
	b = appendString(b, r.UID)
	b = append(b, `,"operation":`...)
	b = appendString(b, r.Operation)
	b = append(b, `,"namespace":`...)
	b = appendString(b, r.Namespace)
	b = append(b, `,"user":`...)
	b = appendString(b, r.Username)
	b = append(b, `,"groups":`...)
	b = appendStrings(b, r.Groups)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, r.Allowed)
	b = append(b, `,"violations":[`...)
	for i, v := range r.Violations {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendViolation(b, v)
	}
	b = append(b, ']')
	if r.OmittedViolations != 0 {
		b = append(b, `,"omittedViolations":`...)
		b = strconv.AppendInt(b, int64(r.OmittedViolations), 10)
	}
	b = append(b, `,"warnings":`...)
	b = appendStrings(b, r.Warnings)
	if r.Patches != 0 {
		b = append(b, `,"patches":`...)
		b = strconv.AppendInt(b, int64(r.Patches), 10)
	}
	b = append(b, `,"dryRun":`...)
	b = strconv.AppendBool(b, r.DryRun)
	b = append(b, `,"policyRevision":`...)
	b = appendString(b, r.Revision)
	b = append(b, `,"latencySeconds":`...)
	b = appendFloat(b, r.Latency.Seconds())
	if r.Err != nil {
		if msg := truncate(r.Err.Error(), maxMessage); msg != "" {
			b = append(b, `,"error":`...)
			b = appendString(b, msg)
		}
	}
	b = append(b, `,"clientVerified":`...)
	b = strconv.AppendBool(b, r.ClientVerified)
	return append(b, '}')
}

func appendViolation(b []byte, v policy.Violation) []byte {
	b = append(b, `{"rule":`...)
	b = appendString(b, v.Rule)
	b = append(b, `,"message":`...)
	b = appendString(b, v.Message)
	return append(b, '}')
}

func appendStrings(b []byte, strs []string) []byte {
	b = append(b, '[')
	for i, s := range strs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendString appends s as a JSON string. Printable ASCII other than the
// characters json.Marshal escapes (quote, backslash and the HTML <, >, &)
// is copied; any other string is encoded by json.Marshal itself.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				return append(b, `""`...) // a string always marshals
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendFloat appends f as json.Marshal does: without an exponent from
// 1e-6 up to 1e21, by json.Marshal itself otherwise.
func appendFloat(b []byte, f float64) []byte {
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) || math.IsNaN(f) {
		q, err := json.Marshal(f)
		if err != nil {
			return append(b, '0')
		}
		return append(b, q...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
