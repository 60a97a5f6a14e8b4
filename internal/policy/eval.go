package policy

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/rego"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Mutation is what the policy sets on a Namespace: a nil value removes the key.
type Mutation struct {
	Annotations map[string]*string `json:"annotations"`
	Labels      map[string]*string `json:"labels"`
}

// Violation is one violated rule.
type Violation struct {
	// Rule is the rule ID, for example team-required.
	Rule string `json:"rule"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
}

// String formats a violation as "rule-id: message".
func (v Violation) String() string { return v.Rule + ": " + v.Message }

// Validation is the validating decision: allowed when there are no violations.
type Validation struct {
	Violations []Violation `json:"violations"`
	Warnings   []string    `json:"warnings"`
}

// Allowed reports whether no rule is violated.
func (v *Validation) Allowed() bool { return len(v.Violations) == 0 }

// Message lists every violation as "rule-id: message", separated by "; ".
func (v *Validation) Message() string {
	parts := make([]string, len(v.Violations))
	for i, x := range v.Violations {
		parts[i] = x.String()
	}
	return strings.Join(parts, "; ")
}

// Rules lists the violated rule IDs.
func (v *Validation) Rules() []string {
	rules := make([]string, len(v.Violations))
	for i, x := range v.Violations {
		rules[i] = x.Rule
	}
	return rules
}

// Mutate evaluates the mutation for a request. The result may be shared with
// other callers and must not be modified.
func (b *Bundle) Mutate(ctx context.Context, req *Request) (*Mutation, error) {
	return cached(b.mutations, req, func() (*Mutation, error) { return b.mutate(ctx, req) })
}

func (b *Bundle) mutate(ctx context.Context, req *Request) (*Mutation, error) {
	rs, err := b.mutation.Eval(ctx, rego.EvalParsedInput(req.Value()))
	if err != nil {
		return nil, fmt.Errorf("evaluating %s: %w", MutationQuery, err)
	}
	m := &Mutation{}
	if len(rs) == 0 {
		return m, nil
	}
	res, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is %T, want an object with annotations and labels", MutationQuery, rs[0].Expressions[0].Value)
	}
	if m.Annotations, err = stringPtrMap(res, "annotations"); err != nil {
		return nil, err
	}
	if m.Labels, err = stringPtrMap(res, "labels"); err != nil {
		return nil, err
	}
	return m, nil
}

func stringPtrMap(res map[string]any, key string) (map[string]*string, error) {
	raw, ok := res[key]
	if !ok || raw == nil {
		return nil, nil
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s.%s is %T, want an object of strings or nulls", MutationQuery, key, raw)
	}
	out := make(map[string]*string, len(obj))
	for k, v := range obj {
		switch v := v.(type) {
		case nil:
			out[k] = nil
		case string:
			out[k] = &v
		default:
			return nil, fmt.Errorf("%s.%s[%q] is %T, want a string or null", MutationQuery, key, k, v)
		}
	}
	return out, nil
}

// Validate evaluates deny and warn for a request. The result may be shared
// with other callers and must not be modified.
func (b *Bundle) Validate(ctx context.Context, req *Request) (*Validation, error) {
	return cached(b.validations, req, func() (*Validation, error) { return b.validate(ctx, req) })
}

func (b *Bundle) validate(ctx context.Context, req *Request) (*Validation, error) {
	rs, err := b.validation.Eval(ctx, rego.EvalParsedInput(req.Value()))
	if err != nil {
		return nil, fmt.Errorf("evaluating %s and %s: %w", DenyQuery, WarnQuery, err)
	}
	v := &Validation{}
	if len(rs) == 0 {
		return v, nil
	}
	if deny, ok := rs[0].Bindings["deny"].([]any); ok {
		v.Violations = make([]Violation, 0, len(deny))
		for _, d := range deny {
			obj, ok := d.(map[string]any)
			rule, _ := obj["rule"].(string)
			msg, _ := obj["message"].(string)
			if !ok || rule == "" {
				return nil, fmt.Errorf("%s holds %v, want objects with a rule and a message", DenyQuery, d)
			}
			v.Violations = append(v.Violations, Violation{Rule: rule, Message: msg})
		}
		sort.Slice(v.Violations, func(i, j int) bool {
			if v.Violations[i].Rule != v.Violations[j].Rule {
				return v.Violations[i].Rule < v.Violations[j].Rule
			}
			return v.Violations[i].Message < v.Violations[j].Message
		})
	}
	if warn, ok := rs[0].Bindings["warn"].([]any); ok {
		v.Warnings = make([]string, 0, len(warn))
		for _, w := range warn {
			s, ok := w.(string)
			if !ok {
				return nil, fmt.Errorf("%s holds %v, want strings", WarnQuery, w)
			}
			v.Warnings = append(v.Warnings, s)
		}
	}
	return v, nil
}

// Plan evaluates the provisioning plan; it returns nil when the policy defines
// none for the request (the namespace is not requested, or it is denied). The
// result may be shared with other callers and must not be modified.
func (b *Bundle) Plan(ctx context.Context, req *Request) (map[string]any, error) {
	return cached(b.plans, req, func() (map[string]any, error) { return b.evalPlan(ctx, req) })
}

func (b *Bundle) evalPlan(ctx context.Context, req *Request) (map[string]any, error) {
	rs, err := b.plan.Eval(ctx, rego.EvalParsedInput(req.Value()))
	if err != nil {
		return nil, fmt.Errorf("evaluating %s: %w", PlanQuery, err)
	}
	if len(rs) == 0 {
		return nil, nil
	}
	plan, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is %T, want an object", PlanQuery, rs[0].Expressions[0].Value)
	}
	return plan, nil
}

// Patch turns a mutation of ns into RFC 6902 operations and applies them to
// ns, which the caller owns. Keys that already hold the wanted value yield no
// operation.
func (m *Mutation) Patch(ns *corev1.Namespace) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	ops = patchMap(ops, "/metadata/annotations", &ns.Annotations, m.Annotations)
	ops = patchMap(ops, "/metadata/labels", &ns.Labels, m.Labels)
	return ops
}

func patchMap(ops []jsonpatch.JsonPatchOperation, path string, have *map[string]string, want map[string]*string) []jsonpatch.JsonPatchOperation {
	if *have == nil {
		// No map yet: one operation adds it with every wanted key.
		added := map[string]string{}
		for k, v := range want {
			if v != nil {
				added[k] = *v
			}
		}
		if len(added) == 0 {
			return ops
		}
		*have = added
		return append(ops, jsonpatch.NewOperation("add", path, maps.Clone(added)))
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := want[k]
		cur, exists := (*have)[k]
		switch {
		case v == nil && exists:
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+escapePointer(k), nil))
			delete(*have, k)
		case v == nil, exists && cur == *v:
		default:
			op := "add"
			if exists {
				op = "replace"
			}
			(*have)[k] = *v
			ops = append(ops, jsonpatch.NewOperation(op, path+"/"+escapePointer(k), *v))
		}
	}
	return ops
}

// escapePointer escapes a map key for a JSON pointer (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// Decision is a full offline decision: mutation, then validation of the
// mutated object, then the plan, as the webhooks and the controller would
// compute them.
type Decision struct {
	Allowed    bool                           `json:"allowed"`
	Violations []Violation                    `json:"violations"`
	Warnings   []string                       `json:"warnings"`
	Patch      []jsonpatch.JsonPatchOperation `json:"patch"`
	Object     *corev1.Namespace              `json:"object"`
	Plan       map[string]any                 `json:"plan"`
}

// Decide mutates req.Object (a copy is made), validates the result and, when
// allowed, evaluates the plan.
func (b *Bundle) Decide(ctx context.Context, req *Request) (*Decision, error) {
	r := *req
	r.Object = req.Object.DeepCopy()
	m, err := b.Mutate(ctx, &r)
	if err != nil {
		return nil, err
	}
	d := &Decision{Patch: m.Patch(r.Object), Object: r.Object}
	v, err := b.Validate(ctx, &r)
	if err != nil {
		return nil, err
	}
	d.Allowed, d.Violations, d.Warnings = v.Allowed(), v.Violations, v.Warnings
	if d.Allowed {
		if d.Plan, err = b.Plan(ctx, &r); err != nil {
			return nil, err
		}
	}
	if d.Violations == nil {
		d.Violations = []Violation{}
	}
	if d.Warnings == nil {
		d.Warnings = []string{}
	}
	if d.Patch == nil {
		d.Patch = []jsonpatch.JsonPatchOperation{}
	}
	return d, nil
}
