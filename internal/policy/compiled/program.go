package compiled

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Program is an executable plan. It is immutable once prepared and safe for
// concurrent use.
type Program struct {
	plan    *irFunc
	funcs   []*irFunc
	byName  map[string]*irFunc
	tree    *funcTree // functions by data path, for CallDynamicStmt
	strings []*ast.Term
	data    *ast.Term
	// constTerms holds the values of the constStmts, which no evaluation may
	// modify.
	constTerms map[*ast.Term]struct{}
	// strict: a builtin's error fails the evaluation (as rego's
	// StrictBuiltinErrors(true), which nsprov uses); otherwise the call is
	// undefined, as OPA does by default.
	strict bool
	pool   sync.Pool
}

type irFunc struct {
	name    string
	index   int
	params  []ir.Local
	ret     ir.Local
	blocks  []*ir.Block
	nlocals int
	memo    bool
	builtin topdown.BuiltinFunc // set for builtins, which have no blocks
	// clock: the builtin reads the evaluation's time (time.now_ns, http.send
	// and the other nondeterministic builtins).
	clock bool
	// relation: the builtin has many outputs (walk); the plan expects them
	// as one array.
	relation bool
	// fixed is the value of a rule of data alone on the program's data
	// (undefinedMemo when undefined), evaluated once (see static.go); nil
	// for every other function.
	fixed *ast.Term
}

type funcTree struct {
	fn       *irFunc
	children map[string]*funcTree
}

// New checks a planned policy and prepares it to run on data, the whole data
// document. It fails when the policy calls a builtin OPA does not implement
// or uses a statement this evaluator does not know.
func New(pol *ir.Policy, data ast.Value) (*Program, error) {
	if pol.Plans == nil || len(pol.Plans.Plans) != 1 {
		return nil, errors.New("compiled evaluation needs exactly one plan")
	}
	p := &Program{byName: map[string]*irFunc{}, tree: &funcTree{}, constTerms: map[*ast.Term]struct{}{}, strict: true}
	if data != nil {
		p.data = ast.NewTerm(data)
	}
	if pol.Static != nil {
		for _, s := range pol.Static.Strings {
			p.strings = append(p.strings, ast.StringTerm(s.Value))
		}
	}
	if pol.Funcs != nil {
		for i, f := range pol.Funcs.Funcs {
			fn := &irFunc{name: f.Name, index: i, params: f.Params, ret: f.Return, blocks: f.Blocks, memo: len(f.Params) == 2}
			p.funcs = append(p.funcs, fn)
			p.byName[f.Name] = fn
			p.tree.add(f.Path, fn)
		}
	}
	plan := pol.Plans.Plans[0]
	p.plan = &irFunc{name: plan.Name, index: -1, params: []ir.Local{ir.Input, ir.Data}, blocks: plan.Blocks}
	for _, fn := range append([]*irFunc{p.plan}, p.funcs...) {
		p.foldConstants(fn)
		highest := int(fn.ret)
		for _, l := range fn.params {
			highest = max(highest, int(l))
		}
		for _, b := range fn.blocks {
			m, err := p.prepareBlock(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fn.name, err)
			}
			highest = max(highest, m)
		}
		fn.nlocals = highest + 1
		p.foldDataPaths(fn)
	}
	p.findStatic()
	p.pool.New = func() any { return &machine{} }
	return p, nil
}

// add places fn at path in the tree; an empty path adds nothing.
func (t *funcTree) add(path []string, fn *irFunc) {
	if len(path) == 0 {
		return
	}
	node := t
	for _, seg := range path {
		if node.children == nil {
			node.children = map[string]*funcTree{}
		}
		next := node.children[seg]
		if next == nil {
			next = &funcTree{}
			node.children[seg] = next
		}
		node = next
	}
	node.fn = fn
}

// SetStrictBuiltinErrors selects what a builtin's error does: with strict
// (the default, as rego's StrictBuiltinErrors(true) that nsprov uses) it
// fails the evaluation; without, the call is undefined, as OPA does by
// default. Call it before the program evaluates.
func (p *Program) SetStrictBuiltinErrors(strict bool) { p.strict = strict }

// Eval runs the plan on input (nil: no input) and calls yield with each
// result, an object from the query's variable names to their values, until
// yield returns false; the evaluation itself runs to its end, so an error
// after the first result still fails it, as it does in topdown.
func (p *Program) Eval(ctx context.Context, input ast.Value, yield func(ast.Object) bool) error {
	_, err := p.run(ctx, input, yield)
	return err
}

// First runs the plan on input (nil: no input) and returns its first result,
// nil when it has none. As with Eval, the evaluation runs to its end.
func (p *Program) First(ctx context.Context, input ast.Value) (ast.Object, error) {
	return p.run(ctx, input, nil)
}

// run evaluates the plan; with a nil yield it returns the first result.
func (p *Program) run(ctx context.Context, input ast.Value, yield func(ast.Object) bool) (first ast.Object, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := p.pool.Get().(*machine)
	defer func() {
		// A builtin may panic on a context it does not expect; the request
		// gets an error, the webhook keeps serving, and the machine, whose
		// state is unknown, is dropped.
		if r := recover(); r != nil {
			first, err = nil, fmt.Errorf("compiled evaluation failed: %v; run nsprov with --policy-evaluator topdown and report the policy", r)
			return
		}
		p.pool.Put(m)
	}()
	m.reset(ctx, p, yield)
	var in *ast.Term
	if input != nil {
		in = m.terms.Term(input)
	}
	m.fargs = append(m.fargs[:0], in, p.data)
	_, err = m.call(p.plan, m.fargs)
	first = m.first
	m.release()
	if err != nil {
		return nil, err
	}
	return first, nil
}
