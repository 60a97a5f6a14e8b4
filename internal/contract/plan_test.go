package contract

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// validPlan is a plan as the embedded policy produces it (JSON values).
func validPlan() map[string]any {
	return map[string]any{
		"namespace": "payments-dev", "team": "payments", "environment": "development", "tier": "small",
		"monthly_cost_usd":           json.Number("100"),
		"quota":                      map[string]any{"cpu": "2", "memory": "4Gi", "storage": "20Gi"},
		"container_defaults":         map[string]any{"cpu": "500m", "memory": "512Mi"},
		"container_default_requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
		"role_bindings":              []any{map[string]any{"name": "nsprov-team-edit", "cluster_role": "edit", "group": "team-payments"}},
		"network_policy": map[string]any{
			"mode": "isolated", "default_deny": true, "allow_dns": true, "allow_same_namespace": true, "allow_team": false,
			"allow_ingress_from": []any{}, "allow_egress_to": []any{"istio-system"},
		},
		"features":         []any{"istio"},
		"namespace_labels": map[string]any{"istio-injection": "enabled", "monitoring.nsprov.io/enhanced": nil},
	}
}

func TestDecodePlan(t *testing.T) {
	p, err := DecodePlan(validPlan())
	if err != nil {
		t.Fatal(err)
	}
	if p.Quota.CPU != "2" || p.MonthlyCostUSD != 100 || !p.NetworkPolicy.DefaultDeny || p.NetworkPolicy.AllowIngressFrom == nil ||
		p.RoleBindings[0] != (RoleBinding{Name: "nsprov-team-edit", ClusterRole: "edit", Group: "team-payments"}) ||
		*p.NamespaceLabels["istio-injection"] != "enabled" || p.NamespaceLabels["monitoring.nsprov.io/enhanced"] != nil {
		t.Errorf("decoded %+v", p)
	}
	if got, _ := json.Marshal(p.NetworkPolicy.AllowIngressFrom); string(got) != "[]" {
		t.Errorf("an empty list marshals as %s, want []", got)
	}
}

func TestDecodePlanErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(map[string]any)
		want   []string
	}{
		{"no quota", func(p map[string]any) { delete(p, "quota") }, []string{
			"plan.quota.cpu must be a non-empty string, got <nil>", "plan.quota.memory must be", "plan.quota.storage must be",
		}},
		{"not a boolean", func(p map[string]any) { p["network_policy"].(map[string]any)["default_deny"] = "yes" }, []string{
			"plan.network_policy.default_deny must be true or false, got yes",
		}},
		{"empty team", func(p map[string]any) { p["team"] = "" }, []string{"plan.team must be a non-empty string"}},
		{"no ingress list", func(p map[string]any) { delete(p["network_policy"].(map[string]any), "allow_ingress_from") }, []string{
			"plan.network_policy.allow_ingress_from is missing",
		}},
		{"a number in a list", func(p map[string]any) { p["network_policy"].(map[string]any)["allow_egress_to"] = []any{"a", 3.0} }, []string{
			"plan.network_policy.allow_egress_to[1] must be a string, got 3",
		}},
		{"no labels", func(p map[string]any) { delete(p, "namespace_labels") }, []string{"plan.namespace_labels is missing"}},
		{"a label that is a number", func(p map[string]any) { p["namespace_labels"] = map[string]any{"x": 1.0} }, []string{
			`plan.namespace_labels["x"] must be a string or null, got 1`,
		}},
		{"no role bindings", func(p map[string]any) { delete(p, "role_bindings") }, []string{"plan.role_bindings is missing"}},
		{"a long role binding name", func(p map[string]any) {
			p["role_bindings"] = []any{map[string]any{"name": strings.Repeat("x", 64), "cluster_role": "edit", "group": "g"}}
		}, []string{`plan.role_bindings[0].name "` + strings.Repeat("x", 64) + `" must be a RoleBinding name of at most 63 characters`}},
		{"a role binding without a name", func(p map[string]any) { p["role_bindings"] = []any{map[string]any{"cluster_role": "edit"}} }, []string{
			`plan.role_bindings[0].name "" must be a RoleBinding name`,
		}},
		{"a role binding without a role", func(p map[string]any) {
			p["role_bindings"] = []any{map[string]any{"name": "a", "group": "g"}, map[string]any{"name": "b", "group": "g"}}
		}, []string{"plan.role_bindings[0].cluster_role must be a non-empty string", "plan.role_bindings[1].cluster_role must be"}},
		{"a cost that is text", func(p map[string]any) { p["monthly_cost_usd"] = "a lot" }, []string{"plan.monthly_cost_usd must be a number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPlan()
			tt.change(p)
			got, err := DecodePlan(p)
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("DecodePlan = %+v, %v; want a *PlanError", got, err)
			}
			if len(pe.Problems) != len(tt.want) {
				t.Errorf("problems %q, want %d", pe.Problems, len(tt.want))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDecodePlanJSON(t *testing.T) {
	data, _ := json.Marshal(validPlan())
	if _, err := DecodePlanJSON(data); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`[]`, `{"team":`, `null`} {
		if _, err := DecodePlanJSON([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}
