package app

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nsprov/nsprov/internal/audit"
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
	// Reading the report is internal/audit's (TestNamespaceAuditOf); this
	// checks the table only.
	a := &audit.NamespaceAudit{
		PolicyRevision: "abc", AuditedNamespaces: "7", LastAudit: "2025-03-04T06:00:00Z",
		Namespaces: []audit.NamespaceViolations{
			{Namespace: "a-prod", Team: "payments", Since: t0, Rules: []string{"feature-invalid", "network-policy-not-allowed-in-environment"}},
			{Namespace: "b-dev", Team: "payments", Since: t0, Rules: []string{"tier-not-allowed-in-environment"}},
		},
	}
	var out bytes.Buffer
	if err := writeViolationTable(&out, a); err != nil {
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
