package compiled

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
)

var (
	trueTerm  = ast.BooleanTerm(true)
	falseTerm = ast.BooleanTerm(false)
)

// machine holds the state of one evaluation; machines are pooled.
type machine struct {
	ctx     context.Context
	prog    *Program
	result  func(ast.Object) bool // the caller's yield; nil: keep the first result
	first   ast.Object            // the first result, when result is nil
	more    bool                  // yield asked for more results
	stack   []*ast.Term
	memo    []*ast.Term    // per function: nil when not yet evaluated
	args    []*ast.Term    // a builtin's operands
	fargs   []*ast.Term    // a function's arguments, copied into its frame on entry
	items   [][2]*ast.Term // an object literal's items (objectStmt)
	frames  []*frame       // by call depth
	depth   int
	out     *ast.Term
	capture func(*ast.Term) error
	cache   builtins.Cache
	steps   int
	// scanners by nesting level, and the terms of values the evaluation
	// makes.
	scanners  []*scanner
	scanDepth int
	terms     TermArena
	now       *ast.Term // the evaluation's time, for nondeterministic builtins
}

var undefinedMemo = ast.NewTerm(ast.String("<undefined>"))

func (m *machine) reset(ctx context.Context, p *Program, result func(ast.Object) bool) {
	m.ctx, m.prog, m.result, m.more, m.steps = ctx, p, result, true, 0
	m.terms = TermArena{} // results may keep the last evaluation's terms
	if cap(m.memo) < len(p.funcs) {
		m.memo = make([]*ast.Term, len(p.funcs))
	}
	m.memo = m.memo[:len(p.funcs)]
	clear(m.memo)
	if m.capture == nil {
		m.capture = func(t *ast.Term) error {
			m.out = t
			return nil
		}
		m.cache = builtins.Cache{}
		m.stack = make([]*ast.Term, 0, 512)
	}
}

// release drops the references to the evaluation's values so a pooled
// machine keeps nothing alive.
func (m *machine) release() {
	clear(m.stack[:cap(m.stack)])
	m.stack = m.stack[:0]
	clear(m.memo)
	clear(m.args[:cap(m.args)])
	clear(m.fargs[:cap(m.fargs)])
	clear(m.cache)
	m.ctx, m.result, m.first, m.out, m.now = nil, nil, nil, nil, nil
	m.terms = TermArena{}
}

// Block outcomes besides a break count (0 or more): the block ran to its end,
// or a function returned.
const (
	completed = -1
	returned  = -2
)

type frame struct {
	locals []*ast.Term
	ret    *ast.Term
}

// call runs a function with its arguments and returns its value, nil when
// undefined.
func (m *machine) call(fn *irFunc, args []*ast.Term) (*ast.Term, error) {
	if fn.fixed != nil && args[1] == m.prog.data {
		// A rule of data alone, called on the program's data (static.go).
		if fn.fixed == undefinedMemo {
			return nil, nil
		}
		return fn.fixed, nil
	}
	if fn.memo && len(m.memo) > fn.index && fn.index >= 0 {
		if v := m.memo[fn.index]; v != nil {
			if v == undefinedMemo {
				return nil, nil
			}
			return v, nil
		}
	}
	if m.steps++; m.steps&63 == 0 {
		if err := m.ctx.Err(); err != nil {
			return nil, err
		}
	}
	base := len(m.stack)
	if cap(m.stack)-base < fn.nlocals {
		grown := make([]*ast.Term, base, 2*cap(m.stack)+fn.nlocals)
		copy(grown, m.stack)
		m.stack = grown
	}
	m.stack = m.stack[:base+fn.nlocals]
	if m.depth == len(m.frames) {
		m.frames = append(m.frames, &frame{})
	}
	f := m.frames[m.depth]
	m.depth++
	f.locals, f.ret = m.stack[base:base+fn.nlocals], nil
	clear(f.locals)
	for i, l := range fn.params {
		f.locals[l] = args[i]
	}
	var err error
	for _, b := range fn.blocks {
		var r int
		r, err = m.block(f, b)
		if err != nil || r == returned {
			break
		}
	}
	if err == nil && f.ret == nil {
		f.ret = f.locals[fn.ret]
	}
	ret := f.ret
	clear(f.locals)
	f.locals, f.ret = nil, nil
	m.depth--
	m.stack = m.stack[:base]
	if err != nil {
		return nil, err
	}
	if fn.memo && fn.index >= 0 && fn.index < len(m.memo) {
		if ret == nil {
			m.memo[fn.index] = undefinedMemo
		} else {
			m.memo[fn.index] = ret
		}
	}
	return ret, nil
}

func (m *machine) operand(f *frame, o ir.Operand) *ast.Term {
	switch v := o.Value.(type) {
	case ir.Local:
		return f.locals[v]
	case ir.StringIndex:
		return m.prog.strings[v]
	case ir.Bool:
		if v {
			return trueTerm
		}
		return falseTerm
	}
	return nil
}
