package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/policy/compiled"
	"github.com/nsprov/nsprov/internal/testutil"
)

// evaluators are the evaluators every test of this file runs through the
// Evaluator interface.
var evaluators = []string{EvaluatorCompiled, EvaluatorTopdown}

// prepareEvaluator prepares query on modules and data with the named
// evaluator; strict selects what a builtin's error does (see Evaluator).
func prepareEvaluator(ctx context.Context, name string, compiler *ast.Compiler, data map[string]any, query string, strict bool) (Evaluator, error) {
	dv, err := ast.InterfaceToValue(data)
	if err != nil {
		return nil, err
	}
	e, err := newEvaluator(ctx, name, compiler, inmem.NewFromObject(data), dv, query)
	if err != nil {
		return nil, err
	}
	switch e := e.(type) {
	case *topdownQuery:
		e.strict = strict
	case *compiled.Program:
		e.SetStrictBuiltinErrors(strict)
	}
	return e, nil
}

// queryVar reports whether a result's variable is one of the query's own, as
// the rego package reports them: not the planner's ^term variables, nor
// wildcards or generated locals.
func queryVar(name string) bool {
	return !strings.HasPrefix(name, "^") && !strings.HasPrefix(name, "$") && !strings.HasPrefix(name, "__local")
}

// compiledCase is a Rego program evaluated by the rego package (topdown) and
// by each evaluator on each input; the results (or the fact that all fail)
// must be the same.
type compiledCase struct {
	name    string
	modules []string
	data    string // JSON
	query   string
	inputs  []string // JSON; "" is no input at all
	wantErr bool     // every input fails in both evaluators
}

