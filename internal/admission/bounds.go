package admission

import (
	"strconv"
	"strings"

	"github.com/nsprov/nsprov/internal/policy"
)

// Bounds of what nsprov answers and records for one request, whatever its
// size and however many rules it violates.
const (
	// MaxMessageBytes bounds the denial message; MaxListedViolations and
	// MaxViolationBytes bound the violations it lists (and the status
	// causes): the rest are counted as "and K more".
	MaxMessageBytes     = 4096
	MaxListedViolations = 20
	MaxViolationBytes   = 512
	// MaxWarnings and MaxWarningBytes bound the warnings answered and
	// recorded (the API server shortens longer ones itself).
	MaxWarnings     = 20
	MaxWarningBytes = 512
	// MaxRecordedViolations bounds the violations a Record keeps (each to
	// MaxRecordedMessageBytes); Record.OmittedViolations counts the rest.
	MaxRecordedViolations   = 50
	MaxRecordedMessageBytes = 1024
	// MaxFieldBytes bounds every other string a Record keeps (UID,
	// namespace, user, each group, rule ID, error), and MaxGroups the groups.
	MaxFieldBytes = 256
	MaxGroups     = 64
)

// Truncate shortens s to at most n bytes, cut at a character boundary and
// marked with "...".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	if n <= len(mark) {
		return mark[:max(n, 0)]
	}
	cut := n - len(mark)
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// truncateAll bounds a list of strings: at most n of them, each to size
// bytes. It returns strs itself when it is within the bounds.
func truncateAll(strs []string, n, size int) []string {
	fits := len(strs) <= n
	for i := 0; fits && i < len(strs); i++ {
		fits = len(strs[i]) <= size
	}
	if fits {
		return strs
	}
	out := make([]string, min(len(strs), n))
	for i := range out {
		out[i] = Truncate(strs[i], size)
	}
	return out
}

// boundedMessage lists violations as "rule-id: message" separated by "; ",
// as policy.Validation.Message does, within MaxMessageBytes: at most
// MaxListedViolations, each within MaxViolationBytes, then "and K more".
func boundedMessage(vs []policy.Violation) string {
	var sb strings.Builder
	listed := 0
	for _, v := range vs {
		if listed == MaxListedViolations {
			break
		}
		part := Truncate(v.String(), MaxViolationBytes)
		// Keep room for the separator and the longest "; and K more".
		if sb.Len()+len(part)+2+len("; and  more")+20 > MaxMessageBytes && listed > 0 {
			break
		}
		if listed > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(part)
		listed++
	}
	if more := len(vs) - listed; more > 0 {
		sb.WriteString("; and ")
		sb.WriteString(strconv.Itoa(more))
		sb.WriteString(" more")
	}
	return sb.String()
}

// BoundRecord truncates every string a record keeps, so that what a
// recorder stores (decision log, audit queue, report, Events) is bounded
// however large the request was. The handlers bound their records before a
// Recorder sees them; a Recorder may call it again at no cost.
func BoundRecord(r *Record) {
	r.UID = Truncate(r.UID, MaxFieldBytes)
	r.Operation = Truncate(r.Operation, MaxFieldBytes)
	r.Namespace = Truncate(r.Namespace, MaxFieldBytes)
	r.Username = Truncate(r.Username, MaxFieldBytes)
	r.Groups = truncateAll(r.Groups, MaxGroups, MaxFieldBytes)
	r.Warnings = truncateAll(r.Warnings, MaxWarnings, MaxWarningBytes)
	vs := r.Violations
	fits := len(vs) <= MaxRecordedViolations
	for i := 0; fits && i < len(vs); i++ {
		fits = len(vs[i].Rule) <= MaxFieldBytes && len(vs[i].Message) <= MaxRecordedMessageBytes
	}
	if fits {
		return
	}
	kept := make([]policy.Violation, min(len(vs), MaxRecordedViolations))
	for i := range kept {
		kept[i] = policy.Violation{Rule: Truncate(vs[i].Rule, MaxFieldBytes), Message: Truncate(vs[i].Message, MaxRecordedMessageBytes)}
	}
	r.OmittedViolations += len(vs) - len(kept)
	r.Violations = kept
}
