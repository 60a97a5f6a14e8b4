package contract_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/policies"
)

// evalEmbedded evaluates query against the embedded bundle's modules (the
// tests left out) and data, and returns its one value.
func evalEmbedded(t *testing.T, query string) any {
	t.Helper()
	loaded, err := loader.NewFileLoader().WithFS(policies.Bundle).WithRegoVersion(ast.RegoV1).
		Filtered([]string{"."}, func(_ string, info fs.FileInfo, _ int) bool {
			return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
		})
	if err != nil {
		t.Fatal(err)
	}
	opts := []func(*rego.Rego){rego.Query(query), rego.Store(inmem.NewFromObject(loaded.Documents))}
	for _, m := range loaded.ParsedModules() {
		opts = append(opts, rego.ParsedModule(m))
	}
	rs, err := rego.New(opts...).Eval(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("%s is undefined in the embedded bundle (%v)", query, rs)
	}
	return rs[0].Expressions[0].Value
}

func sortedStrings(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not a list", v)
	}
	out := make([]string, len(list))
	for i, x := range list {
		out[i], ok = x.(string)
		if !ok {
			t.Fatalf("%v is not a string", x)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestRegoConstantsMatch checks that policies/lib.rego spells every key the
// way this package does: renaming either side fails here.
func TestRegoConstantsMatch(t *testing.T) {
	keys := []struct{ rego, want string }{
		{"prefix", contract.Prefix},
		{"team_key", contract.TeamAnnotation},
		{"environment_key", contract.EnvironmentAnnotation},
		{"tier_key", contract.TierAnnotation},
		{"network_policy_key", contract.NetworkPolicyAnnotation},
		{"features_key", contract.FeaturesAnnotation},
		{"reprovision_key", contract.ReprovisionAnnotation},
		{"requested_by_key", contract.RequestedByAnnotation},
		{"workflow_key", contract.WorkflowAnnotation},
	}
	for _, k := range keys {
		t.Run(k.rego, func(t *testing.T) {
			if got := evalEmbedded(t, "data.nsprov.lib."+k.rego); got != k.want {
				t.Errorf("lib.rego says %s = %v, Go says %q", k.rego, got, k.want)
			}
		})
	}
	sets := []struct {
		rego string
		want []string
	}{
		{"request_keys", contract.RequestAnnotations()},
		{"mirrored_label_keys", contract.MirroredLabels()},
		{"known_annotation_keys", contract.KnownAnnotations()},
	}
	for _, s := range sets {
		t.Run(s.rego, func(t *testing.T) {
			if got := sortedStrings(t, evalEmbedded(t, "data.nsprov.lib."+s.rego)); !slices.Equal(got, sorted(s.want)) {
				t.Errorf("lib.rego says %s = %v, Go says %v", s.rego, got, sorted(s.want))
			}
		})
	}
	t.Run("every key has the prefix", func(t *testing.T) {
		for _, k := range append(contract.KnownAnnotations(), contract.NamespaceLabel, contract.PlanHashAnnotation, contract.RoleBindingLabel) {
			if !strings.HasPrefix(k, contract.Prefix) {
				t.Errorf("%s lacks the prefix %s", k, contract.Prefix)
			}
		}
	})
	t.Run("nsprov's identity is a manager", func(t *testing.T) {
		managers := sortedStrings(t, evalEmbedded(t, "data.config.install.manager_users"))
		if !slices.Contains(managers, contract.DefaultUsername) {
			t.Errorf("the policy's manager_users %v lack nsprov's identity %s", managers, contract.DefaultUsername)
		}
	})
}

// TestIdentity checks the groups nsprov evaluates as.
func TestIdentity(t *testing.T) {
	tests := []struct {
		user string
		want []string
	}{
		{contract.DefaultUsername, []string{"system:serviceaccounts", "system:serviceaccounts:nsprov-system", "system:authenticated"}},
		{"system:serviceaccount:platform:nsprov", []string{"system:serviceaccounts", "system:serviceaccounts:platform", "system:authenticated"}},
		{"nsprov-controller", []string{"system:authenticated"}},
		{"system:serviceaccount:too:many:parts", []string{"system:authenticated"}},
	}
	for _, tt := range tests {
		id := contract.As(tt.user)
		if id.Username != tt.user || !slices.Equal(id.Groups, tt.want) {
			t.Errorf("As(%q) = %+v, want groups %v", tt.user, id, tt.want)
		}
	}
}

// plan evaluates the embedded policy's plan of a namespace alice (team
// payments) requests with annotations, after its mutation.
func plan(t *testing.T, b *policy.Bundle, name string, annotations map[string]string) map[string]any {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	d, err := admission.Decide(context.Background(), b, &policy.Request{Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"}, Object: ns})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Plan == nil {
		t.Fatalf("%s denied or without a plan: %v", name, d.Violations)
	}
	return d.Plan
}

// ignoredPlanFields are fields of the embedded policy's plan that Plan
// leaves out on purpose.
var ignoredPlanFields = []string{
	"network_policy.description", // the mode's description in the catalogue, for people
}

// TestPlanDecodesARealPlan decodes plans of the embedded policy and checks
// that Plan holds every field the policy produces, with the same values.
func TestPlanDecodesARealPlan(t *testing.T) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string]string{
		"payments-dev":     {contract.EnvironmentAnnotation: "development", contract.FeaturesAnnotation: "monitoring-enhanced"},
		"payments-staging": {contract.EnvironmentAnnotation: "staging", contract.NetworkPolicyAnnotation: "team", contract.FeaturesAnnotation: "istio,monitoring-enhanced"},
		"payments-prod":    {contract.EnvironmentAnnotation: "production", contract.TierAnnotation: "large"},
		"open-dev":         {contract.EnvironmentAnnotation: "development", contract.NetworkPolicyAnnotation: "open", contract.FeaturesAnnotation: "istio"},
	}
	for name, annotations := range cases {
		t.Run(name, func(t *testing.T) {
			annotations[contract.TeamAnnotation] = "payments"
			raw := plan(t, b, name, annotations)
			p, err := contract.DecodePlan(raw)
			if err != nil {
				t.Fatal(err)
			}
			if p.Namespace != name || p.Team != "payments" || len(p.RoleBindings) == 0 || p.NetworkPolicy.AllowIngressFrom == nil {
				t.Errorf("decoded plan %+v", p)
			}
			// The typed plan, as JSON, is the policy's plan without the
			// ignored fields.
			typed := toJSON(t, p)
			want := toJSON(t, raw)
			for _, f := range ignoredPlanFields {
				parent, key, _ := strings.Cut(f, ".")
				delete(want[parent].(map[string]any), key)
			}
			if !reflect.DeepEqual(typed, want) {
				gotJSON, _ := json.Marshal(typed)
				wantJSON, _ := json.Marshal(want)
				t.Errorf("the typed plan differs from the policy's:\n got %s\nwant %s", gotJSON, wantJSON)
			}
			// And it decodes from its JSON the same.
			data, _ := json.Marshal(raw)
			again, err := contract.DecodePlanJSON(data)
			if err != nil || !reflect.DeepEqual(again, p) {
				t.Errorf("DecodePlanJSON = %+v, %v; want %+v", again, err, p)
			}
		})
	}
}

func toJSON(t *testing.T, v any) map[string]any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
