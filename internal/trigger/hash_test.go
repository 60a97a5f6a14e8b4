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
		{"payments-dev", map[string]string{"nsprov.io/environment": "development", "nsprov.io/features": "monitoring-enhanced"}, "6c34602ca3"},
		{"payments-staging", map[string]string{"nsprov.io/environment": "staging", "nsprov.io/network-policy": "team", "nsprov.io/features": "istio,monitoring-enhanced"}, "0237b5227e"},
		{"payments-prod", map[string]string{"nsprov.io/environment": "production", "nsprov.io/tier": "large"}, "c50c69cd03"},
		{"open-dev", map[string]string{"nsprov.io/environment": "development", "nsprov.io/network-policy": "open", "nsprov.io/features": "istio"}, "6b6c0dd470"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, plan := requested(t, tt.name, tt.annotations)
			wf := NewWorkflow(ns, plan, "", Options{ArgoNamespace: "argo"})
			if got := wf.Annotations[contract.PlanHashAnnotation]; got != tt.want || wf.Name != "nsprov-6f1c2a7e4b1d-"+tt.want {
				t.Errorf("plan hash %s, want %s (workflow %s)", got, tt.want, wf.Name)
			}
		})
	}
}
