package audit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

// decisionLine is one line of the decision log.
type decisionLine struct {
	Time       string             `json:"time"`
	Msg        string             `json:"msg"`
	Webhook    string             `json:"webhook"`
	UID        string             `json:"uid"`
	Operation  string             `json:"operation"`
	Namespace  string             `json:"namespace"`
	User       string             `json:"user"`
	Groups     []string           `json:"groups"`
	Allowed    bool               `json:"allowed"`
	Violations []policy.Violation `json:"violations"`
	// OmittedViolations counts the violations not listed (see
	// admission.MaxRecordedViolations).
	OmittedViolations int      `json:"omittedViolations,omitempty"`
	Warnings          []string `json:"warnings"`
	Patches           int      `json:"patches,omitempty"`
	DryRun            bool     `json:"dryRun"`
	PolicyRevision    string   `json:"policyRevision"`
	LatencySeconds    float64  `json:"latencySeconds"`
	Error             string   `json:"error,omitempty"`
	ClientVerified    bool     `json:"clientVerified"`
}

// marshalDecisionLine is the decision log line of r as json.Marshal writes
// it: the reference appendDecisionLine is compared with.
func marshalDecisionLine(t *testing.T, r *admission.Record) string {
	t.Helper()
	line := decisionLine{
		Time: r.Time.UTC().Format(time.RFC3339Nano), Msg: DecisionLogMessage, Webhook: r.Webhook, UID: r.UID,
		Operation: r.Operation, Namespace: r.Namespace, User: r.Username, Groups: r.Groups, Allowed: r.Allowed,
		Violations: r.Violations, OmittedViolations: r.OmittedViolations, Warnings: r.Warnings, Patches: r.Patches, DryRun: r.DryRun,
		PolicyRevision: r.Revision, LatencySeconds: r.Latency.Seconds(), ClientVerified: r.ClientVerified,
	}
	if line.Groups == nil {
		line.Groups = []string{}
	}
	if line.Violations == nil {
		line.Violations = []policy.Violation{}
	}
	if line.Warnings == nil {
		line.Warnings = []string{}
	}
	if r.Err != nil {
		line.Error = truncate(r.Err.Error(), maxMessage)
	}
	b, err := json.Marshal(line)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameLine(t *testing.T, r *admission.Record) {
	t.Helper()
	got := string(appendDecisionLine(nil, r))
	if want := marshalDecisionLine(t, r); got != want {
		t.Fatalf("appendDecisionLine\n%s\njson.Marshal\n%s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Fatalf("not JSON: %s", got)
	}
}

// decisionLineRecords cover every field, empty and full, and the strings
// and numbers json.Marshal writes specially.
var decisionLineRecords = []admission.Record{
	{},
	{
		Time: time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)), Webhook: "validate", UID: "uid-1",
		Operation: "CREATE", Namespace: "payments-prod", Username: "bob", Groups: []string{"team-web", "system:authenticated"},
		Violations:        []policy.Violation{{Rule: "requester-not-in-team", Message: "not in team"}, {Rule: "r2", Message: `say "no" <b> & \ back`}},
		OmittedViolations: 3, Warnings: []string{"open is discouraged"}, Patches: 2, DryRun: true, Revision: "sha256:abc",
		Latency: 1234567 * time.Nanosecond, Err: errors.New("policy failed: \x00\x1f\t\n\r\b\f"), ClientVerified: true,
	},
	{Allowed: true, Username: "caf\u00e9 \u2028\u2029 \U0001F600 \xff\xfe", Latency: time.Nanosecond, Groups: []string{}, Warnings: []string{""}},
	{Latency: 999 * time.Nanosecond, Err: errors.New("")},
	{Latency: 1000 * time.Nanosecond, Namespace: strings.Repeat("\x7f", 3)},
	{Latency: 1 << 62, Revision: "</script>"},
	{Latency: -5 * time.Millisecond},
}

// appendDecisionLine writes exactly what json.Marshal wrote before it.
func TestAppendDecisionLineSameAsMarshal(t *testing.T) {
	for i := range decisionLineRecords {
		sameLine(t, &decisionLineRecords[i])
	}
}

// FuzzDecisionLine compares appendDecisionLine with json.Marshal on
// arbitrary strings and latencies.
func FuzzDecisionLine(f *testing.F) {
	f.Add("alice", "team-a", "rule", "message <&>", "warning", int64(1500), "")
	f.Add("\xff\u2028", "\x00", "", "\"\\", "\U0001F600", int64(1), "err\n")
	f.Fuzz(func(t *testing.T, user, group, rule, message, warning string, latency int64, errText string) {
		r := &admission.Record{
			Time: time.Unix(0, latency).UTC(), Webhook: "mutate", UID: rule, Operation: "UPDATE", Namespace: message,
			Username: user, Groups: []string{group, user}, Violations: []policy.Violation{{Rule: rule, Message: message}},
			Warnings: []string{warning}, Latency: time.Duration(latency), Revision: group,
		}
		if errText != "" {
			r.Err = errors.New(errText)
		}
		sameLine(t, r)
	})
}
