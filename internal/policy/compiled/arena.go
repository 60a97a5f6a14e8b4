package compiled

import "github.com/open-policy-agent/opa/v1/ast"

// termArenaChunk is how many terms one allocation of a TermArena holds.
const termArenaChunk = 32

// TermArena hands out terms from chunks: one allocation for many terms
// instead of one each. A chunk is never reused, because its terms may
// outlive the evaluation that made them (results are cached); a chunk stays
// alive as long as any of its terms does. The zero value is ready to use.
// The machine makes its collections with one, and package policy the terms
// of its input.
type TermArena struct{ chunk []ast.Term }

// Term returns a new term holding v.
func (a *TermArena) Term(v ast.Value) *ast.Term {
	if len(a.chunk) == cap(a.chunk) {
		a.chunk = make([]ast.Term, 0, termArenaChunk)
	}
	a.chunk = append(a.chunk, ast.Term{Value: v})
	return &a.chunk[len(a.chunk)-1]
}
