package trigger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/argoproj/argo-workflows/v3/pkg/apis/workflow"
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// Defaults of the Argo side.
const (
	// TemplateName is the WorkflowTemplate the chart installs.
	TemplateName = "nsprov-provision"
	// NamespaceLabel on a Workflow names the Namespace it provisions.
	NamespaceLabel = "nsprov.io/namespace"
	// PlanHashAnnotation on a Workflow is the hash of its arguments.
	PlanHashAnnotation = "nsprov.io/plan-hash"
	// ManagedByLabel marks what nsprov creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// RoleBindingLabel on a RoleBinding nsprov applies holds its name, so a
	// label selector can find the ones the plan no longer names.
	RoleBindingLabel = "nsprov.io/role-binding"
)

// Parameters turns a policy plan (data.nsprov.plan.plan) into the arguments
// of the nsprov-provision WorkflowTemplate. A plan that lacks a field the
// template needs is an error naming the field, so an edited policy that
// breaks the contract is reported instead of provisioning half a namespace.
func Parameters(plan map[string]any) ([]wfv1.Parameter, error) {
	p := planReader{plan: plan}
	params := map[string]string{
		"namespace":              p.str("namespace"),
		"team":                   p.str("team"),
		"environment":            p.str("environment"),
		"tier":                   p.str("tier"),
		"quota-cpu":              p.str("quota", "cpu"),
		"quota-memory":           p.str("quota", "memory"),
		"quota-storage":          p.str("quota", "storage"),
		"default-cpu":            p.str("container_defaults", "cpu"),
		"default-memory":         p.str("container_defaults", "memory"),
		"default-request-cpu":    p.str("container_default_requests", "cpu"),
		"default-request-memory": p.str("container_default_requests", "memory"),
		"role-bindings":          p.json("role_bindings"),
		"role-binding-selector":  p.roleBindingSelector(),
		"default-deny":           p.boolean("network_policy", "default_deny"),
		"allow-dns":              p.boolean("network_policy", "allow_dns"),
		"allow-same-namespace":   p.boolean("network_policy", "allow_same_namespace"),
		"allow-team":             p.boolean("network_policy", "allow_team"),
		"ingress-from":           p.json("network_policy", "allow_ingress_from"),
		"egress-to":              p.json("network_policy", "allow_egress_to"),
		"namespace-labels":       p.json("namespace_labels"),
	}
	params["allow-feature-ingress"] = fmt.Sprint(params["ingress-from"] != "[]" && params["ingress-from"] != "")
	params["allow-feature-egress"] = fmt.Sprint(params["egress-to"] != "[]" && params["egress-to"] != "")
	if len(p.errs) > 0 {
		return nil, fmt.Errorf("the policy's plan cannot drive %s: %s", TemplateName, strings.Join(p.errs, "; "))
	}
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]wfv1.Parameter, len(names))
	for i, n := range names {
		out[i] = wfv1.Parameter{Name: n, Value: wfv1.AnyStringPtr(params[n])}
	}
	return out, nil
}

type planReader struct {
	plan map[string]any
	errs []string
}

