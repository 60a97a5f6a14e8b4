package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Plan is what the policy's data.nsprov.plan.plan (policies/plan.rego)
// produces for a requested namespace that passes validation: the concrete
// values the provisioning Workflow applies. Fields the policy adds beyond
// these are ignored.
type Plan struct {
	// Namespace is the namespace's name.
	Namespace string `json:"namespace"`
	// Team, Environment and Tier are the effective request values (defaults
	// applied).
	Team        string `json:"team"`
	Environment string `json:"environment"`
	Tier        string `json:"tier"`
	// MonthlyCostUSD is the tier's monthly cost (optional).
	MonthlyCostUSD float64 `json:"monthly_cost_usd"`
	// Quota is the ResourceQuota of the namespace.
	Quota Quota `json:"quota"`
	// ContainerDefaults and ContainerDefaultRequests are the LimitRange's
	// default limits and requests of a container.
	ContainerDefaults        Resources `json:"container_defaults"`
	ContainerDefaultRequests Resources `json:"container_default_requests"`
	// RoleBindings are the RoleBindings of the namespace; nsprov deletes the
	// ones it applied that the list no longer names.
	RoleBindings []RoleBinding `json:"role_bindings"`
	// NetworkPolicy says which traffic the namespace's NetworkPolicies allow.
	NetworkPolicy NetworkPolicy `json:"network_policy"`
	// Features are the requested features, sorted (optional).
	Features []string `json:"features"`
	// NamespaceLabels are labels of the namespace: a value sets the label,
	// nil removes it.
	NamespaceLabels map[string]*string `json:"namespace_labels"`
}

// Quota is the ResourceQuota of a tier, as Kubernetes quantities.
type Quota struct {
	CPU     string `json:"cpu"`
	Memory  string `json:"memory"`
	Storage string `json:"storage"`
}

// Resources are a CPU and a memory quantity.
type Resources struct {
	CPU    string `json:"cpu"`
	Memory string `json:"memory"`
}

// RoleBinding binds a group to a ClusterRole in the namespace. The fields
// are in the order of their JSON keys, so that a marshalled list is the same
// bytes as the policy's own JSON of it.
type RoleBinding struct {
	// ClusterRole is the ClusterRole bound.
	ClusterRole string `json:"cluster_role"`
	// Group is the group bound to it.
	Group string `json:"group"`
	// Name is the RoleBinding's name; it is also a label value
	// (RoleBindingLabel), so at most 63 characters.
	Name string `json:"name"`
}

// NetworkPolicy is the network policy mode a namespace asked for, with the
// namespaces its features open traffic from and to.
type NetworkPolicy struct {
	// Mode is isolated, team or open (optional).
	Mode string `json:"mode"`
	// DefaultDeny denies all traffic not allowed below.
	DefaultDeny bool `json:"default_deny"`
	// AllowDNS allows egress to DNS in kube-system.
	AllowDNS bool `json:"allow_dns"`
	// AllowSameNamespace allows traffic between the pods of the namespace.
	AllowSameNamespace bool `json:"allow_same_namespace"`
	// AllowTeam allows ingress from the namespaces of the same team.
	AllowTeam bool `json:"allow_team"`
	// AllowIngressFrom and AllowEgressTo are the namespaces the features
	// open traffic from and to; never nil in a decoded plan.
	AllowIngressFrom []string `json:"allow_ingress_from"`
	AllowEgressTo    []string `json:"allow_egress_to"`
}

// PlanError lists every field of a policy's plan that breaks the contract.
type PlanError struct {
	// Problems name the field and what is wrong with it, for example
	// "plan.quota.cpu must be a non-empty string, got <nil>".
	Problems []string
}

func (e *PlanError) Error() string { return strings.Join(e.Problems, "; ") }

// DecodePlanJSON decodes a plan from its JSON, as `opa eval` prints it.
func DecodePlanJSON(data []byte) (*Plan, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding the plan: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &PlanError{Problems: []string{fmt.Sprintf("plan must be an object, got %v", v)}}
	}
	return DecodePlan(m)
}

// DecodePlan turns the value of data.nsprov.plan.plan, as OPA returns it
// (JSON values: map[string]any, []any, string, bool, json.Number or
// float64, nil), into a Plan. A field that is missing, of the wrong type or
// not usable (an empty string, a RoleBinding name that is not a label value)
// is an error; the returned *PlanError names every such field.
func DecodePlan(m map[string]any) (*Plan, error) {
	d := &planDecoder{}
	p := &Plan{
		Namespace:   d.str(m, "namespace"),
		Team:        d.str(m, "team"),
		Environment: d.str(m, "environment"),
		Tier:        d.str(m, "tier"),
		Quota: Quota{
			CPU:     d.str(m, "quota", "cpu"),
			Memory:  d.str(m, "quota", "memory"),
			Storage: d.str(m, "quota", "storage"),
		},
		ContainerDefaults: Resources{
			CPU:    d.str(m, "container_defaults", "cpu"),
			Memory: d.str(m, "container_defaults", "memory"),
		},
		ContainerDefaultRequests: Resources{
			CPU:    d.str(m, "container_default_requests", "cpu"),
			Memory: d.str(m, "container_default_requests", "memory"),
		},
		RoleBindings: d.roleBindings(m),
		NetworkPolicy: NetworkPolicy{
			Mode:               d.optionalStr(m, "network_policy", "mode"),
			DefaultDeny:        d.boolean(m, "network_policy", "default_deny"),
			AllowDNS:           d.boolean(m, "network_policy", "allow_dns"),
			AllowSameNamespace: d.boolean(m, "network_policy", "allow_same_namespace"),
			AllowTeam:          d.boolean(m, "network_policy", "allow_team"),
			AllowIngressFrom:   d.strings(m, true, "network_policy", "allow_ingress_from"),
			AllowEgressTo:      d.strings(m, true, "network_policy", "allow_egress_to"),
		},
		MonthlyCostUSD:  d.optionalNumber(m, "monthly_cost_usd"),
		Features:        d.strings(m, false, "features"),
		NamespaceLabels: d.labels(m, "namespace_labels"),
	}
	if len(d.problems) > 0 {
		return nil, &PlanError{Problems: d.problems}
	}
	return p, nil
}

