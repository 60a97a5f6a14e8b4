package policy

import "github.com/open-policy-agent/opa/v1/ast"

// termArenaChunk is how many terms one allocation of a termArena holds.
const termArenaChunk = 32

// termArena hands out terms from chunks: one allocation for many terms
// instead of one each. A chunk is never reused, because its terms may
// outlive the evaluation that made them (results are cached); a chunk stays
// alive as long as any of its terms does. The zero value is ready to use.
type termArena struct{ chunk []ast.Term }

func (a *termArena) term(v ast.Value) *ast.Term {
	if len(a.chunk) == cap(a.chunk) {
		a.chunk = make([]ast.Term, 0, termArenaChunk)
	}
	a.chunk = append(a.chunk, ast.Term{Value: v})
	return &a.chunk[len(a.chunk)-1]
}

// str returns the shared term of a known string (see knownStrings), or a new
// one.
func (a *termArena) str(s string) *ast.Term {
	if t, ok := knownStrings[s]; ok {
		return t
	}
	return a.term(ast.String(s))
}