func (p *planReader) get(path ...string) (any, bool) {
	var cur any = p.plan
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (p *planReader) str(path ...string) string {
	v, ok := p.get(path...)
	s, isStr := v.(string)
	if !ok || !isStr || s == "" {
		p.errs = append(p.errs, fmt.Sprintf("plan.%s must be a non-empty string, got %v", strings.Join(path, "."), v))
	}
	return s
}

func (p *planReader) boolean(path ...string) string {
	v, ok := p.get(path...)
	b, isBool := v.(bool)
	if !ok || !isBool {
		p.errs = append(p.errs, fmt.Sprintf("plan.%s must be true or false, got %v", strings.Join(path, "."), v))
	}
	return fmt.Sprint(b)
}

// roleBindingSelector selects the RoleBindings nsprov applied that the
// plan's role_bindings no longer name: the prune step of the template
// deletes them. Each name must also be a label value (at most 63
// characters), since the RoleBinding carries it in RoleBindingLabel.
func (p *planReader) roleBindingSelector() string {
	v, _ := p.get("role_bindings")
	list, ok := v.([]any)
	if !ok {
		return "" // p.json reports it
	}
	names := make([]string, 0, len(list))
	for i, item := range list {
		m, _ := item.(map[string]any)
		name, _ := m["name"].(string)
		if errs := validation.IsValidLabelValue(name); name == "" || len(errs) > 0 {
			p.errs = append(p.errs, fmt.Sprintf("plan.role_bindings[%d].name %q must be a RoleBinding name of at most 63 characters (%s)", i, name, strings.Join(errs, "; ")))
			continue
		}
		names = append(names, name)
	}
	selector := ManagedByLabel + "=nsprov"
	if len(names) > 0 {
		sort.Strings(names)
		selector += "," + RoleBindingLabel + " notin (" + strings.Join(names, ",") + ")"
	}
	return selector
}

func (p *planReader) json(path ...string) string {
	v, ok := p.get(path...)
	if !ok || v == nil {
		p.errs = append(p.errs, fmt.Sprintf("plan.%s is missing", strings.Join(path, ".")))
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		p.errs = append(p.errs, fmt.Sprintf("plan.%s: %v", strings.Join(path, "."), err))
	}
	return string(b)
}

// Options say where Workflows go.
type Options struct {
	// ArgoNamespace is where the WorkflowTemplate lives and Workflows are created.
	ArgoNamespace string
	// TemplateName is the WorkflowTemplate to run (default nsprov-provision).
	TemplateName string
}

// Hash is a short, stable hash of workflow arguments.
func Hash(params []wfv1.Parameter) string {
	h := sha256.New()
	for _, p := range params {
		fmt.Fprintf(h, "%s=%d:%s\n", p.Name, len(p.Value.String()), p.Value.String())
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// WorkflowName is derived from the namespace UID and the plan's hash, so
// reconciling twice, a restart or two replicas racing all arrive at the same
// name and the API server refuses the duplicate; a new plan gets a new name.
// reprovision, when not empty, is mixed in: a new value runs the same plan again.
func WorkflowName(ns *corev1.Namespace, planHash, reprovision string) string {
	uid := strings.ReplaceAll(string(ns.UID), "-", "")
	if len(uid) > 12 {
		uid = uid[:12]
	}
	name := "nsprov-" + uid + "-" + planHash
	if reprovision != "" {
		sum := sha256.Sum256([]byte(reprovision))
		name += "-" + hex.EncodeToString(sum[:])[:6]
	}
	return name
}

// NewWorkflow builds the Workflow that provisions ns with plan. It is owned by
// the Namespace: deleting the namespace garbage-collects its Workflows and
// stops a running one.
func NewWorkflow(ns *corev1.Namespace, plan map[string]any, reprovision string, o Options) (*wfv1.Workflow, error) {
	params, err := Parameters(plan)
	if err != nil {
		return nil, err
	}
	if o.TemplateName == "" {
		o.TemplateName = TemplateName
	}
	hash := Hash(params)
	return &wfv1.Workflow{
		TypeMeta: metav1.TypeMeta{APIVersion: wfv1.SchemeGroupVersion.String(), Kind: workflow.WorkflowKind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        WorkflowName(ns, hash, reprovision),
			Namespace:   o.ArgoNamespace,
			Labels:      map[string]string{NamespaceLabel: ns.Name, ManagedByLabel: "nsprov"},
			Annotations: map[string]string{PlanHashAnnotation: hash},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "v1",
				Kind:               "Namespace",
				Name:               ns.Name,
				UID:                ns.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: wfv1.WorkflowSpec{
			WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: o.TemplateName},
			Arguments:           wfv1.Arguments{Parameters: params},
		},
	}, nil
}