// planDecoder reads fields of a plan and collects what is wrong with them.
// Each reader takes the value at path (ok false when it is missing) and
// names the field by path in its problems.
type planDecoder struct {
	problems []string
}

func (d *planDecoder) fail(path []string, format string, args ...any) {
	d.problems = append(d.problems, "plan."+strings.Join(path, ".")+" "+fmt.Sprintf(format, args...))
}

// get is the value at path in m.
func get(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (d *planDecoder) str(m map[string]any, path ...string) string {
	v, _ := get(m, path...)
	return d.strValue(v, path)
}

func (d *planDecoder) strValue(v any, path []string) string {
	s, ok := v.(string)
	if !ok || s == "" {
		d.fail(path, "must be a non-empty string, got %v", v)
	}
	return s
}

func (d *planDecoder) optionalStr(m map[string]any, path ...string) string {
	v, _ := get(m, path...)
	if v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(path, "must be a string, got %v", v)
	}
	return s
}

func (d *planDecoder) boolean(m map[string]any, path ...string) bool {
	v, _ := get(m, path...)
	b, ok := v.(bool)
	if !ok {
		d.fail(path, "must be true or false, got %v", v)
	}
	return b
}

func (d *planDecoder) optionalNumber(m map[string]any, path ...string) float64 {
	v, _ := get(m, path...)
	switch n := v.(type) {
	case nil:
		return 0
	case float64:
		return n
	case json.Number:
		if f, err := n.Float64(); err == nil {
			return f
		}
	}
	d.fail(path, "must be a number, got %v", v)
	return 0
}

// strings reads a list of strings; a required list that is missing is an
// error, and a list that is there is never nil (its JSON is [] when empty).
func (d *planDecoder) strings(m map[string]any, required bool, path ...string) []string {
	v, _ := get(m, path...)
	if v == nil {
		if required {
			d.fail(path, "is missing")
		}
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		d.fail(path, "must be a list of strings, got %v", v)
		return nil
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			d.fail(indexed(path, i), "must be a string, got %v", item)
			continue
		}
		out = append(out, s)
	}
	return out
}

// labels reads a map of label values, each a string or null; it is never
// nil when the plan has it (its JSON is {} when empty).
func (d *planDecoder) labels(m map[string]any, path ...string) map[string]*string {
	v, _ := get(m, path...)
	if v == nil {
		d.fail(path, "is missing")
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		d.fail(path, "must be an object of label values, got %v", v)
		return nil
	}
	out := make(map[string]*string, len(obj))
	for k, item := range obj {
		switch s := item.(type) {
		case nil:
			out[k] = nil
		case string:
			out[k] = &s
		default:
			d.fail([]string{path[0] + "[" + strconv.Quote(k) + "]"}, "must be a string or null, got %v", item)
		}
	}
	return out
}

// roleBindings reads the plan's RoleBindings. Each name must also be a
// label value (at most 63 characters), since the RoleBinding carries it in
// RoleBindingLabel.
func (d *planDecoder) roleBindings(m map[string]any) []RoleBinding {
	path := []string{"role_bindings"}
	v, _ := get(m, path...)
	if v == nil {
		d.fail(path, "is missing")
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		d.fail(path, "must be a list of role bindings, got %v", v)
		return nil
	}
	out := make([]RoleBinding, 0, len(list))
	for i, item := range list {
		obj, _ := item.(map[string]any)
		at := indexed(path, i)
		name, _ := obj["name"].(string)
		if errs := validation.IsValidLabelValue(name); name == "" || len(errs) > 0 {
			d.fail(append(at, "name"), "%q must be a RoleBinding name of at most 63 characters (%s)", name, strings.Join(errs, "; "))
			continue
		}
		out = append(out, RoleBinding{
			Name:        name,
			ClusterRole: d.strValue(obj["cluster_role"], append(at, "cluster_role")),
			Group:       d.strValue(obj["group"], append(at, "group")),
		})
	}
	return out
}

// indexed is path with [i] appended to its last element.
func indexed(path []string, i int) []string {
	out := append([]string(nil), path...)
	out[len(out)-1] += "[" + strconv.Itoa(i) + "]"
	return out[:len(out):len(out)]
}
