package policy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
)

// Compiled evaluation.
//
// OPA's planner turns a query and the modules it reaches into OPA's
// intermediate representation (package ir): the plan that `opa build -t plan`
// writes and that OPA compiles to WebAssembly. Rules become functions of
// blocks of simple statements over numbered locals; every rule body, `not`,
// `some ... in`, comprehension and builtin call is already resolved. A
// program runs such a plan directly on OPA's values and calls OPA's own
// builtin implementations. Compared with OPA's evaluator (topdown), it does
// no unification, keeps no binding lists and copies no data references, so
// one decision allocates a fraction of what topdown needs. The results are the
// same: the tests run OPA's own evaluation test suite through programs and
// compare them with topdown on every rule of the bundle.
//
// The statements' meaning follows OPA's WebAssembly compiler, the reference
// for this representation:
//   - a statement that does not hold (an undefined value, a false
//     comparison) leaves the block it is in; the statement after the block
//     runs next;
//   - BreakStmt{Index: n} leaves n+1 enclosing blocks; the block of a scan
//     counts twice (its first level is one iteration, the second the loop);
//   - a function runs its blocks in order until one returns;
//   - functions of input and data alone (complete and partial rules) are
//     memoized for one evaluation, and a `with` evaluates under fresh memos.

// irTarget is the rego target name under which the planner's output reaches
// newProgram. It is registered once per process.
const irTarget = "nsprov-compiled"

func init() { rego.RegisterPlugin(irTarget, irPlugin{}) }

// irPlugin receives the planned policy from the rego package, which has
// parsed, compiled and planned the query; compileQuery takes the program from
// it, and the bundle calls programs directly.
type irPlugin struct{}

func (irPlugin) IsTarget(t string) bool { return t == irTarget }

func (irPlugin) PrepareForEval(ctx context.Context, pol *ir.Policy, opts ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	var cfg rego.PrepareConfig
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.BuiltinFuncs()) > 0 {
		return nil, errors.New("compiled evaluation does not support custom builtin functions")
	}
	slot, ok := ctx.Value(planSlotKey{}).(*planSlot)
	if !ok {
		return nil, errors.New("the " + irTarget + " target is prepared only by policy.Bundle")
	}
	p, err := newProgram(pol)
	if err != nil {
		return nil, err
	}
	slot.prog = p
	return p, nil
}

// compileQuery plans a query (Rego text) with OPA's planner and prepares it
// to run on data, the whole data document.
func compileQuery(ctx context.Context, compiler *ast.Compiler, store storage.Store, data ast.Value, query string) (*program, error) {
	slot := &planSlot{}
	_, err := rego.New(
		rego.Query(query),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.Target(irTarget),
	).PrepareForEval(context.WithValue(ctx, planSlotKey{}, slot))
	if err != nil {
		return nil, err
	}
	if slot.prog == nil {
		return nil, errors.New("the planner produced no program")
	}
	slot.prog.data = ast.NewTerm(data)
	return slot.prog, nil
}

// planSlot carries a program from the plugin back to the bundle that asked
// the rego package to plan a query.
type planSlot struct{ prog *program }

type planSlotKey struct{}

// program is an executable plan. It is immutable and safe for concurrent use.
type program struct {
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
}

type funcTree struct {
	fn       *irFunc
	children map[string]*funcTree
}

var (
	trueTerm  = ast.BooleanTerm(true)
	falseTerm = ast.BooleanTerm(false)
)

// newProgram checks a planned policy and prepares it to run. It fails when the
// policy calls a builtin OPA does not implement or uses a statement this
// evaluator does not know.
func newProgram(pol *ir.Policy) (*program, error) {
	if pol.Plans == nil || len(pol.Plans.Plans) != 1 {
		return nil, errors.New("compiled evaluation needs exactly one plan")
	}
	p := &program{byName: map[string]*irFunc{}, tree: &funcTree{}, constTerms: map[*ast.Term]struct{}{}, strict: true}
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
			if len(f.Path) > 0 {
				node := p.tree
				for _, seg := range f.Path {
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
		}
	}
	plan := pol.Plans.Plans[0]
	p.plan = &irFunc{name: plan.Name, index: -1, params: []ir.Local{ir.Input, ir.Data}, blocks: plan.Blocks}
	for _, fn := range append([]*irFunc{p.plan}, p.funcs...) {
		p.foldConstants(fn)
		max := int(fn.ret)
		for _, l := range fn.params {
			max = maxInt(max, int(l))
		}
		for _, b := range fn.blocks {
			m, err := p.prepareBlock(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fn.name, err)
			}
			max = maxInt(max, m)
		}
		fn.nlocals = max + 1
	}
	p.pool.New = func() any { return &machine{} }
	return p, nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// callStmt is a CallStmt with its function resolved when the program is
