package trigger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/workflow/validate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
)

// templateFile is the WorkflowTemplate spec the chart installs.
var templateFile = filepath.Join("..", "..", "charts", "nsprov", "files", "provision-workflow.yaml")

func loadTemplate(t *testing.T) *wfv1.WorkflowTemplate {
	t.Helper()
	data, err := os.ReadFile(templateFile)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: TemplateName, Namespace: "argo"}}
	if err := yaml.UnmarshalStrict(data, &tmpl.Spec); err != nil {
		t.Fatalf("%s is not a WorkflowTemplate spec: %v", templateFile, err)
	}
	return tmpl
}

type templateGetter struct{ tmpl *wfv1.WorkflowTemplate }

func (g templateGetter) Get(name string) (*wfv1.WorkflowTemplate, error) {
	if name != g.tmpl.Name {
		return nil, fmt.Errorf("workflowtemplate %q not found", name)
	}
	return g.tmpl, nil
}

type noClusterTemplates struct{}

func (noClusterTemplates) Get(name string) (*wfv1.ClusterWorkflowTemplate, error) {
	return nil, fmt.Errorf("clusterworkflowtemplate %q not found", name)
}

// requested evaluates the embedded policy's plan for a namespace alice
// requests with the given annotations (team payments), after its mutation.
func requested(t *testing.T, name string, annotations map[string]string) (*corev1.Namespace, *contract.Plan) {
	t.Helper()
	ns, raw := requestedRaw(t, name, annotations)
	plan, err := DecodePlan(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ns, plan
}

// requestedRaw is requested with the plan as the policy returns it.
func requestedRaw(t *testing.T, name string, annotations map[string]string) (*corev1.Namespace, map[string]any) {
	t.Helper()
	ctx := context.Background()
	b, err := policy.LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := map[string]string{contract.TeamAnnotation: "payments"}
	for k, v := range annotations {
		a[k] = v
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: "6f1c2a7e-4b1d-4c55-9a3e-0c2b7d9e8f10", Annotations: a}}
	d, err := admission.Decide(ctx, b, &policy.Request{Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"}, Object: ns})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Plan == nil {
		t.Fatalf("%s denied or without a plan: %v", name, d.Violations)
	}
	return d.Object, d.Plan
}

// TestTemplatePassesArgoValidation runs Argo's own validation on the
// template and on the Workflow the controller creates for several plans.
func TestTemplatePassesArgoValidation(t *testing.T) {
	tmpl := loadTemplate(t)
	getter := templateGetter{tmpl}
	if err := validate.ValidateWorkflowTemplate(getter, noClusterTemplates{}, tmpl, nil, validate.ValidateOpts{}); err != nil {
		t.Fatalf("Argo rejects %s: %v", templateFile, err)
	}
	declared := map[string]bool{}
	for _, p := range tmpl.Spec.Arguments.Parameters {
		declared[p.Name] = true
	}
	cases := map[string]map[string]string{
		"payments-dev":     {contract.EnvironmentAnnotation: "development"},
		"payments-staging": {contract.EnvironmentAnnotation: "staging", contract.NetworkPolicyAnnotation: "team", contract.FeaturesAnnotation: "istio,monitoring-enhanced"},
		"payments-prod":    {contract.EnvironmentAnnotation: "production", contract.TierAnnotation: "large", contract.FeaturesAnnotation: "monitoring-enhanced"},
		"open-dev":         {contract.EnvironmentAnnotation: "development", contract.NetworkPolicyAnnotation: "open", contract.FeaturesAnnotation: "istio"},
	}
	for name, annotations := range cases {
		t.Run(name, func(t *testing.T) {
			ns, plan := requested(t, name, annotations)
			wf := NewWorkflow(ns, plan, keyOf(plan, ""), 1, Options{ArgoNamespace: "argo"})
			if err := validate.ValidateWorkflow(getter, noClusterTemplates{}, wf, nil, validate.ValidateOpts{Submit: true}); err != nil {
				t.Fatalf("Argo rejects the workflow for %s: %v", name, err)
			}
			var given []string
			for _, p := range wf.Spec.Arguments.Parameters {
				given = append(given, p.Name)
				if !declared[p.Name] {
					t.Errorf("argument %s is not declared by the template", p.Name)
				}
			}
			for p := range declared {
				if !slices.Contains(given, p) {
					t.Errorf("the template's parameter %s gets no argument", p)
				}
			}
		})
	}
}

func TestWorkflowIdentity(t *testing.T) {
	ns, plan := requested(t, "payments-dev", map[string]string{contract.EnvironmentAnnotation: "development"})
	wf := NewWorkflow(ns, plan, keyOf(plan, ""), 1, Options{ArgoNamespace: "argo"})
	if errs := validation.IsDNS1123Label(wf.Name); len(errs) > 0 {
		t.Errorf("workflow name %q is not a DNS label: %v", wf.Name, errs)
	}
	if wf.Namespace != "argo" || wf.Labels[contract.NamespaceLabel] != "payments-dev" || wf.Spec.WorkflowTemplateRef.Name != TemplateName {
		t.Errorf("workflow %s/%s labels %v template %v", wf.Namespace, wf.Name, wf.Labels, wf.Spec.WorkflowTemplateRef)
	}
	owner := wf.OwnerReferences
	if len(owner) != 1 || owner[0].Kind != "Namespace" || owner[0].UID != ns.UID || owner[0].Controller == nil || !*owner[0].Controller {
		t.Errorf("owner references = %+v, want the Namespace as controller", owner)
	}

	again := NewWorkflow(ns, plan, keyOf(plan, ""), 1, Options{ArgoNamespace: "argo"})
	if again.Name != wf.Name {
		t.Errorf("the same plan gave two names: %s and %s", wf.Name, again.Name)
	}
	_, medium := requested(t, "payments-dev", map[string]string{contract.EnvironmentAnnotation: "development", contract.TierAnnotation: "medium"})
	changed := NewWorkflow(ns, medium, keyOf(medium, ""), 1, Options{ArgoNamespace: "argo"})
	if changed.Name == wf.Name {
		t.Errorf("a changed plan kept the name %s", wf.Name)
	}
	again = NewWorkflow(ns, plan, keyOf(plan, "2026-11-26T10:00"), 1, Options{ArgoNamespace: "argo"})
	if again.Name == wf.Name || !strings.HasPrefix(again.Name, wf.Name) {
		t.Errorf("reprovision name %s, want a new name that extends %s", again.Name, wf.Name)
	}
	newTemplate := NewWorkflow(ns, plan, RunKey(Hash(Parameters(plan)), "ffffffff", ""), 1, Options{ArgoNamespace: "argo"})
	if newTemplate.Name == wf.Name {
		t.Errorf("a changed template kept the name %s", wf.Name)
	}
	retry := NewWorkflow(ns, plan, keyOf(plan, ""), 3, Options{ArgoNamespace: "argo"})
	if retry.Name != wf.Name+"-r3" || AttemptOf(retry.Name) != 3 || AttemptOf(wf.Name) != 1 {
		t.Errorf("retry name %s (attempt %d), want %s-r3 (attempt 3; first attempt %d)", retry.Name, AttemptOf(retry.Name), wf.Name, AttemptOf(wf.Name))
	}
	if errs := validation.IsDNS1123Label(retry.Name); len(errs) > 0 {
		t.Errorf("retry name %q is not a DNS label: %v", retry.Name, errs)
	}
	other := ns.DeepCopy()
	other.UID = "0a0a0a0a-0000-0000-0000-000000000000"
	if w := NewWorkflow(other, plan, keyOf(plan, ""), 1, Options{ArgoNamespace: "argo"}); w.Name == wf.Name {
		t.Errorf("two namespaces share the workflow name %s", wf.Name)
	}
}

func TestParametersFromAnIncompletePlan(t *testing.T) {
	_, plan := requestedRaw(t, "payments-dev", map[string]string{contract.EnvironmentAnnotation: "development"})
	delete(plan, "quota")
	plan["network_policy"].(map[string]any)["default_deny"] = "yes"
	_, err := DecodePlan(plan)
	if err == nil {
		t.Fatal("a plan without a quota was accepted")
	}
	for _, want := range []string{"the policy's plan cannot drive nsprov-provision: ", "plan.quota.cpu must be a non-empty string", "plan.network_policy.default_deny must be true or false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestParameterValues(t *testing.T) {
	_, plan := requested(t, "payments-staging", map[string]string{contract.EnvironmentAnnotation: "staging", contract.FeaturesAnnotation: "istio"})
	params := Parameters(plan)
	got := map[string]string{}
	for _, p := range params {
		got[p.Name] = p.Value.String()
	}
	want := map[string]string{
		"namespace": "payments-staging", "team": "payments", "tier": "medium",
		"quota-cpu": "4", "quota-memory": "8Gi", "quota-storage": "50Gi",
		"default-deny": "true", "allow-team": "false",
		"role-bindings":         `[{"cluster_role":"edit","group":"team-payments","name":"nsprov-team-edit"}]`,
		"role-binding-selector": "app.kubernetes.io/managed-by=nsprov,nsprov.io/role-binding notin (nsprov-team-edit)",
		"ingress-from":          `["istio-system"]`,
		"egress-to":             `["istio-system"]`,
		"namespace-labels":      `{"istio-injection":"enabled","monitoring.nsprov.io/enhanced":null}`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestRoleBindingSelector(t *testing.T) {
	_, plan := requestedRaw(t, "payments-dev", map[string]string{contract.EnvironmentAnnotation: "development"})
	selector := func(bindings []any) (string, error) {
		plan["role_bindings"] = bindings
		p, err := DecodePlan(plan)
		if err != nil {
			return "", err
		}
		for _, param := range Parameters(p) {
			if param.Name == "role-binding-selector" {
				return param.Value.String(), nil
			}
		}
		return "", errors.New("no role-binding-selector")
	}
	binding := func(name string) any {
		return map[string]any{"name": name, "cluster_role": "edit", "group": "team-payments"}
	}
	got, err := selector([]any{binding("team-view"), binding("team-edit")})
	if want := "app.kubernetes.io/managed-by=nsprov,nsprov.io/role-binding notin (team-edit,team-view)"; err != nil || got != want {
		t.Errorf("two bindings: %q, %v; want %q", got, err, want)
	}
	// Every RoleBinding nsprov applied goes when the plan names none.
	if got, err := selector([]any{}); err != nil || got != "app.kubernetes.io/managed-by=nsprov" {
		t.Errorf("no bindings: %q, %v", got, err)
	}
	long := strings.Repeat("x", 64)
	if _, err := selector([]any{binding(long)}); err == nil || !strings.Contains(err.Error(), "plan.role_bindings[0].name \""+long+"\" must be a RoleBinding name of at most 63 characters") {
		t.Errorf("a 64-character name: %v", err)
	}
	if _, err := selector([]any{map[string]any{"cluster_role": "edit"}}); err == nil || !strings.Contains(err.Error(), "plan.role_bindings[0].name") {
		t.Errorf("a binding without a name: %v", err)
	}
}

// TestEmptyListsAreJSONLists checks that a plan built in Go without its
// lists and labels still gives the template JSON lists and objects.
func TestEmptyListsAreJSONLists(t *testing.T) {
	got := map[string]string{}
	for _, p := range Parameters(&contract.Plan{}) {
		got[p.Name] = p.Value.String()
	}
	want := map[string]string{
		"role-bindings": "[]", "ingress-from": "[]", "egress-to": "[]", "namespace-labels": "{}",
		"allow-feature-ingress": "false", "allow-feature-egress": "false", "role-binding-selector": "app.kubernetes.io/managed-by=nsprov",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// keyOf is the run key of plan with a fixed template hash.
func keyOf(plan *contract.Plan, reprovision string) string {
	return RunKey(Hash(Parameters(plan)), "0a1b2c3d", reprovision)
}

func TestTemplateHashIsContent(t *testing.T) {
	a := &wfv1.WorkflowSpec{Entrypoint: "provision"}
	b := a.DeepCopy()
	if TemplateHash(a) != TemplateHash(b) {
		t.Errorf("the same content gave two hashes")
	}
	b.Entrypoint = "other"
	if TemplateHash(a) == TemplateHash(b) {
		t.Errorf("changed content kept the hash %s", TemplateHash(a))
	}
}
