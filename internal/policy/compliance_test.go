package policy

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/test/cases"
	"github.com/open-policy-agent/opa/v1/test/cases/testdata"
	"github.com/open-policy-agent/opa/v1/util"
)

// complianceSkips are OPA compliance cases an evaluator does not run, with
// the reason; "" applies to every evaluator.
var complianceSkips = map[string]map[string]string{
	"": {
		"time/time caching": "needs the test.sleep builtin of OPA's own test harness",
	},
	EvaluatorCompiled: {
		// OPA's WebAssembly target skips these too (OPA issue 3711): the
		// planner addresses data by string keys only.
		"data/toplevel integer": "data with integer keys",
		"data/nested integer":   "data with integer keys",
	},
}

// loadComplianceCases reads OPA's own evaluation test cases (Rego v1), which
// OPA runs against topdown and its WebAssembly target.
func loadComplianceCases(tb testing.TB) []cases.TestCase {
	tb.Helper()
	var out []cases.TestCase
	err := fs.WalkDir(testdata.V1, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".json") {
			return err
		}
		bs, err := fs.ReadFile(testdata.V1, p)
		if err != nil {
			return err
		}
		var set cases.Set
		if err := util.Unmarshal(bs, &set); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, tc := range set.Cases {
			tc.Filename = p
			out = append(out, tc)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestOPACompliance runs OPA's evaluation test cases through each
// evaluator and checks each expected result or error.
func TestOPACompliance(t *testing.T) {
	all := loadComplianceCases(t)
	if len(all) < 1000 {
		t.Fatalf("only %d compliance cases loaded", len(all))
	}
	for _, evaluator := range evaluators {
		t.Run(evaluator, func(t *testing.T) {
			ran := 0
			for _, tc := range all {
				t.Run(tc.Filename+"/"+tc.Note, func(t *testing.T) {
					if runComplianceCase(t, evaluator, tc) {
						ran++
					}
				})
			}
			t.Logf("%d of %d cases evaluated", ran, len(all))
		})
	}
}

// runComplianceCase runs one case and reports whether it was evaluated.
func runComplianceCase(t *testing.T, evaluator string, tc cases.TestCase) bool {
	ctx := context.Background()
	for _, skips := range []map[string]string{complianceSkips[""], complianceSkips[evaluator]} {
		if reason, ok := skips[tc.Note]; ok {
			t.Skip(reason)
		}
	}
	if len(tc.Env) > 0 || tc.ExperimentalKeywords {
		t.Skip("needs environment variables or experimental keywords")
	}
	wantErr := tc.WantErrorCode != nil || tc.WantError != nil
	mods := map[string]*ast.Module{}
	for i, m := range tc.Modules {
		parsed, err := ast.ParseModuleWithOpts(fmt.Sprintf("module-%d.rego", i), m, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			if wantErr {
				t.Skip("a parse error, not an evaluation")
			}
			t.Fatal(err)
		}
		mods[fmt.Sprintf("module-%d.rego", i)] = parsed
	}
	compiler := ast.NewCompiler().WithEnablePrintStatements(false)
	if compiler.Compile(mods); compiler.Failed() {
		if wantErr {
			t.Skip("a compile error, not an evaluation")
		}
		t.Fatal(compiler.Errors)
	}
	data := map[string]any{}
	if tc.Data != nil {
		data = *tc.Data
	}
	// The cases expect OPA's default, where a builtin error makes the
	// call undefined, except those marked strict_error, which expect
	// the error of strict mode (nsprov's mode).
	e, err := prepareEvaluator(ctx, evaluator, compiler, data, tc.Query, tc.StrictError)
	if err != nil {
		if wantErr {
			t.Skip("a query compile error, not an evaluation")
		}
		t.Fatalf("compiling: %v", err)
	}
	var input ast.Value
	if tc.InputTerm != nil {
		input = ast.MustParseTerm(*tc.InputTerm).Value
	} else if tc.Input != nil {
		input = ast.MustInterfaceToValue(*tc.Input)
	}
	got := ast.NewSet()
	err = e.Eval(ctx, input, func(r ast.Object) bool {
		obj := ast.NewObject()
		r.Foreach(func(k, v *ast.Term) {
			if !queryVar(string(k.Value.(ast.String))) {
				return
			}
			j, jerr := ast.JSONWithOpt(v.Value, ast.JSONOpt{SortSets: true})
			if jerr != nil {
				t.Fatal(jerr)
			}
			val := ast.MustInterfaceToValue(j)
			if a, ok := val.(*ast.Array); ok && tc.SortBindings {
				val = a.Sorted()
			}
			obj.Insert(k, ast.NewTerm(val))
		})
		got.Add(ast.NewTerm(obj))
		return true
	})
	switch {
	case wantErr:
		if err == nil {
			t.Fatalf("want error %v %v, got results %v", deref(tc.WantErrorCode), deref(tc.WantError), got)
		}
	case err != nil:
		t.Fatalf("error: %v", err)
	case tc.WantDefined != nil:
		if (got.Len() > 0) != *tc.WantDefined {
			t.Fatalf("defined %v, want %v", got.Len() > 0, *tc.WantDefined)
		}
	case tc.WantResult != nil:
		want := ast.NewSet()
		for _, b := range *tc.WantResult {
			obj := ast.NewObject()
			for k, v := range b {
				val := ast.MustInterfaceToValue(v)
				if a, ok := val.(*ast.Array); ok && tc.SortBindings {
					val = a.Sorted()
				}
				obj.Insert(ast.StringTerm(k), ast.NewTerm(val))
			}
			want.Add(ast.NewTerm(obj))
		}
		if want.Compare(got) != 0 {
			t.Fatalf("got  %v\nwant %v", got, want)
		}
	}
	return true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