// prepared.
type callStmt struct {
	*ir.CallStmt
	fn *irFunc
}

// constStmt sets a local to a constant made when the program is prepared:
// the null or number of a Make or AssignInt statement, or a literal array,
// set or object of strings and booleans, which the planner builds with
// several statements on every evaluation.
type constStmt struct {
	Target ir.Local
	Value  *ast.Term
	ir.Location
}

// foldConstants replaces each literal collection of fn (a Make statement
// followed by appends or inserts of constants) by a constStmt. The shared
// value is never modified: a collection is folded only when those appends
// and inserts are the only statements of fn that modify its local.
func (p *program) foldConstants(fn *irFunc) {
	mutations := map[ir.Local]int{}
	var count func(b *ir.Block)
	count = func(b *ir.Block) {
		for _, s := range b.Stmts {
			switch s := s.(type) {
			case *ir.ArrayAppendStmt:
				mutations[s.Array]++
			case *ir.SetAddStmt:
				mutations[s.Set]++
			case *ir.ObjectInsertStmt:
				mutations[s.Object]++
			case *ir.ObjectInsertOnceStmt:
				mutations[s.Object]++
			case *ir.BlockStmt:
				for _, inner := range s.Blocks {
					count(inner)
				}
			case *ir.ScanStmt:
				count(s.Block)
			case *ir.NotStmt:
				count(s.Block)
			case *ir.WithStmt:
				count(s.Block)
			}
		}
	}
	for _, b := range fn.blocks {
		count(b)
	}
	constant := func(o ir.Operand) (*ast.Term, bool) {
		switch v := o.Value.(type) {
		case ir.StringIndex:
			if int(v) < len(p.strings) {
				return p.strings[v], true
			}
		case ir.Bool:
			return ast.InternedTerm(bool(v)), true
		}
		return nil, false
	}
	var fold func(b *ir.Block)
	fold = func(b *ir.Block) {
		out := b.Stmts[:0]
		for i := 0; i < len(b.Stmts); i++ {
			s := b.Stmts[i]
			switch s := s.(type) {
			case *ir.BlockStmt:
				for _, inner := range s.Blocks {
					fold(inner)
				}
			case *ir.ScanStmt:
				fold(s.Block)
			case *ir.NotStmt:
				fold(s.Block)
			case *ir.WithStmt:
				fold(s.Block)
			}
			if target, value, n, ok := p.literal(s, b.Stmts[i+1:], constant); ok && n == mutations[target] {
				// The run holds every modification of target in fn.
				out = append(out, &constStmt{Target: target, Value: value, Location: *s.GetLocation()})
				i += n
				continue
			}
			out = append(out, s)
		}
		b.Stmts = out
	}
	for _, b := range fn.blocks {
		fold(b)
	}
}

