package audit

import (
	"reflect"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nsprov/nsprov/internal/contract"
)

func reportResult(t time.Time, uid, user, ns, rule string) reportsv1alpha1.ReportResult {
	return reportsv1alpha1.ReportResult{
		Source: Source, Policy: rule, Rule: rule, Result: "fail",
		Timestamp: metav1.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())},
		Subjects:  []corev1.ObjectReference{{APIVersion: "v1", Kind: "Namespace", Name: ns}},
		Properties: map[string]string{
			PropRequestUID: uid, PropUser: user, PropOperation: "CREATE",
		},
	}
}

func TestDenialsOf(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name    string
		results []reportsv1alpha1.ReportResult
		want    []Denial
	}{
		{"empty", nil, nil},
		{"one request per row, newest first, rules sorted", []reportsv1alpha1.ReportResult{
			reportResult(t0, "u1", "bob", "web-prod", "requester-not-in-team"),
			reportResult(t0, "u1", "bob", "web-prod", "network-policy-not-allowed-in-environment"),
			reportResult(t0.Add(time.Minute), "u2", "alice", "big-dev", "tier-not-allowed-in-environment"),
			reportResult(t0.Add(2*time.Minute), "u3", "bob", "kube-x-dev", "name-reserved"),
		}, []Denial{
			{Time: t0.Add(2 * time.Minute), UID: "u3", User: "bob", Namespace: "kube-x-dev", Operation: "CREATE", Rules: []string{"name-reserved"}},
			{Time: t0.Add(time.Minute), UID: "u2", User: "alice", Namespace: "big-dev", Operation: "CREATE", Rules: []string{"tier-not-allowed-in-environment"}},
			{Time: t0, UID: "u1", User: "bob", Namespace: "web-prod", Operation: "CREATE", Rules: []string{"network-policy-not-allowed-in-environment", "requester-not-in-team"}},
		}},
		{"same time: by request UID", []reportsv1alpha1.ReportResult{
			reportResult(t0, "b", "bob", "x-dev", "r1"),
			reportResult(t0, "a", "ann", "y-dev", "r2"),
		}, []Denial{
			{Time: t0, UID: "a", User: "ann", Namespace: "y-dev", Operation: "CREATE", Rules: []string{"r2"}},
			{Time: t0, UID: "b", User: "bob", Namespace: "x-dev", Operation: "CREATE", Rules: []string{"r1"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DenialsOf(&reportsv1alpha1.ClusterReport{Results: tt.results})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNamespaceAuditOf(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	r := func(ns, rule string, at time.Time) reportsv1alpha1.ReportResult {
		x := reportResult(at, "", "", ns, rule)
		x.Properties = map[string]string{PropTeam: "payments"}
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
	want := &NamespaceAudit{
		PolicyRevision: "abc", AuditedNamespaces: "7", LastAudit: "2025-03-04T06:00:00Z",
		Namespaces: []NamespaceViolations{
			{Namespace: "a-prod", Team: "payments", Since: t0, Rules: []string{"feature-invalid", "network-policy-not-allowed-in-environment"}},
			{Namespace: "b-dev", Team: "payments", Since: t0, Rules: []string{"tier-not-allowed-in-environment"}},
		},
	}
	if got := NamespaceAuditOf(report); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
