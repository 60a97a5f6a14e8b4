package compiled

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// fastBuiltins replace OPA's implementation of a builtin where that one
// does work a call does not need; each gives the same result for every
// operand (OPA's evaluation test suite runs through them in package policy)
// and hands the cases it does not cover to OPA's.
var fastBuiltins = map[string]func(opa topdown.BuiltinFunc) topdown.BuiltinFunc{
	ast.Replace.Name: fastReplace,
}

// fastReplace is replace(s, old, new) without building a strings.Replacer
// (and its string finder's tables) for every call, as OPA's does: for a
// non-empty old, a single-pair Replacer replaces the non-overlapping matches
// from left to right, which is what strings.ReplaceAll does. An empty old (a
// Replacer inserts new between bytes, ReplaceAll between UTF-8 sequences)
// and operands that are not strings go to OPA's implementation.
func fastReplace(opa topdown.BuiltinFunc) topdown.BuiltinFunc {
	return func(bctx topdown.BuiltinContext, operands []*ast.Term, iter func(*ast.Term) error) error {
		s, ok1 := operands[0].Value.(ast.String)
		old, ok2 := operands[1].Value.(ast.String)
		n, ok3 := operands[2].Value.(ast.String)
		if !ok1 || !ok2 || !ok3 || old == "" {
			return opa(bctx, operands, iter)
		}
		if old == n || !strings.Contains(string(s), string(old)) {
			// Unchanged: OPA returns the operand itself.
			return iter(operands[0])
		}
		return iter(ast.InternedTerm(strings.ReplaceAll(string(s), string(old), string(n))))
	}
}