// literal recognises a literal collection: a Make statement followed by
// appends or inserts of constants (constant tells them) into its local. It
// returns the local, the collection and how many statements after the Make
// statement build it.
func (p *program) literal(s ir.Stmt, rest []ir.Stmt, constant func(ir.Operand) (*ast.Term, bool)) (ir.Local, *ast.Term, int, bool) {
	var target ir.Local
	var value *ast.Term
	// add adds the constant of one statement to value, or reports that the
	// statement is not part of the literal.
	var add func(ir.Stmt) bool
	switch m := s.(type) {
	case *ir.MakeArrayStmt:
		target, value = m.Target, ast.ArrayTerm()
		add = func(s ir.Stmt) bool {
			a, ok := s.(*ir.ArrayAppendStmt)
			if !ok || a.Array != target {
				return false
			}
			v, ok := constant(a.Value)
			if ok {
				value.Value = value.Value.(*ast.Array).Append(v)
			}
			return ok
		}
	case *ir.MakeSetStmt:
		target, value = m.Target, ast.SetTerm()
		add = func(s ir.Stmt) bool {
			a, ok := s.(*ir.SetAddStmt)
			if !ok || a.Set != target {
				return false
			}
			v, ok := constant(a.Value)
			if ok {
				value.Value.(ast.Set).Add(v)
			}
			return ok
		}
	case *ir.MakeObjectStmt:
		target, value = m.Target, ast.ObjectTerm()
		add = func(s ir.Stmt) bool {
			a, ok := s.(*ir.ObjectInsertStmt)
			if !ok || a.Object != target {
				return false
			}
			k, ok1 := constant(a.Key)
			v, ok2 := constant(a.Value)
			if ok1 && ok2 {
				value.Value.(ast.Object).Insert(k, v)
			}
			return ok1 && ok2
		}
	default:
		return 0, nil, 0, false
	}
	n := 0
	for n < len(rest) && add(rest[n]) {
		n++
	}
	return target, value, n, true
}

