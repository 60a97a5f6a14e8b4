package compiled

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// Rules of data alone. Many rules of a policy read data and never input: a
// catalogue (access := data.config.access), a set of constants
// (request_keys), a set built from data (reserved_names). Their value is the
// same for every evaluation on the program's data, so the program evaluates
// them once, when it is prepared, and a call returns that value as long as
// its data argument is the program's data document itself. A `with data...`
// replaces the data argument by another term, so calls under it evaluate the
// rule as before (memoized for the with's block); a `with input...` leaves
// the data argument alone, and the rule, reading no input, keeps its value.
// Programs are immutable and a bundle's data never changes (a policy change
// makes a new bundle, with new programs), so the values never go stale.

// findStatic evaluates the program's rules of data alone and keeps their
// values in their functions (irFunc.fixed).
func (p *Program) findStatic() {
	free := inputFreeFuncs(p.funcs)
	m := &machine{}
	for _, fn := range p.funcs {
		// Rules (functions of input and data, memoized) only: a function with
		// more arguments depends on them.
		if !fn.memo || !free[fn] {
			continue
		}
		v, ok := p.evalStatic(m, fn)
		if !ok {
			continue
		}
		if v == nil {
			v = undefinedMemo
		} else {
			p.constTerms[v] = struct{}{}
		}
		fn.fixed = v
	}

}

// evalStatic evaluates a rule of data alone on the program's data; it reports
// false when the evaluation fails (an error, a panic): the rule is then
// evaluated at every call, which fails the same way.
func (p *Program) evalStatic(m *machine, fn *irFunc) (v *ast.Term, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			v, ok = nil, false
		}
	}()
	m.reset(context.Background(), p, func(ast.Object) bool { return false })
	m.fargs = append(m.fargs[:0], nil, p.data)
	v, err := m.call(fn, m.fargs)
	// The values the evaluation made stay with fn.fixed; the machine drops
	// its references to them.
	m.release()
	return v, err == nil
}

// inputFreeFuncs returns which functions never read their input argument
// (their first parameter), directly or through the functions they call, and
// call no nondeterministic builtin: given the same data, they have the same
// value.
func inputFreeFuncs(funcs []*irFunc) map[*irFunc]bool {
	const (
		unknown = iota
		visiting
		yes
		no
	)
	state := map[*irFunc]int{}
	var free func(fn *irFunc) bool
	free = func(fn *irFunc) bool {
		if fn.builtin != nil {
			return !fn.clock
		}
		switch state[fn] {
		case yes:
			return true
		case no, visiting:
			// Rego has no recursion; should a plan call back into a
			// function being analysed, it is not taken as free.
			return false
		}
		state[fn] = visiting
		ok := len(fn.params) >= 2
		if ok {
			in := fn.params[0]
			for _, b := range fn.blocks {
				if !blockInputFree(b, in, free) {
					ok = false
					break
				}
			}
		}
		state[fn] = no
		if ok {
			state[fn] = yes
		}
		return ok
	}
	out := map[*irFunc]bool{}
	for _, fn := range funcs {
		out[fn] = free(fn)
	}
	return out
}

// blockInputFree reports whether the statements of b never read the local
// in, other than to pass it on as the input of a function that never reads it
// either.
func blockInputFree(b *ir.Block, in ir.Local, free func(*irFunc) bool) bool {
	isIn := func(o ir.Operand) bool {
		l, ok := o.Value.(ir.Local)
		return ok && l == in
	}
	for _, s := range b.Stmts {
		switch s := s.(type) {
		case *callStmt:
			if !free(s.fn) {
				return false
			}
			for i, a := range s.Args {
				// A function's first argument is its input.
				if isIn(a) && (i != 0 || s.fn.builtin != nil) {
					return false
				}
			}
			if s.Result == in {
				return false
			}
			continue
		case *ir.CallDynamicStmt:
			// Which function it calls is known only when it runs.
			return false
		case *ir.WithStmt:
			if s.Local == in {
				return false
			}
		}
		u, err := usesOf(s)
		if err != nil {
			return false
		}
		for _, l := range u.locals {
			if l == in {
				return false
			}
		}
		for _, o := range u.operands {
			if isIn(o) {
				return false
			}
		}
		for _, inner := range u.blocks {
			if !blockInputFree(inner, in, free) {
				return false
			}
		}
	}
	return true
}
