package policy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/nsprov/nsprov/internal/policy/compiled"
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

// query is one of the bundle's queries with the evaluator that serves it.
type query struct {
	text string
	// topdown is OPA's evaluator of the query, always prepared: it serves
	// when the bundle cannot be compiled or is told to use topdown.
	topdown *topdownQuery
	eval    Evaluator
}

// first evaluates the query on input and returns its first result, an object
// of the query's variables; nil when it has none.
func (q *query) first(ctx context.Context, input ast.Value) (ast.Object, error) {
	if p, ok := q.eval.(*compiled.Program); ok {
		// Without a callback to allocate.
		return p.First(ctx, input)
	}
	var first ast.Object
	err := q.eval.Eval(ctx, input, func(o ast.Object) bool {
		first = o
		return false
	})
	if err != nil {
		return nil, err
	}
	return first, nil
}

// get returns the value of a result's variable, nil when it has none.
func get(result ast.Object, name *ast.Term) *ast.Term {
	if result == nil {
		return nil
	}
	return result.Get(name)
}

// The variables of the bundle's queries, as the results name them, and the
// keys of a violation.
var (
	varResult = ast.StringTerm("result")
	varDeny   = ast.StringTerm("deny")
	varWarn   = ast.StringTerm("warn")
	varPlan   = ast.StringTerm("plan")
	keyRule   = ast.StringTerm("rule")
	keyMsg    = ast.StringTerm("message")
)

// Mutate evaluates the mutation for a request. The result may be shared with
// other callers and must not be modified.
func (b *Bundle) Mutate(ctx context.Context, req *Request) (*Mutation, error) {
	return cached(b.mutations, req, func() (*Mutation, error) { return b.mutate(ctx, req) })
}

func (b *Bundle) mutate(ctx context.Context, req *Request) (*Mutation, error) {
	qr, err := b.mutation.first(ctx, b.input(req))
	if err != nil {
		return nil, fmt.Errorf("evaluating %s: %w", MutationQuery, err)
	}
	m := &Mutation{}
	res := get(qr, varResult)
	if res == nil {
		return m, nil
	}
	obj, ok := res.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s is %s, want an object with annotations and labels", MutationQuery, ast.ValueName(res.Value))
	}
	if m.Annotations, err = stringPtrMap(obj, keyAnnotations); err != nil {
		return nil, err
	}
	if m.Labels, err = stringPtrMap(obj, keyLabels); err != nil {
		return nil, err
	}
	return m, nil
}

func stringPtrMap(res ast.Object, key *ast.Term) (map[string]*string, error) {
	raw := res.Get(key)
	if raw == nil {
		return nil, nil
	}
	if _, ok := raw.Value.(ast.Null); ok {
		return nil, nil
	}
	obj, ok := raw.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s.%s is %s, want an object of strings or nulls", MutationQuery, key.Value, ast.ValueName(raw.Value))
	}
	out := make(map[string]*string, obj.Len())
	values := make([]string, 0, obj.Len()) // one allocation for every value
	err := obj.Iter(func(k, v *ast.Term) error {
		ks, ok := k.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%s.%s has the key %v, want string keys", MutationQuery, key.Value, k)
		}
		switch v := v.Value.(type) {
		case ast.Null:
			out[string(ks)] = nil
		case ast.String:
			values = append(values, string(v))
			out[string(ks)] = &values[len(values)-1]
		default:
			return fmt.Errorf("%s.%s[%s] is %s, want a string or null", MutationQuery, key.Value, k, ast.ValueName(v))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Validate evaluates deny and warn for a request. The result may be shared
// with other callers and must not be modified.
func (b *Bundle) Validate(ctx context.Context, req *Request) (*Validation, error) {
	return cached(b.validations, req, func() (*Validation, error) { return b.validate(ctx, req) })
}

func (b *Bundle) validate(ctx context.Context, req *Request) (*Validation, error) {
	qr, err := b.validation.first(ctx, b.input(req))
	if err != nil {
		return nil, fmt.Errorf("evaluating %s and %s: %w", DenyQuery, WarnQuery, err)
	}
	v := &Validation{}
	if deny, ok := collection(get(qr, varDeny)); ok {
		v.Violations = make([]Violation, 0, deny.Len())
		err := deny.Iter(func(d *ast.Term) error {
			var rule, msg ast.String
			obj, ok := d.Value.(ast.Object)
			if ok {
				rule, _ = termString(obj.Get(keyRule))
				msg, _ = termString(obj.Get(keyMsg))
			}
			if !ok || rule == "" {
				return fmt.Errorf("%s holds %v, want objects with a rule and a message", DenyQuery, d)
			}
			v.Violations = append(v.Violations, Violation{Rule: string(rule), Message: string(msg)})
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.SortFunc(v.Violations, func(a, b Violation) int {
			return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Message, b.Message))
		})
	}
	if warn, ok := collection(get(qr, varWarn)); ok {
		v.Warnings = make([]string, 0, warn.Len())
		err := warn.Iter(func(w *ast.Term) error {
			s, ok := termString(w)
			if !ok {
				return fmt.Errorf("%s holds %v, want strings", WarnQuery, w)
			}
			v.Warnings = append(v.Warnings, string(s))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// iterable is a set or an array: deny and warn are sets in nsprov's bundle,
// and an array is accepted as the JSON results of the rego package were.
type iterable interface {
	Len() int
	Iter(func(*ast.Term) error) error
}

func collection(t *ast.Term) (iterable, bool) {
	if t == nil {
		return nil, false
	}
	switch v := t.Value.(type) {
	case ast.Set:
		return v, true
	case *ast.Array:
		return v, true
	}
	return nil, false
}

func termString(t *ast.Term) (ast.String, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return s, ok
}

// Plan evaluates the provisioning plan; it returns nil when the policy defines
// none for the request (the namespace is not requested, or it is denied). The
// result may be shared with other callers and must not be modified.
func (b *Bundle) Plan(ctx context.Context, req *Request) (map[string]any, error) {
	return cached(b.plans, req, func() (map[string]any, error) { return b.evalPlan(ctx, req) })
}

func (b *Bundle) evalPlan(ctx context.Context, req *Request) (map[string]any, error) {
	qr, err := b.plan.first(ctx, b.input(req))
	if err != nil {
		return nil, fmt.Errorf("evaluating %s: %w", PlanQuery, err)
	}
	res := get(qr, varPlan)
	if res == nil {
		return nil, nil
	}
	if _, ok := res.Value.(ast.Object); !ok {
		return nil, fmt.Errorf("%s is %s, want an object", PlanQuery, ast.ValueName(res.Value))
	}
	v, err := ast.JSON(res.Value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PlanQuery, err)
	}
	plan, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is %T, want an object", PlanQuery, v)
	}
	return plan, nil
}