// prepareBlock resolves the functions, builtins and constants of a block and
// returns the highest local it uses.
func (p *program) prepareBlock(b *ir.Block) (int, error) {
	max := 0
	local := func(l ir.Local) { max = maxInt(max, int(l)) }
	operand := func(o ir.Operand) error {
		switch v := o.Value.(type) {
		case ir.Local:
			local(v)
		case ir.StringIndex:
			if int(v) >= len(p.strings) {
				return fmt.Errorf("string constant %d is out of range", v)
			}
		}
		return nil
	}
	nested := func(b *ir.Block) error {
		m, err := p.prepareBlock(b)
		max = maxInt(max, m)
		return err
	}
	for i, s := range b.Stmts {
		var err error
		switch s := s.(type) {
		case *ir.CallStmt:
			local(s.Result)
			for _, a := range s.Args {
				if err = operand(a); err != nil {
					break
				}
			}
			if err == nil && p.byName[s.Func] == nil {
				bi := topdown.GetBuiltin(s.Func)
				if bi == nil {
					return 0, fmt.Errorf("builtin %s is not available", s.Func)
				}
				fn := &irFunc{name: s.Func, index: -1, builtin: bi}
				if decl, ok := ast.BuiltinMap[s.Func]; ok {
					fn.clock, fn.relation = decl.Nondeterministic, decl.Relation
				}
				p.byName[s.Func] = fn
			}
			if err == nil {
				b.Stmts[i] = &callStmt{CallStmt: s, fn: p.byName[s.Func]}
			}
		case *ir.CallDynamicStmt:
			local(s.Result)
			for _, a := range s.Args {
				local(a)
			}
			for _, o := range s.Path {
				if err = operand(o); err != nil {
					break
				}
			}
		case *ir.BlockStmt:
			for _, inner := range s.Blocks {
				if err = nested(inner); err != nil {
					break
				}
			}
		case *ir.ScanStmt:
			local(s.Source)
			local(s.Key)
			local(s.Value)
			err = nested(s.Block)
		case *ir.NotStmt:
			err = nested(s.Block)
		case *ir.WithStmt:
			local(s.Local)
			if err = operand(s.Value); err == nil {
				err = nested(s.Block)
			}
			for _, i := range s.Path {
				if i < 0 || i >= len(p.strings) {
					err = fmt.Errorf("string constant %d is out of range", i)
				}
			}
		case *ir.ReturnLocalStmt:
			local(s.Source)
		case *ir.BreakStmt, *ir.NopStmt:
		case *ir.DotStmt:
			local(s.Target)
			if err = operand(s.Source); err == nil {
				err = operand(s.Key)
			}
		case *ir.LenStmt:
			local(s.Target)
			err = operand(s.Source)
		case *ir.AssignIntStmt:
			local(s.Target)
			b.Stmts[i] = &constStmt{Target: s.Target, Value: ast.InternedTerm(int(s.Value)), Location: s.Location}
		case *ir.AssignVarStmt:
			local(s.Target)
			err = operand(s.Source)
		case *ir.AssignVarOnceStmt:
			local(s.Target)
			err = operand(s.Source)
		case *ir.ResetLocalStmt:
			local(s.Target)
		case *ir.MakeNullStmt:
			local(s.Target)
			b.Stmts[i] = &constStmt{Target: s.Target, Value: ast.InternedNullTerm, Location: s.Location}
		case *ir.MakeNumberIntStmt:
			local(s.Target)
			b.Stmts[i] = &constStmt{Target: s.Target, Value: ast.InternedTerm(int(s.Value)), Location: s.Location}
		case *ir.MakeNumberRefStmt:
			local(s.Target)
			if s.Index < 0 || s.Index >= len(p.strings) {
				return 0, fmt.Errorf("number constant %d is out of range", s.Index)
			}
			b.Stmts[i] = &constStmt{Target: s.Target, Value: ast.NewTerm(ast.Number(p.strings[s.Index].Value.(ast.String))), Location: s.Location}
		case *ir.MakeArrayStmt:
			local(s.Target)
		case *ir.MakeObjectStmt:
			local(s.Target)
		case *ir.MakeSetStmt:
			local(s.Target)
		case *ir.EqualStmt:
			if err = operand(s.A); err == nil {
				err = operand(s.B)
			}
		case *ir.NotEqualStmt:
			if err = operand(s.A); err == nil {
				err = operand(s.B)
			}
		case *ir.IsArrayStmt:
			err = operand(s.Source)
		case *ir.IsObjectStmt:
			err = operand(s.Source)
		case *ir.IsSetStmt:
			err = operand(s.Source)
		case *ir.IsDefinedStmt:
			local(s.Source)
		case *ir.IsUndefinedStmt:
			local(s.Source)
		case *ir.ArrayAppendStmt:
			local(s.Array)
			err = operand(s.Value)
		case *ir.ObjectInsertStmt:
			local(s.Object)
			if err = operand(s.Key); err == nil {
				err = operand(s.Value)
			}
		case *ir.ObjectInsertOnceStmt:
			local(s.Object)
			if err = operand(s.Key); err == nil {
				err = operand(s.Value)
			}
		case *ir.ObjectMergeStmt:
			local(s.A)
			local(s.B)
			local(s.Target)
		case *ir.SetAddStmt:
			local(s.Set)
			err = operand(s.Value)
		case *ir.ResultSetAddStmt:
			local(s.Value)
		case *constStmt:
			local(s.Target)
			p.constTerms[s.Value] = struct{}{}
		default:
			return 0, fmt.Errorf("statement %T is not supported", s)
		}
		if err != nil {
			return 0, err
		}
	}
	return max, nil
}

// Eval runs the plan for the rego package (TargetPluginEval): it returns the
// set of result bindings. compileQuery sets the program's data after
// planning; nothing evaluates before that.
func (p *program) Eval(ctx context.Context, ectx *rego.EvalContext, _ ast.Value) (ast.Value, error) {
	if p.data == nil {
		return nil, errors.New("the " + irTarget + " target is evaluated only by policy.Bundle")
	}
	input := ectx.ParsedInput()
	results := ast.NewSet()
	err := p.run(ctx, input, func(r *ast.Term) { results.Add(r) })
	return results, err
}

// first runs the plan on input and returns its first result: an object of the
// query's variables, or nil when the query is undefined.
func (p *program) first(ctx context.Context, input ast.Value) (ast.Object, error) {
	var first ast.Object
	err := p.run(ctx, input, func(r *ast.Term) {
		if obj, ok := r.Value.(ast.Object); ok && first == nil {
			first = obj
		}
	})
	return first, err
}

