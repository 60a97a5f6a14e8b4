package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/contract"
)

func denialResult(t time.Time, uid, user, ns, rule string) reportsv1alpha1.ReportResult {
	return reportsv1alpha1.ReportResult{
		Source: audit.Source, Policy: rule, Rule: rule, Result: "fail",
		Timestamp: metav1.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())},
		Subjects:  []corev1.ObjectReference{{APIVersion: "v1", Kind: "Namespace", Name: ns}},
		Properties: map[string]string{
			audit.PropRequestUID: uid, audit.PropUser: user, audit.PropOperation: "CREATE",
		},
	}
}

func TestDenialTable(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	report := &reportsv1alpha1.ClusterReport{Results: []reportsv1alpha1.ReportResult{
		denialResult(t0, "u1", "bob", "web-prod", "requester-not-in-team"),
		denialResult(t0, "u1", "bob", "web-prod", "network-policy-not-allowed-in-environment"),
		denialResult(t0.Add(time.Minute), "u2", "alice", "big-dev", "tier-not-allowed-in-environment"),
		denialResult(t0.Add(2*time.Minute), "u3", "bob", "kube-x-dev", "name-reserved"),
	}}
	tests := []struct {
		name string
		o    AuditOptions
		want string
	}{
		{"all, newest first", AuditOptions{}, `TIME                  USER   NAMESPACE   RULES
2025-03-04T05:08:07Z  bob    kube-x-dev  name-reserved
2025-03-04T05:07:07Z  alice  big-dev     tier-not-allowed-in-environment
2025-03-04T05:06:07Z  bob    web-prod    network-policy-not-allowed-in-environment,requester-not-in-team
`},
		{"limit", AuditOptions{Limit: 1}, `TIME                  USER  NAMESPACE   RULES
2025-03-04T05:08:07Z  bob   kube-x-dev  name-reserved
`},
		{"one user", AuditOptions{User: "alice"}, `TIME                  USER   NAMESPACE  RULES
2025-03-04T05:07:07Z  alice  big-dev    tier-not-allowed-in-environment
`},
		{"one namespace", AuditOptions{Namespace: "web-prod"}, `TIME                  USER  NAMESPACE  RULES
2025-03-04T05:06:07Z  bob   web-prod   network-policy-not-allowed-in-environment,requester-not-in-team
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeDenialTable(&out, audit.DenialsOf(report), &tt.o); err != nil {
				t.Fatal(err)
			}
			// tabwriter pads the last column too; compare without trailing spaces.
			got := trimLines(out.String())
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestViolationTable(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	r := func(ns, rule string, at time.Time) reportsv1alpha1.ReportResult {
		x := denialResult(at, "", "", ns, rule)
		x.Properties = map[string]string{audit.PropTeam: "payments"}
		return x
	}
	report := &reportsv1alpha1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			contract.ReportPolicyRevisionAnnotation: "abc", contract.ReportAuditedNamespacesAnnotation: "7", contract.ReportLastAuditAnnotation: "2025-03-04T06:00:00Z",
		}},
		Results: []reportsv1alpha1.ReportResult{
			r("b-dev", "tier-not-allowed-in-environment", t0),
			r("a-prod", "network-policy-not-allowed-in-environment", t0.Add(time.Hour)),
			r("a-prod", "feature-invalid", t0),
		},
	}
	var out bytes.Buffer
	if err := writeViolationTable(&out, audit.NamespaceAuditOf(report)); err != nil {
		t.Fatal(err)
	}
	want := `NAMESPACE  TEAM      SINCE                 RULES
a-prod     payments  2025-03-04T05:06:07Z  feature-invalid,network-policy-not-allowed-in-environment
b-dev      payments  2025-03-04T05:06:07Z  tier-not-allowed-in-environment

policy revision abc, 7 requested namespaces audited at 2025-03-04T06:00:00Z
`
	if got := trimLines(out.String()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return strings.Join(lines, "\n")
}

func TestAuditCommandErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"audit", "--limit", "-1"}, streams{in: strings.NewReader(""), out: &out, err: &errOut})
	if code != ExitBadUsage || !strings.Contains(errOut.String(), "--limit -1 must not be negative") {
		t.Errorf("exit %d, stderr %s", code, errOut.String())
	}
	errOut.Reset()
	code = run(t.Context(), []string{"audit", "--kubeconfig", filepath.Join(t.TempDir(), "none")}, streams{in: strings.NewReader(""), out: &out, err: &errOut})
	if code != ExitBadUsage || !strings.Contains(errOut.String(), "no Kubernetes API configuration") {
		t.Errorf("exit %d, stderr %s", code, errOut.String())
	}
}

func TestServeAuditFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string // empty: valid
	}{
		{nil, ""},
		{[]string{"--audit-report-size", "200", "--audit-queue-size", "50", "--audit-interval", "0", "--decision-log", "off"}, ""},
		{[]string{"--decision-log", "stderr", "--audit-interval", "1h"}, ""},
		{[]string{"--decision-log", filepath.Join(dir, "decisions.jsonl")}, ""},
		{[]string{"--audit-report-size", "0"}, "--audit-report-size 0 must be at least 1"},
		{[]string{"--audit-queue-size", "-3"}, "--audit-queue-size -3 must be at least 1"},
		{[]string{"--audit-interval", "2s"}, "--audit-interval 2s must be 0 (no periodic audit) or at least 10s"},
		{[]string{"--audit-interval", "-1m"}, "--audit-interval -1m0s must be 0"},
		{[]string{"--decision-log", ""}, "--decision-log must not be empty"},
		{[]string{"--decision-log", filepath.Join(dir, "missing", "log")}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o := &ServeOptions{}
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			errs := o.validateAudit()
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Errorf("unexpected errors %v", errs)
			case tt.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want)):
				t.Errorf("errors %v, want one with %q", errs, tt.want)
			}
		})
	}
	o := &ServeOptions{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.AddFlags(fs)
	_ = fs.Parse(nil)
	if o.AuditReportSize != 1000 || o.AuditQueueSize != 10000 || o.AuditInterval != 10*time.Minute || o.DecisionLog != "stdout" {
		t.Errorf("defaults: report %d, queue %d, interval %s, decision log %q", o.AuditReportSize, o.AuditQueueSize, o.AuditInterval, o.DecisionLog)
	}
}

func TestDecisionLogWriter(t *testing.T) {
	var out, errOut bytes.Buffer
	s := streams{out: &out, err: &errOut}
	for _, tt := range []struct {
		dest string
		want any
	}{{"stdout", &out}, {"stderr", &errOut}} {
		w, closeLog, err := (&ServeOptions{DecisionLog: tt.dest}).decisionLogWriter(s)
		if err != nil || w != tt.want {
			t.Errorf("%s: writer %v, error %v", tt.dest, w, err)
		}
		closeLog()
	}
	if w, _, err := (&ServeOptions{DecisionLog: "off"}).decisionLogWriter(s); w != nil || err != nil {
		t.Errorf("off: writer %v, error %v", w, err)
	}
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	if err := os.WriteFile(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, closeLog, err := (&ServeOptions{DecisionLog: path}).decisionLogWriter(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("{\"a\":1}\n")); err != nil {
		t.Fatal(err)
	}
	closeLog()
	if b, _ := os.ReadFile(path); string(b) != "{}\n{\"a\":1}\n" {
		t.Errorf("the file holds %q; the decision log appends", b)
	}
}
