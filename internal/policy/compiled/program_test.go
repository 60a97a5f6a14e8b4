package compiled

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// first evaluates p on input and returns its first result.
func first(p *Program, input ast.Value) (ast.Object, error) {
	var res ast.Object
	err := p.Eval(context.Background(), input, func(o ast.Object) bool {
		res = o
		return false
	})
	return res, err
}

// TestFoldedConstantsStayConstant runs a hand-written plan that modifies a
// folded literal through another local, which the planner does not emit:
// the evaluation gets a copy, and the constant shared by all evaluations
// stays as it was.
func TestFoldedConstantsStayConstant(t *testing.T) {
	str := func(i int) ir.Operand { return ir.Operand{Value: ir.StringIndex(i)} }
	local := func(l int) ir.Operand { return ir.Operand{Value: ir.Local(l)} }
	pol := &ir.Policy{
		Static: &ir.Static{Strings: []*ir.StringConst{{Value: "a"}, {Value: "b"}, {Value: "x"}, {Value: "c"}}},
		Plans: &ir.Plans{Plans: []*ir.Plan{{Name: "eval", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
			&ir.MakeSetStmt{Target: 2},
			&ir.SetAddStmt{Value: str(0), Set: 2},
			&ir.AssignVarStmt{Source: local(2), Target: 3},
			&ir.SetAddStmt{Value: str(1), Set: 3},
			&ir.MakeObjectStmt{Target: 4},
			&ir.ObjectInsertStmt{Key: str(2), Value: local(3), Object: 4},
			&ir.ObjectInsertStmt{Key: str(3), Value: local(2), Object: 4},
			&ir.ResultSetAddStmt{Value: 4},
		}}}}}},
		Funcs: &ir.Funcs{},
	}
	p, err := New(pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.constTerms) != 1 {
		t.Fatalf("%d constants folded, want the literal set", len(p.constTerms))
	}
	for run := 0; run < 3; run++ {
		res, err := first(p, ast.NewObject())
		if err != nil {
			t.Fatal(err)
		}
		if want := ast.MustParseTerm(`{"x": {"a", "b"}, "c": {"a"}}`); res.Compare(want.Value) != 0 {
			t.Fatalf("run %d: %v, want %v", run, res, want)
		}
	}
	for c := range p.constTerms {
		if want := ast.MustParseTerm(`{"a"}`); c.Value.Compare(want.Value) != 0 {
			t.Errorf("the folded constant became %v", c)
		}
	}
}

// TestCompiledEvaluationRecoversFromPanics: a panic inside an evaluation is
// an error for that request, and the program keeps working.
func TestCompiledEvaluationRecoversFromPanics(t *testing.T) {
	pol := &ir.Policy{
		Static: &ir.Static{Strings: []*ir.StringConst{{Value: "k"}}},
		Plans: &ir.Plans{Plans: []*ir.Plan{{Name: "eval", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
			// Local 2 is undefined: inserting into it is an internal error.
			&ir.ObjectInsertStmt{Key: ir.Operand{Value: ir.StringIndex(0)}, Value: ir.Operand{Value: ir.Local(0)}, Object: 2},
		}}}}}},
		Funcs: &ir.Funcs{},
	}
	p, err := New(pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first(p, ast.NewObject()); err == nil || !strings.Contains(err.Error(), "internal error: object insert into null") {
		t.Fatalf("insert into an undefined local: %v", err)
	}

	// A builtin that panics: the request fails, the next one is answered.
	topdown.RegisterBuiltinFunc("nsprov_test.panics", func(_ topdown.BuiltinContext, ops []*ast.Term, iter func(*ast.Term) error) error {
		if ops[0].Value.Compare(ast.String("boom")) == 0 {
			panic("boom")
		}
		return iter(ops[0])
	})
	pol = &ir.Policy{
		Static: &ir.Static{Strings: []*ir.StringConst{{Value: "v"}}},
		Plans: &ir.Plans{Plans: []*ir.Plan{{Name: "eval", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
			&ir.CallStmt{Func: "nsprov_test.panics", Args: []ir.Operand{{Value: ir.Local(0)}}, Result: 2},
			&ir.MakeObjectStmt{Target: 3},
			&ir.ObjectInsertStmt{Key: ir.Operand{Value: ir.StringIndex(0)}, Value: ir.Operand{Value: ir.Local(2)}, Object: 3},
			&ir.ResultSetAddStmt{Value: 3},
		}}}}}},
		Funcs: &ir.Funcs{},
	}
	if p, err = New(pol, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := first(p, ast.String("boom")); err == nil || !strings.Contains(err.Error(), "compiled evaluation failed: boom; run nsprov with --policy-evaluator topdown") {
		t.Fatalf("panicking builtin: %v", err)
	}
	res, err := first(p, ast.String("fine"))
	if err != nil || res.Compare(ast.MustParseTerm(`{"v": "fine"}`).Value) != 0 {
		t.Fatalf("after the panic: %v, %v", res, err)
	}
}