func (p *program) run(ctx context.Context, input ast.Value, result func(*ast.Term)) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := p.pool.Get().(*machine)
	defer func() {
		// A builtin may panic on a context it does not expect; the request
		// gets an error, the webhook keeps serving, and the machine, whose
		// state is unknown, is dropped.
		if r := recover(); r != nil {
			err = fmt.Errorf("compiled evaluation failed: %v; run nsprov with --policy-evaluator topdown and report the policy", r)
			return
		}
		p.pool.Put(m)
	}()
	m.reset(ctx, p, result)
	var in *ast.Term
	if input != nil {
		in = ast.NewTerm(input)
	}
	m.fargs = append(m.fargs[:0], in, p.data)
	_, err = m.call(p.plan, m.fargs)
	m.release()
	return err
}

// machine holds the state of one evaluation; machines are pooled.
type machine struct {
	ctx     context.Context
	prog    *program
	result  func(*ast.Term)
	stack   []*ast.Term
	memo    []*ast.Term // per function: nil when not yet evaluated
	args    []*ast.Term // a builtin's operands
	fargs   []*ast.Term // a function's arguments, copied into its frame on entry
	frames  []*frame    // by call depth
	depth   int
	out     *ast.Term
	capture func(*ast.Term) error
	cache   builtins.Cache
	steps   int
	// scanners by nesting level, and the terms of values the evaluation
	// makes.
	scanners  []*scanner
	scanDepth int
	terms     termArena
	now       *ast.Term // the evaluation's time, for nondeterministic builtins
}

var undefinedMemo = ast.NewTerm(ast.String("<undefined>"))

