package compiled

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// staticModule has rules of data alone (catalogue, names, size, names_count
// through a function) beside rules that read input.
const staticModule = `package t

import rego.v1

catalogue := data.config.tiers

names contains n if some n, _ in catalogue

size := count(names)

names_count := count_of(names)

count_of(s) := count(s)

wanted := input.tier

known := true if {
	catalogue[wanted]
} else := false

# direct reads data at a constant path, then at a key of input.
direct := data.config.tiers[input.tier].cpu if {
	data.config.tiers[input.tier]
} else := 0
`

// compileStatic plans query on staticModule and data.
func compileStatic(t *testing.T, data map[string]any, query string) *Program {
	t.Helper()
	compiler, err := ast.CompileModulesWithOpt(map[string]string{"t.rego": staticModule}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	if err != nil {
		t.Fatal(err)
	}
	value, err := ast.InterfaceToValue(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(context.Background(), compiler, inmem.NewFromObject(data), value, query)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tiersData(names ...string) map[string]any {
	tiers := map[string]any{}
	for _, n := range names {
		tiers[n] = map[string]any{"cpu": 1}
	}
	return map[string]any{"config": map[string]any{"tiers": tiers}}
}

// TestRulesOfDataAreEvaluatedOnce: a rule that reads data alone is
// evaluated when the program is prepared and keeps that value on every
// evaluation; a rule that reads input is not, but its reads of data at a
// constant path are folded; a program prepared on other data (a bundle
// change) has the other data's values; `with data` and `with input` give the
// values topdown gives.
func TestRulesOfDataAreEvaluatedOnce(t *testing.T) {
	const query = `size = data.t.size; names = data.t.names; n = data.t.names_count; known = data.t.known; direct = data.t.direct`
	p := compileStatic(t, tiersData("small", "large"), query)
	fixed := map[string]bool{}
	for _, fn := range p.funcs {
		fixed[fn.name] = fn.fixed != nil
	}
	for name, want := range map[string]bool{
		"g0.data.t.catalogue": true, "g0.data.t.names": true, "g0.data.t.size": true, "g0.data.t.names_count": true,
		"g0.data.t.wanted": false, "g0.data.t.known": false, "g0.data.t.count_of": false,
	} {
		if got, ok := fixed[name]; !ok || got != want {
			t.Errorf("%s: evaluated once %v (planned %v), want %v", name, got, ok, want)
		}
	}

	check := func(p *Program, input, want string) {
		t.Helper()
		for run := 0; run < 3; run++ {
			res, err := first(p, ast.MustParseTerm(input).Value)
			if err != nil {
				t.Fatal(err)
			}
			if w := ast.MustParseTerm(want); res == nil || res.Compare(w.Value) != 0 {
				t.Fatalf("input %s, run %d: %v, want %v", input, run, res, w)
			}
		}
	}
	check(p, `{"tier": "small"}`, `{"size": 2, "names": {"small", "large"}, "n": 2, "known": true, "direct": 1}`)
	check(p, `{"tier": "huge"}`, `{"size": 2, "names": {"small", "large"}, "n": 2, "known": false, "direct": 0}`)

	// A bundle change makes a new program, with the new data's values.
	check(compileStatic(t, tiersData("micro", "small", "medium"), query), `{"tier": "medium"}`,
		`{"size": 3, "names": {"micro", "small", "medium"}, "n": 3, "known": true, "direct": 1}`)

	// with data replaces what the rules of data read; with input leaves
	// them alone.
	check(compileStatic(t, tiersData("small", "large"), `size = data.t.size with data.config.tiers as {"x": {}}; names = data.t.names with data.config.tiers as {"x": {}}; n = data.t.names_count with data.config.tiers as {"x": {}}; known = data.t.known with data.config.tiers as {"x": {}}; direct = data.t.direct with data.config.tiers as {"x": {"cpu": 7}}`),
		`{"tier": "x"}`, `{"size": 1, "names": {"x"}, "n": 1, "known": true, "direct": 7}`)
	check(compileStatic(t, tiersData("small", "large"), `size = data.t.size with input as {}; names = data.t.names; n = data.t.names_count; known = data.t.known with input.tier as "large"`),
		`{"tier": "x"}`, `{"size": 2, "names": {"small", "large"}, "n": 2, "known": true}`)
	// After a with, the program's values again.
	check(compileStatic(t, tiersData("small", "large"), `size1 = data.t.size with data.config.tiers as {}; d1 = data.t.direct with data.config.tiers.large as {"cpu": 9}; size = data.t.size; names = data.t.names; n = data.t.names_count; known = data.t.known; direct = data.t.direct`),
		`{"tier": "large"}`, `{"size1": 0, "d1": 9, "size": 2, "names": {"small", "large"}, "n": 2, "known": true, "direct": 1}`)

	// direct reads data.config.tiers as a constant, found when the program
	// was prepared.
	folded := 0
	var walk func(b *ir.Block)
	walk = func(b *ir.Block) {
		for _, s := range b.Stmts {
			if _, ok := s.(*dataDotStmt); ok {
				folded++
			}
			u, _ := usesOf(s)
			for _, inner := range u.blocks {
				walk(inner)
			}
		}
	}
	for _, fn := range p.funcs {
		if fn.name == "g0.data.t.direct" {
			for _, b := range fn.blocks {
				walk(b)
			}
		}
	}
	if folded == 0 {
		t.Error("no read of data.config.tiers in data.t.direct was folded")
	}
}

// TestRulesOfDataThatFailAreNotFixed: a rule of data alone whose evaluation
// fails (here a builtin's error) is evaluated at every call, and fails there
// as before.
func TestRulesOfDataThatFailAreNotFixed(t *testing.T) {
	compiler, err := ast.CompileModulesWithOpt(map[string]string{"t.rego": `package t

import rego.v1

bad := to_number(data.config.value)
`}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"config": map[string]any{"value": "not a number"}}
	value, err := ast.InterfaceToValue(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(context.Background(), compiler, inmem.NewFromObject(data), value, `x = data.t.bad`)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range p.funcs {
		if fn.fixed != nil {
			t.Errorf("%s was evaluated once", fn.name)
		}
	}
	if _, err := first(p, ast.NewObject()); err == nil {
		t.Fatal("the builtin's error does not fail the evaluation")
	}
}
