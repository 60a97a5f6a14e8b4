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
	"k8s.io/utils/ptr"

	"github.com/nsprov/nsprov/internal/contract"
)

// TemplateName is the WorkflowTemplate the chart installs.
const TemplateName = "nsprov-provision"

// DecodePlan turns the policy's plan into the typed plan the Workflow is
// built from. A plan that lacks a field the template needs is an error
// naming the field, so an edited policy that breaks the contract is reported
// instead of provisioning half a namespace.
func DecodePlan(raw map[string]any) (*contract.Plan, error) {
	plan, err := contract.DecodePlan(raw)
	if err != nil {
		return nil, fmt.Errorf("the policy's plan cannot drive %s: %w", TemplateName, err)
	}
	return plan, nil
}

// Parameters turns a plan into the arguments of the nsprov-provision
// WorkflowTemplate, sorted by name. The values are the plan's, the lists and
// objects as JSON; they, and so the plan hash in the Workflow's name, are the
// same bytes for the same plan.
func Parameters(plan *contract.Plan) []wfv1.Parameter {
	np := plan.NetworkPolicy
	params := map[string]string{
		"namespace":              plan.Namespace,
		"team":                   plan.Team,
		"environment":            plan.Environment,
		"tier":                   plan.Tier,
		"quota-cpu":              plan.Quota.CPU,
		"quota-memory":           plan.Quota.Memory,
		"quota-storage":          plan.Quota.Storage,
		"default-cpu":            plan.ContainerDefaults.CPU,
		"default-memory":         plan.ContainerDefaults.Memory,
		"default-request-cpu":    plan.ContainerDefaultRequests.CPU,
		"default-request-memory": plan.ContainerDefaultRequests.Memory,
		"role-bindings":          toJSON(nonNil(plan.RoleBindings)),
		"role-binding-selector":  roleBindingSelector(plan.RoleBindings),
		"default-deny":           fmt.Sprint(np.DefaultDeny),
		"allow-dns":              fmt.Sprint(np.AllowDNS),
		"allow-same-namespace":   fmt.Sprint(np.AllowSameNamespace),
		"allow-team":             fmt.Sprint(np.AllowTeam),
		"ingress-from":           toJSON(nonNil(np.AllowIngressFrom)),
		"egress-to":              toJSON(nonNil(np.AllowEgressTo)),
		"allow-feature-ingress":  fmt.Sprint(len(np.AllowIngressFrom) > 0),
		"allow-feature-egress":   fmt.Sprint(len(np.AllowEgressTo) > 0),
		"namespace-labels":       toJSON(nonNilLabels(plan.NamespaceLabels)),
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
	return out
}

// roleBindingSelector selects the RoleBindings nsprov applied that the
// plan's role bindings no longer name: the prune step of the template
// deletes them.
func roleBindingSelector(bindings []contract.RoleBinding) string {
	selector := contract.ManagedByLabel + "=" + contract.ManagedBy
	if len(bindings) == 0 {
		return selector
	}
	names := make([]string, len(bindings))
	for i, b := range bindings {
		names[i] = b.Name
	}
	sort.Strings(names)
	return selector + "," + contract.RoleBindingLabel + " notin (" + strings.Join(names, ",") + ")"
}

// toJSON is v as JSON; v is one of the plan's lists or maps, which always
// marshal.
func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshalling %T: %v", v, err))
	}
	return string(b)
}

// nonNil makes an empty list marshal as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// nonNilLabels makes an empty map marshal as {} rather than null.
func nonNilLabels(m map[string]*string) map[string]*string {
	if m == nil {
		return map[string]*string{}
	}
	return m
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
func NewWorkflow(ns *corev1.Namespace, plan *contract.Plan, reprovision string, o Options) *wfv1.Workflow {
	params := Parameters(plan)
	if o.TemplateName == "" {
		o.TemplateName = TemplateName
	}
	hash := Hash(params)
	return &wfv1.Workflow{
		TypeMeta: metav1.TypeMeta{APIVersion: wfv1.SchemeGroupVersion.String(), Kind: workflow.WorkflowKind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        WorkflowName(ns, hash, reprovision),
			Namespace:   o.ArgoNamespace,
			Labels:      map[string]string{contract.NamespaceLabel: ns.Name, contract.ManagedByLabel: contract.ManagedBy},
			Annotations: map[string]string{contract.PlanHashAnnotation: hash},
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
	}
}