// TestLiteralsOfValuesAreMadeInOneStep: an array and an object literal whose
// values are known only when the plan runs are made in one statement each,
// with the values of that evaluation, and First returns the first result.
func TestLiteralsOfValuesAreMadeInOneStep(t *testing.T) {
	str := func(i int) ir.Operand { return ir.Operand{Value: ir.StringIndex(i)} }
	local := func(l int) ir.Operand { return ir.Operand{Value: ir.Local(l)} }
	pol := &ir.Policy{
		Static: &ir.Static{Strings: []*ir.StringConst{{Value: "a"}, {Value: "x"}, {Value: "y"}}},
		Plans: &ir.Plans{Plans: []*ir.Plan{{Name: "eval", Blocks: []*ir.Block{{Stmts: []ir.Stmt{
			&ir.DotStmt{Source: local(0), Key: str(0), Target: 2},
			&ir.MakeArrayStmt{Capacity: 2, Target: 3},
			&ir.ArrayAppendStmt{Value: local(2), Array: 3},
			&ir.ArrayAppendStmt{Value: str(0), Array: 3},
			&ir.MakeObjectStmt{Target: 4},
			&ir.ObjectInsertStmt{Key: str(1), Value: local(3), Object: 4},
			&ir.ObjectInsertStmt{Key: str(2), Value: local(2), Object: 4},
			&ir.ResultSetAddStmt{Value: 4},
		}}}}}},
		Funcs: &ir.Funcs{},
	}
	p, err := New(pol, nil)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range p.plan.blocks[0].Stmts {
		switch s.(type) {
		case *arrayStmt:
			kinds = append(kinds, "array")
		case *objectStmt:
			kinds = append(kinds, "object")
		}
	}
	if strings.Join(kinds, ",") != "array,object" {
		t.Fatalf("literals made as %v, want one array and one object statement", kinds)
	}
	for _, in := range []string{`{"a": 1}`, `{"a": "z"}`} {
		res, err := p.First(context.Background(), ast.MustParseTerm(in).Value)
		if err != nil {
			t.Fatal(err)
		}
		v := ast.MustParseTerm(in).Value.(ast.Object).Get(ast.StringTerm("a"))
		want := ast.NewObject(
			ast.Item(ast.StringTerm("x"), ast.ArrayTerm(v, ast.StringTerm("a"))),
			ast.Item(ast.StringTerm("y"), v),
		)
		if res == nil || res.Compare(want) != 0 {
			t.Fatalf("input %s: %v, want %v", in, res, want)
		}
	}
	if res, err := p.First(context.Background(), ast.MustParseTerm(`{"b": 1}`).Value); err != nil || res != nil {
		t.Fatalf("without input.a: %v, %v; want no result", res, err)
	}
}
