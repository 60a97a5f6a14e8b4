package trigger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
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

// TemplateHash is a short hash of a WorkflowTemplate's content (its spec):
// a change of the steps re-provisions, a new resourceVersion alone (a label,
// a status write, a re-apply of the same chart) does not.
func TemplateHash(spec *wfv1.WorkflowSpec) string {
	b, err := json.Marshal(spec)
	if err != nil {
		panic(fmt.Sprintf("marshalling a WorkflowTemplate spec: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:8]
}

// RunKey names what one provisioning run provisions: the plan's hash, the
// template's content hash and, when set, a hash of nsprov.io/reprovision,
// joined by dots. The Namespace records it (contract.ProvisionedPlanAnnotation);
// a namespace whose key is unchanged is not provisioned again.
func RunKey(planHash, templateHash, reprovision string) string {
	key := planHash + "." + templateHash
	if reprovision != "" {
		sum := sha256.Sum256([]byte(reprovision))
		key += "." + hex.EncodeToString(sum[:])[:6]
	}
	return key
}

// PlanHashOf is the plan hash part of a run key.
func PlanHashOf(key string) string {
	h, _, _ := strings.Cut(key, ".")
	return h
}

// WorkflowName is derived from the namespace UID, the run key and the
// attempt, so reconciling twice, a restart or two replicas racing all arrive
// at the same name and the API server refuses the duplicate; a new plan, a
// changed template or a new nsprov.io/reprovision get a new name, and so does
// each retry of a failed run (-r2, -r3, ...).
func WorkflowName(ns *corev1.Namespace, key string, attempt int) string {
	uid := strings.ReplaceAll(string(ns.UID), "-", "")
	if len(uid) > 12 {
		uid = uid[:12]
	}
	name := "nsprov-" + uid + "-" + strings.ReplaceAll(key, ".", "-")
	if attempt > 1 {
		name += "-r" + strconv.Itoa(attempt)
	}
	return name
}

// AttemptOf is the attempt a Workflow name of WorkflowName stands for (1
// when it has no -rN suffix).
func AttemptOf(name string) int {
	i := strings.LastIndex(name, "-r")
	if i < 0 {
		return 1
	}
	n, err := strconv.Atoi(name[i+2:])
	if err != nil || n < 2 {
		return 1
	}
	return n
}

// NewWorkflow builds the Workflow that provisions ns with plan, as attempt
// attempt of the run key. It is owned by the Namespace: deleting the
// namespace garbage-collects its Workflows.
func NewWorkflow(ns *corev1.Namespace, plan *contract.Plan, key string, attempt int, o Options) *wfv1.Workflow {
	params := Parameters(plan)
	if o.TemplateName == "" {
		o.TemplateName = TemplateName
	}
	hash := Hash(params)
	return &wfv1.Workflow{
		TypeMeta: metav1.TypeMeta{APIVersion: wfv1.SchemeGroupVersion.String(), Kind: workflow.WorkflowKind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        WorkflowName(ns, key, attempt),
			Namespace:   o.ArgoNamespace,
			Labels:      map[string]string{contract.NamespaceLabel: ns.Name, contract.ManagedByLabel: contract.ManagedBy},
			Annotations: map[string]string{contract.PlanHashAnnotation: hash, contract.ProvisionedPlanAnnotation: key},
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
