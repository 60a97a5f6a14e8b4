package trigger

import (
	"testing"

	"github.com/nsprov/nsprov/internal/contract"
)

// TestPlanHashIsStable pins the plan hash of a few plans of the embedded
// policy. The hash is part of every Workflow name (README shows the one of
// payments-dev): a change of how the plan becomes parameters must not
// change it.
func TestPlanHashIsStable(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"payments-dev", map[string]string{contract.EnvironmentAnnotation: "development", contract.FeaturesAnnotation: "monitoring-enhanced"}, "6c34602ca3"},
		{"payments-staging", map[string]string{contract.EnvironmentAnnotation: "staging", contract.NetworkPolicyAnnotation: "team", contract.FeaturesAnnotation: "istio,monitoring-enhanced"}, "0237b5227e"},
		{"payments-prod", map[string]string{contract.EnvironmentAnnotation: "production", contract.TierAnnotation: "large"}, "c50c69cd03"},
		{"open-dev", map[string]string{contract.EnvironmentAnnotation: "development", contract.NetworkPolicyAnnotation: "open", contract.FeaturesAnnotation: "istio"}, "6b6c0dd470"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, plan := requested(t, tt.name, tt.annotations)
			wf := NewWorkflow(ns, plan, keyOf(plan, ""), 1, Options{ArgoNamespace: "argo"})
			if got := wf.Annotations[contract.PlanHashAnnotation]; got != tt.want || wf.Name != "nsprov-6f1c2a7e4b1d-"+tt.want+"-0a1b2c3d" {
				t.Errorf("plan hash %s, want %s (workflow %s)", got, tt.want, wf.Name)
			}
		})
	}
}