var compiledCases = []compiledCase{
	{
		name: "complete rules, else and defaults",
		modules: []string{`package t
default level := "none"
level := "high" if input.n > 10
else := "mid" if input.n > 5
else := "low" if input.n >= 0
default name := "unnamed"
name := sprintf("%s-%d", [input.s, input.n]) if input.s`},
		query:  "x := data.t.level; y := data.t.name",
		inputs: []string{`{"n": 12, "s": "a"}`, `{"n": 7}`, `{"n": 1, "s": "b"}`, `{"n": -1}`, `{}`, ``},
	},
	{
		name: "partial sets and objects over data",
		modules: []string{`package t
deny contains msg if {
	some name, limit in data.limits
	input.usage[name] > limit
	msg := sprintf("%s over %d", [name, limit])
}
by_team[team] := count(members) if {
	some team, members in input.teams
}
names contains n if some n in object.keys(data.limits)`},
		data:   `{"limits": {"cpu": 4, "memory": 8, "pods": 10}}`,
		query:  "d := data.t.deny; b := data.t.by_team; n := data.t.names",
		inputs: []string{`{"usage": {"cpu": 5, "memory": 2, "pods": 11}, "teams": {"a": [1, 2], "b": []}}`, `{"usage": {}}`, `{}`},
	},
	{
		name: "functions with several clauses, not and every",
		modules: []string{`package t
kind(x) := "string" if is_string(x)
kind(x) := "number" if is_number(x)
kind(x) := "other" if { not is_string(x); not is_number(x) }
default all_small := false
all_small if every v in input.values { v < 10 }
default none_negative := false
none_negative if not any_negative
any_negative if { some v in input.values; v < 0 }
kinds := [kind(v) | some v in input.values]`},
		query:  "a := data.t.kinds; b := data.t.all_small; c := data.t.none_negative",
		inputs: []string{`{"values": [1, "a", true, 3]}`, `{"values": [1, 20]}`, `{"values": [-1]}`, `{"values": []}`, `{}`},
	},
	{
		name: "comprehensions, unification and set operators",
		modules: []string{`package t
pairs := {k: v | some [k, v] in input.pairs}
firsts := {a | some [a, _] in input.pairs}
both := firsts & {"a", "c"}
either := firsts | {"z"}
only := firsts - {"a"}
default obj_match := null
obj_match := x if {
	{"kind": "Namespace", "name": x} = input.obj
}
default arr_match := null
arr_match := sum([a, b]) if [a, b] = input.arr
sorted := sort([v | some v in input.arr])`},
		query:  "p := data.t.pairs; f := data.t.firsts; b := data.t.both; e := data.t.either; o := data.t.only; m := data.t.obj_match; s := data.t.arr_match; q := data.t.sorted",
		inputs: []string{`{"pairs": [["a", 1], ["b", 2]], "obj": {"kind": "Namespace", "name": "n1"}, "arr": [3, 4]}`, `{"pairs": [], "obj": {"kind": "Pod"}, "arr": [1, 2, 3]}`},
	},
	{
		name: "dynamic data references and documents mixing data and rules",
		modules: []string{`package lib
computed := input.v * 2
`, `package t
default tier_cpu := 0
tier_cpu := data.tiers[input.tier].cpu
default pick := "none"
pick := data.lib[input.rule]
whole := data.lib`},
		data:   `{"tiers": {"small": {"cpu": 2}, "large": {"cpu": 8}}, "lib": {"static": "yes", "nested": {"a": 1}}}`,
		query:  "a := data.t.tier_cpu; b := data.t.pick; c := data.t.whole",
		inputs: []string{`{"tier": "small", "rule": "computed", "v": 3}`, `{"tier": "huge", "rule": "static", "v": 1}`, `{"tier": "large", "rule": "x", "v": 0}`},
	},
	{
		name: "with replaces input and data and memos",
		modules: []string{`package t
doubled := input.n * 2
limit := data.limit
both := [doubled, limit]
replaced := [a, b] if {
	a := doubled with input.n as 100
	b := both with data.limit as 7
}`},
		data:   `{"limit": 3}`,
		query:  "x := data.t.both; y := data.t.replaced; z := data.t.both",
		inputs: []string{`{"n": 1}`, `{"n": 5}`},
	},
	{
		name: "strings and builtins",
		modules: []string{`package t
features := sort({f | some raw in split(input.s, ","); f := lower(trim_space(raw)); f != ""})
default prefixed := false
prefixed if strings.any_prefix_match(input.name, ["kube-", "nsprov-"])
suffix := trim_suffix(input.name, "-dev")
default valid := false
valid if regex.match("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", input.name)
joined := concat("/", features)
n := count(input.name) + 1`},
		query:  "f := data.t.features; p := data.t.prefixed; s := data.t.suffix; v := data.t.valid; j := data.t.joined; n := data.t.n",
		inputs: []string{`{"s": " Istio, monitoring ,istio,,", "name": "kube-dev"}`, `{"s": "", "name": "Payments-dev"}`},
	},
	{
		name: "conflicting complete rule",
		modules: []string{`package t
x := 1 if input.a
x := 2 if input.b`},
		query:   "v := data.t.x",
		inputs:  []string{`{"a": true, "b": true}`},
		wantErr: true,
	},
	{
		name: "conflicting object keys",
		modules: []string{`package t
o[k] := v if some k, v in input.a
o[k] := v if some k, v in input.b`},
		query:   "v := data.t.o",
		inputs:  []string{`{"a": {"k": 1}, "b": {"k": 2}}`},
		wantErr: true,
	},
	{
		name: "builtin error",
		modules: []string{`package t
n := to_number(input.s)`},
		query:   "v := data.t.n",
		inputs:  []string{`{"s": "not a number"}`},
		wantErr: true,
	},
	{
		name: "with replaces builtins and functions",
		modules: []string{`package t
f(x) := x + 1
mocked_count := n if { n := count(input.a) with count as 7 }
mocked_f := n if { n := f(1) with f as 10 }
mocked_data := z if { z := data.t.y with data.t.y as 5 }
y := 1`},
		query:  "a := data.t.mocked_count; b := data.t.mocked_f; c := data.t.mocked_data; d := data.t.y",
		inputs: []string{`{"a": [1, 2]}`},
	},
	{
		name: "nondeterministic builtins",
		modules: []string{`package t
default now_positive := false
now_positive if time.now_ns() > 0
status := http.send({"method": "get", "url": "http://127.0.0.1:1", "raise_error": false, "timeout": "1s"}).status_code`},
		query:  "a := data.t.now_positive; b := data.t.status",
		inputs: []string{`{}`},
	},
	{
		name: "relations and metadata",
		modules: []string{`package t
paths := [p | walk(input, [p, _])]
leaves := {v | walk(input, [_, v]); is_number(v)}
# METADATA
# title: a titled rule
title := rego.metadata.rule().title
chain := [e.path | some e in rego.metadata.chain()]`},
		query:  "a := data.t.paths; b := data.t.leaves; c := data.t.title; d := data.t.chain",
		inputs: []string{`{"a": [1, {"b": 2}], "c": "x"}`, `{}`, `[]`},
	},
	{
		name: "several results",
		modules: []string{`package t
items := ["a", "b", "c"]`},
		query:  "some i; v := data.t.items[i]; v != input.skip",
		inputs: []string{`{"skip": "b"}`, `{"skip": "z"}`},
	},
}

