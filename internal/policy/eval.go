package policy

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
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

// query is a query compiled against a bundle and evaluated with OPA's
// evaluator (topdown) directly. The rego package's prepared queries do the
// same evaluation, but around it they start a goroutine to watch the
// context, collect metrics and convert every result to JSON-like Go values;
// on nsprov's short queries that is a large share of the cost.
type query struct {
	text     string
	body     ast.Body
	compiler *ast.Compiler
	store    storage.Store
	data     *dataCache
	// prog is the query's compiled plan (see compiled.go); nil when the
	// bundle cannot be compiled and topdown evaluates the query.
	prog *program
}

// result is the first result of a query: its variables' values.
type result struct {
	topdown topdown.QueryResult
	vars    ast.Object // from a compiled plan: variable name to value
}

var varTerms = map[ast.Var]*ast.Term{}

func (r result) get(v ast.Var) (*ast.Term, bool) {
	var t *ast.Term
	if r.vars != nil {
		t = r.vars.Get(varTerms[v])
	} else {
		t = r.topdown[v]
	}
	return t, t != nil
}

// prepareQuery parses and compiles text, a Rego query whose results are read
// from its variables.
func prepareQuery(compiler *ast.Compiler, store storage.Store, data *dataCache, text string) (*query, error) {
	parsed, err := ast.ParseBodyWithOpts(text, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", text, err)
	}
	body, err := compiler.QueryCompiler().Compile(parsed)
	if err != nil {
		return nil, fmt.Errorf("compiling %s: %w", text, err)
	}
	return &query{text: text, body: body, compiler: compiler, store: store, data: data}, nil
}

var noMetrics = metrics.NoOp()

// eval evaluates the query on input and returns its first result; no
// variable is set when it has none. Builtin errors fail the evaluation, as
// rego's StrictBuiltinErrors(true) does, and the query stops when ctx is
// cancelled.
func (q *query) eval(ctx context.Context, input ast.Value) (result, error) {
	if q.prog != nil {
		vars, err := q.prog.first(ctx, input)
		if err != nil {
			return result{}, err
		}
		if vars == nil {
			vars = ast.NewObject()
		}
		return result{vars: vars}, nil
	}
	qr, err := q.evalTopdown(ctx, input)
	return result{topdown: qr}, err
}

// evalTopdown evaluates the query with OPA's evaluator.
func (q *query) evalTopdown(ctx context.Context, input ast.Value) (topdown.QueryResult, error) {
	txn, err := q.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer q.store.Abort(ctx, txn)
	vc := acquireQueryCache()
	defer vc.release()
	tq := topdown.NewQuery(q.body).
		WithCompiler(q.compiler).
		WithStore(q.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(input)).
		WithMetrics(noMetrics).
		WithStrictBuiltinErrors(true).
		WithVirtualCache(vc).
		WithBaseCache(q.data)
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		tq = tq.WithCancel(c)
	}
	var first topdown.QueryResult
	err = tq.Iter(ctx, func(qr topdown.QueryResult) error {
		if first == nil {
			first = qr
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return first, nil
}

var (
	varResult = ast.Var("result")
	varDeny   = ast.Var("deny")
	varWarn   = ast.Var("warn")
	varPlan   = ast.Var("plan")
	keyRule   = ast.StringTerm("rule")
	keyMsg    = ast.StringTerm("message")
)

func init() {
	for _, v := range []ast.Var{varResult, varDeny, varWarn, varPlan} {
		varTerms[v] = ast.StringTerm(string(v))
	}
}

// Mutate evaluates the mutation for a request. The result may be shared with
// other callers and must not be modified.
func (b *Bundle) Mutate(ctx context.Context, req *Request) (*Mutation, error) {
	return cached(b.mutations, req, func() (*Mutation, error) { return b.mutate(ctx, req) })
}

func (b *Bundle) mutate(ctx context.Context, req *Request) (*Mutation, error) {
	qr, err := b.mutation.eval(ctx, req.Value())
	if err != nil {
		return nil, fmt.Errorf("evaluating %s: %w", MutationQuery, err)
	}
	m := &Mutation{}
	res, ok := qr.get(varResult)
	if !ok {
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
	qr, err := b.validation.eval(ctx, req.Value())
	if err != nil {
		return nil, fmt.Errorf("evaluating %s and %s: %w", DenyQuery, WarnQuery, err)
	}
	v := &Validation{}
	denyTerm, _ := qr.get(varDeny)
	if deny, ok := collection(denyTerm); ok {
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
		sort.Slice(v.Violations, func(i, j int) bool {
			if v.Violations[i].Rule != v.Violations[j].Rule {
				return v.Violations[i].Rule < v.Violations[j].Rule
			}
			return v.Violations[i].Message < v.Violations[j].Message
		})
	}
	warnTerm, _ := qr.get(varWarn)
	if warn, ok := collection(warnTerm); ok {
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
	qr, err := b.plan.eval(ctx, req.Value())
	if err != nil {
		return nil, fmt.Errorf("evaluating %s: %w", PlanQuery, err)
	}
	res, ok := qr.get(varPlan)
	if !ok {
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
	return pointerEscaper.Replace(s)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

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