func (m *machine) reset(ctx context.Context, p *program, result func(*ast.Term)) {
	m.ctx, m.prog, m.result, m.steps = ctx, p, result, 0
	m.terms = termArena{} // results may keep the last evaluation's terms
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
	m.ctx, m.result, m.out, m.now = nil, nil, nil, nil
	m.terms = termArena{}
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

// block runs the statements of b. It returns completed, returned, or the
// number of enclosing blocks the caller must leave as well (0: only b was
// left).
func (m *machine) block(f *frame, b *ir.Block) (int, error) {
	for _, s := range b.Stmts {
		switch s := s.(type) {
		case *callStmt:
			v, err := m.callStmt(f, s.CallStmt, s.fn)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			f.locals[s.Result] = v
		case *ir.DotStmt:
			v := dot(m.operand(f, s.Source), m.operand(f, s.Key))
			if v == nil {
				return 0, nil
			}
			f.locals[s.Target] = v
		case *ir.AssignVarStmt:
			f.locals[s.Target] = m.operand(f, s.Source)
		case *ir.AssignVarOnceStmt:
			v := m.operand(f, s.Source)
			if cur := f.locals[s.Target]; cur != nil {
				if ast.Compare(cur.Value, v.Value) != 0 {
					return 0, conflict(s.Location, "complete rules must not produce multiple outputs")
				}
				continue
			}
			f.locals[s.Target] = v
		case *ir.ResetLocalStmt:
			f.locals[s.Target] = nil
		case *ir.NotEqualStmt:
			a, b := m.operand(f, s.A), m.operand(f, s.B)
			if a == nil || b == nil || ast.Compare(a.Value, b.Value) == 0 {
				return 0, nil
			}
		case *ir.EqualStmt:
			a, b := m.operand(f, s.A), m.operand(f, s.B)
			if a == nil || b == nil || ast.Compare(a.Value, b.Value) != 0 {
				return 0, nil
			}
		case *ir.IsDefinedStmt:
			if f.locals[s.Source] == nil {
				return 0, nil
			}
		case *ir.IsUndefinedStmt:
			if f.locals[s.Source] != nil {
				return 0, nil
			}
		case *ir.BlockStmt:
			for _, inner := range s.Blocks {
				r, err := m.block(f, inner)
				if err != nil {
					return 0, err
				}
				if r == returned {
					return returned, nil
				}
				if r > 0 {
					return r - 1, nil
				}
			}
		case *ir.BreakStmt:
			return int(s.Index), nil
		case *ir.ReturnLocalStmt:
			f.ret = f.locals[s.Source]
			return returned, nil
		case *ir.NotStmt:
			r, err := m.block(f, s.Block)
			if err != nil {
				return 0, err
			}
			switch {
			case r == completed:
				return 0, nil
			case r == returned:
				return returned, nil
			case r > 0:
				return r - 1, nil
			}
		case *ir.ScanStmt:
			r, err := m.scan(f, s)
			if err != nil {
				return 0, err
			}
			if r == returned || r >= 0 {
				return r, nil
			}
		case *ir.MakeObjectStmt:
			f.locals[s.Target] = m.terms.term(ast.NewObject())
		case *ir.MakeSetStmt:
			f.locals[s.Target] = m.terms.term(ast.NewSet())
		case *ir.MakeArrayStmt:
			f.locals[s.Target] = m.terms.term(ast.NewArrayWithCapacity(int(s.Capacity)))
		case *ir.ObjectInsertStmt:
			t := m.mutable(f, s.Object)
			obj, ok := t.Value.(ast.Object)
			if !ok {
				return 0, fmt.Errorf("internal error: object insert into %s", ast.ValueName(t.Value))
			}
			obj.Insert(m.operand(f, s.Key), m.operand(f, s.Value))
		case *ir.ObjectInsertOnceStmt:
			t := m.mutable(f, s.Object)
			obj, ok := t.Value.(ast.Object)
			if !ok {
				return 0, fmt.Errorf("internal error: object insert into %s", ast.ValueName(t.Value))
			}
			k, v := m.operand(f, s.Key), m.operand(f, s.Value)
			if cur := obj.Get(k); cur != nil {
				if ast.Compare(cur.Value, v.Value) != 0 {
					return 0, conflict(s.Location, "object keys must be unique")
				}
				continue
			}
			obj.Insert(k, v)
		case *ir.SetAddStmt:
			t := m.mutable(f, s.Set)
			set, ok := t.Value.(ast.Set)
			if !ok {
				return 0, fmt.Errorf("internal error: set add to %s", ast.ValueName(t.Value))
			}
			set.Add(m.operand(f, s.Value))
		case *ir.ArrayAppendStmt:
			t := m.mutable(f, s.Array)
			arr, ok := t.Value.(*ast.Array)
			if !ok {
				return 0, fmt.Errorf("internal error: array append to %s", ast.ValueName(t.Value))
			}
			// In place, as OPA's WebAssembly runtime appends: the array was
			// made for this local and nothing else refers to it yet.
			*arr = *arr.Append(m.operand(f, s.Value))
		case *ir.LenStmt:
			n, ok := length(m.operand(f, s.Source))
			if !ok {
				return 0, nil
			}
			f.locals[s.Target] = ast.InternedTerm(n)
		case *ir.IsArrayStmt:
			if v := m.operand(f, s.Source); v == nil || !isArray(v.Value) {
				return 0, nil
			}
		case *ir.IsObjectStmt:
			if v := m.operand(f, s.Source); v == nil || !isObject(v.Value) {
				return 0, nil
			}
		case *ir.IsSetStmt:
			if v := m.operand(f, s.Source); v == nil || !isSet(v.Value) {
				return 0, nil
			}
		case *ir.ObjectMergeStmt:
			f.locals[s.Target] = merge(f.locals[s.A], f.locals[s.B])
		case *ir.CallDynamicStmt:
			v, err := m.callDynamic(f, s)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			f.locals[s.Result] = v
		case *ir.WithStmt:
			r, err := m.with(f, s)
			if err != nil {
				return 0, err
			}
			switch {
			case r == completed:
			case r == returned:
				return returned, nil
			case r == 0:
				return 0, nil
			default:
				return r - 1, nil
			}
		case *ir.ResultSetAddStmt:
			m.result(f.locals[s.Value])
		case *constStmt:
			f.locals[s.Target] = s.Value
		case *ir.NopStmt:
		}
	}
	return completed, nil
}

// mutable returns the collection in a local for an append or insert. The
// planner only modifies collections it made for the local, which
// foldConstants never folds; should a folded constant reach a modification
// anyway, the local gets a copy, and the constant, shared by every
// evaluation, stays as it is.
func (m *machine) mutable(f *frame, l ir.Local) *ast.Term {
	t := f.locals[l]
	if t == nil {
		return undefinedCollection
	}
	if _, shared := m.prog.constTerms[t]; shared {
		t = t.Copy()
		f.locals[l] = t
	}
	return t
}

// undefinedCollection makes an append or insert into an undefined local fail
// with an internal error instead of a panic.
var undefinedCollection = ast.NullTerm()

func isArray(v ast.Value) bool  { _, ok := v.(*ast.Array); return ok }
func isObject(v ast.Value) bool { _, ok := v.(ast.Object); return ok }
func isSet(v ast.Value) bool    { _, ok := v.(ast.Set); return ok }

func conflict(loc ir.Location, msg string) error {
	return &topdown.Error{Code: topdown.ConflictErr, Message: msg, Location: &ast.Location{Row: loc.Row, Col: loc.Col}}
}

// dot is source[key]: an object's value, an array's element or a set's
// member; nil when there is none.
func dot(source, key *ast.Term) *ast.Term {
	if source == nil || key == nil {
		return nil
	}
	switch v := source.Value.(type) {
	case ast.Object:
		return v.Get(key)
	case *ast.Array:
		n, ok := key.Value.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= v.Len() {
			return nil
		}
		return v.Elem(i)
	case ast.Set:
		if v.Contains(key) {
			return key
		}
	}
	return nil
}

func length(t *ast.Term) (int, bool) {
	if t == nil {
		return 0, false
	}
	switch v := t.Value.(type) {
	case *ast.Array:
		return v.Len(), true
	case ast.Object:
		return v.Len(), true
	case ast.Set:
		return v.Len(), true
	case ast.String:
		return len(v), true
	}
	return 0, true
}

// merge merges two documents recursively; a's value wins where both have a
// key that is not an object in both.
func merge(a, b *ast.Term) *ast.Term {
	if a == nil {
		return b
	}
	ao, ok1 := a.Value.(ast.Object)
	bo, ok2 := b.Value.(ast.Object)
	if b == nil || !ok1 || !ok2 {
		return a
	}
	out := ast.NewObject()
	ao.Foreach(func(k, v *ast.Term) {
		if other := bo.Get(k); other != nil {
			out.Insert(k, merge(v, other))
		} else {
			out.Insert(k, v)
		}
	})
	bo.Foreach(func(k, v *ast.Term) {
		if ao.Get(k) == nil {
			out.Insert(k, v)
		}
	})
	return ast.NewTerm(out)
}

// scanner runs the iterations of one scan. Scanners are kept by the machine
// for each nesting level, with their callbacks made once, so a scan
// allocates nothing.
type scanner struct {
	m     *machine
	f     *frame
	s     *ir.ScanStmt
	out   int
	err   error
	pair  func(k, v *ast.Term) bool
	value func(e *ast.Term) bool
}

// step runs one iteration and reports whether the loop ends. An iteration's
// outcome completed or 0 continues with the next element, 1 leaves the loop,
// more leaves enclosing blocks as well.
func (sc *scanner) step(k, v *ast.Term) bool {
	sc.f.locals[sc.s.Key], sc.f.locals[sc.s.Value] = k, v
	r, err := sc.m.block(sc.f, sc.s.Block)
	switch {
	case err != nil:
		sc.err = err
		return true
	case r == returned:
		sc.out = returned
		return true
	case r == 1:
		return true
	case r > 1:
		sc.out = r - 2
		return true
	}
	return false
}

func (m *machine) scan(f *frame, s *ir.ScanStmt) (int, error) {
	src := f.locals[s.Source]
	if src == nil {
		return completed, nil
	}
	if m.scanDepth == len(m.scanners) {
		sc := &scanner{m: m}
		sc.pair = sc.step
		sc.value = func(e *ast.Term) bool { return sc.step(e, e) }
		m.scanners = append(m.scanners, sc)
	}
	sc := m.scanners[m.scanDepth]
	m.scanDepth++
	sc.f, sc.s, sc.out, sc.err = f, s, completed, nil
	switch v := src.Value.(type) {
	case *ast.Array:
		for i := 0; i < v.Len(); i++ {
			if sc.step(ast.InternedTerm(i), v.Elem(i)) {
				break
			}
		}
	case ast.Object:
		v.Until(sc.pair)
	case ast.Set:
		v.Until(sc.value)
	}
	out, err := sc.out, sc.err
	sc.f, sc.s, sc.err = nil, nil, nil
	m.scanDepth--
	return out, err
}

func (m *machine) callStmt(f *frame, s *ir.CallStmt, fn *irFunc) (*ast.Term, error) {
	if fn.builtin == nil {
		args := m.fargs[:0]
		for _, a := range s.Args {
			args = append(args, m.operand(f, a))
		}
		m.fargs = args
		return m.call(fn, args)
	}
	// Builtins get the machine's argument buffer: they do not keep their
	// operands, and they do not call back into the machine.
	args := m.args[:0]
	for _, a := range s.Args {
		v := m.operand(f, a)
		if v == nil {
			return nil, nil
		}
		args = append(args, v)
	}
	m.args = args
	m.out = nil
	bctx := topdown.BuiltinContext{
		Context: m.ctx,
		Metrics: noMetrics,
		Seed:    rand.Reader,
		Cache:   m.cache,
	}
	if fn.clock {
		// One time per evaluation, as topdown takes it when a query starts.
		if m.now == nil {
			m.now = ast.NumberTerm(json.Number(strconv.FormatInt(time.Now().UnixNano(), 10)))
		}
		bctx.Time = m.now
	}
	if fn.relation {
		var outputs []*ast.Term
		err := fn.builtin(bctx, args, func(t *ast.Term) error {
			outputs = append(outputs, t)
			return nil
		})
		if err != nil {
			return nil, m.builtinError(err)
		}
		return ast.ArrayTerm(outputs...), nil
	}
	if err := fn.builtin(bctx, args, m.capture); err != nil {
		m.out = nil
		return nil, m.builtinError(err)
	}
	out := m.out
	m.out = nil
	return out, nil
}

// builtinError is what a builtin's error does to the evaluation: it fails,
// as with topdown's strict builtin errors, or, without them, the call is
// undefined. Halting errors always fail it.
func (m *machine) builtinError(err error) error {
	var halt topdown.Halt
	if m.prog.strict || errors.As(err, &halt) {
		return err
	}
	return nil
}

func (m *machine) callDynamic(f *frame, s *ir.CallDynamicStmt) (*ast.Term, error) {
	node := m.prog.tree
	for _, o := range s.Path {
		key := m.operand(f, o)
		if key == nil {
			return nil, nil
		}
		str, ok := key.Value.(ast.String)
		if !ok || node.children == nil {
			return nil, nil
		}
		node = node.children[string(str)]
		if node == nil {
			return nil, nil
		}
	}
	if node.fn == nil {
		return nil, nil
	}
	args := m.fargs[:0]
	for _, l := range s.Args {
		args = append(args, f.locals[l])
	}
	m.fargs = args
	return m.call(node.fn, args)
}

// with runs a block with input or data replaced at a path, under fresh memos.
func (m *machine) with(f *frame, s *ir.WithStmt) (int, error) {
	saved := f.locals[s.Local]
	savedMemo := m.memo
	m.memo = make([]*ast.Term, len(savedMemo))
	path := make([]*ast.Term, len(s.Path))
	for i, idx := range s.Path {
		path[i] = m.prog.strings[idx]
	}
	f.locals[s.Local] = upsert(saved, path, m.operand(f, s.Value))
	r, err := m.block(f, s.Block)
	f.locals[s.Local] = saved
	m.memo = savedMemo
	return r, err
}

// upsert returns a copy of doc with value at path, creating objects on the
// way; doc itself is not modified.
func upsert(doc *ast.Term, path []*ast.Term, value *ast.Term) *ast.Term {
	if len(path) == 0 {
		return value
	}
	var obj ast.Object
	if doc != nil {
		if o, ok := doc.Value.(ast.Object); ok {
			obj = o.Copy()
		}
	}
	if obj == nil {
		obj = ast.NewObject()
	}
	obj.Insert(path[0], upsert(obj.Get(path[0]), path[1:], value))
	return ast.NewTerm(obj)
}