// evalTopdownJSON evaluates query with the rego package and topdown, and
// returns every result's bindings as sorted JSON.
func evalTopdownJSON(ctx context.Context, modules []string, data map[string]any, query string, input any, hasInput bool) ([]string, error) {
	opts := []func(*rego.Rego){rego.Query(query), rego.Store(inmem.NewFromObject(data)), rego.StrictBuiltinErrors(true)}
	for i, m := range modules {
		opts = append(opts, rego.Module(fmt.Sprintf("m%d.rego", i), m))
	}
	if hasInput {
		opts = append(opts, rego.Input(input))
	}
	rs, err := rego.New(opts...).Eval(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		b, err := json.Marshal(r.Bindings)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out, nil
}

// compileCase compiles a case's modules and prepares its query with the
// named evaluator.
func compileCase(ctx context.Context, tb testing.TB, evaluator string, c compiledCase, data map[string]any) Evaluator {
	tb.Helper()
	mods := map[string]*ast.Module{}
	for i, m := range c.modules {
		mods[fmt.Sprintf("m%d.rego", i)] = ast.MustParseModuleWithOpts(m, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(mods); compiler.Failed() {
		tb.Fatal(compiler.Errors)
	}
	e, err := prepareEvaluator(ctx, evaluator, compiler, data, c.query, true)
	if err != nil {
		tb.Fatalf("preparing: %v", err)
	}
	return e
}

// TestEvaluatorsMatchRego runs each case through each evaluator and compares
// the results with the rego package's.
func TestEvaluatorsMatchRego(t *testing.T) {
	ctx := context.Background()
	for _, evaluator := range evaluators {
		for _, c := range compiledCases {
			t.Run(evaluator+"/"+c.name, func(t *testing.T) {
				testMatchesRego(ctx, t, evaluator, c)
			})
		}
	}
}

func testMatchesRego(ctx context.Context, t *testing.T, evaluator string, c compiledCase) {
	data := map[string]any{}
	if c.data != "" {
		if err := util.UnmarshalJSON([]byte(c.data), &data); err != nil {
			t.Fatal(err)
		}
	}
	e := compileCase(ctx, t, evaluator, c, data)
	for _, in := range c.inputs {
		var input any
		var inputValue ast.Value
		if in != "" {
			if err := util.UnmarshalJSON([]byte(in), &input); err != nil {
				t.Fatal(err)
			}
			inputValue = ast.MustInterfaceToValue(input)
		}
		want, wantErr := evalTopdownJSON(ctx, c.modules, data, c.query, input, in != "")
		var got []string
		gotErr := e.Eval(ctx, inputValue, func(r ast.Object) bool {
			vars := map[string]any{}
			r.Foreach(func(k, v *ast.Term) {
				if name := string(k.Value.(ast.String)); queryVar(name) {
					j, err := ast.JSON(v.Value)
					if err != nil {
						t.Fatal(err)
					}
					vars[name] = j
				}
			})
			b, _ := json.Marshal(vars)
			got = append(got, string(b))
			return true
		})
		sort.Strings(got)
		if c.wantErr {
			if wantErr == nil || gotErr == nil {
				t.Errorf("input %s: want an error from both, got rego %v and %s %v", in, wantErr, evaluator, gotErr)
			}
			continue
		}
		if wantErr != nil || gotErr != nil {
			t.Fatalf("input %s: rego error %v, %s error %v", in, wantErr, evaluator, gotErr)
		}
		if len(want) == 0 {
			t.Errorf("input %s: the case yields no result; make it exercise something", in)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("input %s:\n%-8s %s\nrego     %s", in, evaluator, strings.Join(got, "\n         "), strings.Join(want, "\n         "))
		}
	}
}

// requestCorpus returns admission requests that reach every rule of the
// embedded bundle: each combination of requester, operation and the request
// annotations' values, valid and invalid.
func requestCorpus() []*Request {
	users := []struct {
		name   string
		groups []string
	}{
		{"alice", []string{"team-payments", "system:authenticated"}},
		{"mallory", []string{"system:authenticated"}},
		{"root", []string{"system:masters"}},
		{"system:serviceaccount:nsprov-system:nsprov", []string{"system:serviceaccounts"}},
	}
	type variant struct {
		name        string
		annotations map[string]string
		labels      map[string]string
	}
	variants := []variant{
		{"payments-dev", nil, nil},
		{"payments-dev", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, nil},
		{"payments-prod", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/tier": "large", "nsprov.io/network-policy": "open", "nsprov.io/features": " Istio,monitoring-enhanced,istio "}, nil},
		{"payments-staging", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "staging", "nsprov.io/tier": "micro", "nsprov.io/features": "gpu"}, nil},
		{"kube-payments", map[string]string{"nsprov.io/team": "Payments!", "nsprov.io/environment": "qa", "nsprov.io/tier": "huge", "nsprov.io/network-policy": "wide"}, nil},
		{"default", map[string]string{"nsprov.io/team": "payments"}, map[string]string{"nsprov.io/team": "search"}},
		{"search-dev", map[string]string{"nsprov.io/team": "search", "nsprov.io/environment": "development", "nsprov.io/requested-by": "someone", "nsprov.io/workflow": "forged", "nsprov.io/color": "blue"}, map[string]string{"nsprov.io/tier": "large"}},
		{"payments-dev", map[string]string{"nsprov.io/environment": "development", "nsprov.io/tier": "small", "nsprov.io/network-policy": "team"}, nil},
		{"payments-dev", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "production"}, nil},
		// Over the limits: a long team and a long features list, and more features than allowed.
		{"payments-dev", map[string]string{"nsprov.io/team": strings.Repeat("p", 100), "nsprov.io/environment": "development", "nsprov.io/features": strings.Repeat("istio,", 300)}, nil},
		{"payments-dev", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/features": manyFeatures(40)}, nil},
	}
	ns := func(v variant) *corev1.Namespace { return testutil.Namespace(v.name, v.annotations, v.labels) }
	var out []*Request
	for _, u := range users {
		for i, v := range variants {
			out = append(out, &Request{UID: "u", Operation: "CREATE", Username: u.name, Groups: u.groups, Object: ns(v)})
			// Updates from every other variant, which change the team, the
			// environment and the tier, remove annotations or forge labels.
			for j, old := range variants {
				if (i+j)%3 != 0 {
					continue
				}
				oldNS := ns(old)
				oldNS.Name = v.name
				out = append(out, &Request{UID: "u", Operation: "UPDATE", Username: u.name, Groups: u.groups, Object: ns(v), OldObject: oldNS})
			}
		}
	}
	return out
}

// manyFeatures is a features list of n distinct entries.
func manyFeatures(n int) string {
	f := make([]string, n)
	for i := range f {
		f[i] = fmt.Sprintf("f%d", i)
	}
	return strings.Join(f, ",")
}

func TestCompiledBundleMatchesTopdown(t *testing.T) {
	ctx := context.Background()
	fast, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fast.Evaluator != EvaluatorCompiled {
		t.Fatalf("the embedded bundle is evaluated by %q, want %q", fast.Evaluator, EvaluatorCompiled)
	}
	reference, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := reference.UseEvaluator(EvaluatorTopdown); err != nil {
		t.Fatal(err)
	}
	fast.SetDecisionCacheSize(0)
	reference.SetDecisionCacheSize(0)
	rules := map[string]bool{}
	for _, req := range requestCorpus() {
		what := fmt.Sprintf("%s by %s of %s %v (old %v)", req.Operation, req.Username, req.Object.Name, req.Object.Annotations, req.OldObject != nil)
		wantD, wantErr := decide(ctx, reference, req)
		gotD, gotErr := decide(ctx, fast, req)
		if wantErr != nil || gotErr != nil {
			t.Fatalf("%s: topdown error %v, compiled error %v", what, wantErr, gotErr)
		}
		if !reflect.DeepEqual(gotD, wantD) {
			g, _ := json.MarshalIndent(gotD, "", "  ")
			w, _ := json.MarshalIndent(wantD, "", "  ")
			t.Fatalf("%s:\ncompiled %s\ntopdown  %s", what, g, w)
		}
		// Validation of the request as it came, without the mutation.
		wantV, err := reference.Validate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		gotV, err := fast.Validate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, wantV) {
			t.Fatalf("%s: validation differs:\ncompiled %+v\ntopdown  %+v", what, gotV, wantV)
		}
		for _, r := range wantV.Rules() {
			rules[r] = true
		}
		for _, r := range wantD.Validation.Violations {
			rules[r.Rule] = true
		}
	}
	// The corpus must reach every rule, or the comparison proves little.
	for _, r := range []string{"request-required", "team-required", "team-invalid", "environment-required",
		"environment-invalid", "tier-invalid", "tier-not-allowed-in-environment", "network-policy-invalid",
		"network-policy-not-allowed-in-environment", "feature-invalid", "name-environment-suffix", "name-reserved",
		"requester-not-in-team", "team-immutable", "environment-immutable", "request-annotations-removed",
		"managed-metadata-forged", "annotation-too-long", "too-many-features"} {
		if !rules[r] {
			t.Errorf("no request of the corpus violates %s", r)
		}
	}
}

func TestUseEvaluatorTopdown(t *testing.T) {
	b, err := LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UseEvaluator(EvaluatorTopdown); err != nil {
		t.Fatal(err)
	}
	for _, q := range []*query{b.mutation, b.validation, b.plan} {
		if _, ok := q.eval.(*topdownQuery); !ok || b.Evaluator != EvaluatorTopdown || b.Compiled() {
			t.Fatalf("after UseEvaluator(topdown): evaluator %q, %s evaluated by %T", b.Evaluator, q.text, q.eval)
		}
	}
	d, err := decide(context.Background(), b, &Request{Operation: "CREATE", Username: "mallory", Object: testutil.Namespace("x", nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Validation.Allowed() || len(d.Validation.Violations) != 1 || d.Validation.Violations[0].Rule != "request-required" {
		t.Fatalf("topdown decision: %+v", d)
	}
}

// TestEvaluatorsStopYielding: once yield returns false it is not called
// again, while the evaluation still runs to its end.
func TestEvaluatorsStopYielding(t *testing.T) {
	ctx := context.Background()
	c := compiledCases[len(compiledCases)-1] // several results
	for _, evaluator := range evaluators {
		t.Run(evaluator, func(t *testing.T) {
			e := compileCase(ctx, t, evaluator, c, map[string]any{})
			for _, stopAfter := range []int{1, 2} {
				calls := 0
				err := e.Eval(ctx, ast.MustParseTerm(`{"skip": "z"}`).Value, func(ast.Object) bool {
					calls++
					return calls < stopAfter
				})
				if err != nil || calls != stopAfter {
					t.Errorf("stop after %d: yield called %d times, error %v", stopAfter, calls, err)
				}
			}
		})
	}
}

// TestFallbackToTopdown: a bundle the planner cannot plan loads, says why
// in Evaluator, and is evaluated by topdown with the same decisions.
func TestFallbackToTopdown(t *testing.T) {
	ctx := context.Background()
	files := testutil.EmbeddedPolicies(t)
	// Rules of one path prefix that refer back into it are one function to
	// the planner, which cannot plan that reference; topdown can.
	files["probe.rego"] = &fstest.MapFile{Data: []byte(`package nsprov.validation

import rego.v1

probe[k].b := 1 if some k in ["p"]

probe.q.c := v if v := probe.p.b

deny contains {"rule": "probe", "message": "probed"} if probe.q.c == 1
`)}
	b, err := Load(ctx, files, "probe")
	if err != nil {
		t.Fatal(err)
	}
	if b.Compiled() || !strings.HasPrefix(b.Evaluator, EvaluatorTopdown+" (planning deny = "+DenyQuery) || !strings.Contains(b.Evaluator, "is not supported") {
		t.Fatalf("evaluator %q, compiled %v; want topdown with the planner's reason", b.Evaluator, b.Compiled())
	}
	if err := b.UseEvaluator(EvaluatorCompiled); err != nil || b.Compiled() {
		t.Fatalf("UseEvaluator(compiled) on a bundle that cannot be compiled: %v, compiled %v", err, b.Compiled())
	}
	v, err := b.Validate(ctx, &Request{Operation: "CREATE", Username: "alice", Object: testutil.Namespace("x", nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(v.Rules(), "probe") {
		t.Errorf("topdown decision %+v lacks the probe rule", v)
	}
}
