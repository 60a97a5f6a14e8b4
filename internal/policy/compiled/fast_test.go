package compiled

import (
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestFastBuiltinsMatchOPA calls each replacement and OPA's own
// implementation with the same operands and compares result and error.
func TestFastBuiltinsMatchOPA(t *testing.T) {
	operands := map[string][][]*ast.Term{
		ast.Replace.Name: {
			strs("foo.bar.baz", ".", ","),
			strs("foo...bar", "..", ",,"),
			strs("aaaa", "aa", "a"),    // matches do not overlap
			strs("abab", "ab", "abab"), // the replacement is not searched again
			strs("no match", "x", "y"),
			strs("same", "s", "s"),
			strs("", "hi", "bye"),
			strs("héllo", "", "-"),    // empty old: OPA's implementation
			strs("\xff\xfe", "", "-"), // invalid UTF-8
			strs("\xff.\xfe", ".", "\xff"),
			strs("{team}-admins", "{team}", "payments"),
			{ast.StringTerm("a"), ast.NumberTerm("1"), ast.StringTerm("b")},
			{ast.NullTerm(), ast.StringTerm("a"), ast.StringTerm("b")},
		},
	}
	for name, fast := range fastBuiltins {
		opa := topdown.GetBuiltin(name)
		mine := fast(opa)
		for _, ops := range operands[name] {
			want, wantErr := call(opa, ops)
			got, gotErr := call(mine, ops)
			if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || fmt.Sprint(want) != fmt.Sprint(got) {
				t.Errorf("%s%v = %v, %v; OPA's gives %v, %v", name, ops, got, gotErr, want, wantErr)
			}
			if len(ops) > 0 && want != nil && got != nil && (want == ops[0]) != (got == ops[0]) {
				t.Errorf("%s%v: OPA returns its first operand itself: %v, this one: %v", name, ops, want == ops[0], got == ops[0])
			}
		}
		if len(operands[name]) == 0 {
			t.Errorf("builtin %s is replaced but has no test operands", name)
		}
	}
}

func strs(s ...string) []*ast.Term {
	out := make([]*ast.Term, len(s))
	for i, v := range s {
		out[i] = ast.StringTerm(v)
	}
	return out
}

func call(bi topdown.BuiltinFunc, ops []*ast.Term) (*ast.Term, error) {
	var out *ast.Term
	err := bi(topdown.BuiltinContext{}, ops, func(t *ast.Term) error {
		out = t
		return nil
	})
	return out, err
}
