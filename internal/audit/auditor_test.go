package audit

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
)

func stored(name string, annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Annotations: annotations, Labels: labels},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
}

// The audit evaluates stored namespaces as an unchanged UPDATE by nsprov's
// identity: the metadata nsprov wrote, a requester outside the team (an
// admin requested it) and labels set by the provisioning are no violation;
// catalogue and naming rules are.
func TestAuditEvaluation(t *testing.T) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o := AuditorOptions{}.withDefaults()
	a := &Auditor{o: o, as: contract.As(o.Username)}
	if a.as.Username != contract.DefaultUsername || !slices.Equal(a.as.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:nsprov-system", "system:authenticated"}) {
		t.Fatalf("default identity %s %v", a.as.Username, a.as.Groups)
	}
	provisioned := map[string]string{contract.TeamLabel: "payments", contract.EnvironmentLabel: "development", contract.TierLabel: "small", "monitoring.nsprov.io/enhanced": "true"}
	tests := []struct {
		name string
		ns   *corev1.Namespace
		want []string
	}{
		{"provisioned by nsprov", stored("payments-dev", map[string]string{
			contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development", contract.FeaturesAnnotation: "monitoring-enhanced",
			contract.RequestedByAnnotation: "alice", contract.WorkflowAnnotation: "argo/nsprov-x",
		}, provisioned), nil},
		{"requested by an admin outside the team", stored("web-dev", map[string]string{
			contract.TeamAnnotation: "web", contract.EnvironmentAnnotation: "development", contract.RequestedByAnnotation: "root",
		}, nil), nil},
		{"a label nsprov did not derive, set long ago", stored("old-dev", map[string]string{
			contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development", contract.RequestedByAnnotation: "alice",
		}, map[string]string{contract.TierLabel: "large"}), nil},
		{"tier no longer allowed", stored("big-dev", map[string]string{
			contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development", contract.TierAnnotation: "large",
		}, nil), []string{"tier-not-allowed-in-environment"}},
		{"open in production, wrong suffix", stored("web-production", map[string]string{
			contract.TeamAnnotation: "web", contract.EnvironmentAnnotation: "production", contract.NetworkPolicyAnnotation: "open",
		}, nil), []string{"name-environment-suffix", "network-policy-not-allowed-in-environment"}},
	}
	now := time.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !contract.IsRequested(tt.ns) {
				t.Fatal("not a requested namespace")
			}
			results, err := a.evaluate(context.Background(), b, tt.ns, now)
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			for _, r := range results {
				rules = append(rules, r.Rule)
				if r.Policy != r.Rule || r.Result != "fail" || r.Subjects[0].Name != tt.ns.Name || string(r.Subjects[0].UID) != string(tt.ns.UID) ||
					r.Description == "" || r.Properties[PropTeam] != tt.ns.Annotations[contract.TeamAnnotation] || r.Properties[PropPolicyRevision] != b.Revision {
					t.Errorf("result %+v", r)
				}
			}
			if !slices.Equal(rules, tt.want) {
				t.Errorf("violated %v, want %v", rules, tt.want)
			}
		})
	}
	if contract.IsRequested(stored("kube-public", nil, map[string]string{contract.TeamLabel: "x"})) {
		t.Error("a namespace without request annotations counts as requested")
	}
}
