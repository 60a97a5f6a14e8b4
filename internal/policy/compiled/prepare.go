package compiled

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// callStmt is a CallStmt with its function resolved when the program is
// prepared.
type callStmt struct {
	*ir.CallStmt
	fn *irFunc
}

// constStmt sets a local to a constant made when the program is prepared:
// the null or number of a Make or AssignInt statement, or a literal array,
// set or object of strings and booleans, which the planner builds with
// several statements on every evaluation (see foldConstants).
type constStmt struct {
	Target ir.Local
	Value  *ast.Term
	ir.Location
}

// prepareBlock resolves the functions, builtins and constants of a block,
// checks its string references and returns the highest local it uses.
func (p *Program) prepareBlock(b *ir.Block) (int, error) {
	highest := 0
	for i, s := range b.Stmts {
		s, err := p.resolve(s)
		if err != nil {
			return 0, err
		}
		b.Stmts[i] = s
		u, err := usesOf(s)
		if err != nil {
			return 0, err
		}
		for _, l := range u.locals {
			highest = max(highest, int(l))
		}
		for _, o := range u.operands {
			switch v := o.Value.(type) {
			case ir.Local:
				highest = max(highest, int(v))
			case ir.StringIndex:
				if int(v) >= len(p.strings) {
					return 0, fmt.Errorf("string constant %d is out of range", v)
				}
			}
		}
		for _, idx := range u.strings {
			if idx < 0 || idx >= len(p.strings) {
				return 0, fmt.Errorf("string constant %d is out of range", idx)
			}
		}
		for _, inner := range u.blocks {
			m, err := p.prepareBlock(inner)
			if err != nil {
				return 0, err
			}
			highest = max(highest, m)
		}
	}
	return highest, nil
}

// resolve returns the statement that runs in place of s: a call with its
// function or builtin resolved, or a constant made once.
func (p *Program) resolve(s ir.Stmt) (ir.Stmt, error) {
	switch s := s.(type) {
	case *ir.CallStmt:
		fn, err := p.function(s.Func)
		if err != nil {
			return nil, err
		}
		return &callStmt{CallStmt: s, fn: fn}, nil
	case *ir.AssignIntStmt:
		return &constStmt{Target: s.Target, Value: ast.InternedTerm(int(s.Value)), Location: s.Location}, nil
	case *ir.MakeNullStmt:
		return &constStmt{Target: s.Target, Value: ast.InternedNullTerm, Location: s.Location}, nil
	case *ir.MakeNumberIntStmt:
		return &constStmt{Target: s.Target, Value: ast.InternedTerm(int(s.Value)), Location: s.Location}, nil
	case *ir.MakeNumberRefStmt:
		if s.Index < 0 || s.Index >= len(p.strings) {
			return nil, fmt.Errorf("number constant %d is out of range", s.Index)
		}
		return &constStmt{Target: s.Target, Value: ast.NewTerm(ast.Number(p.strings[s.Index].Value.(ast.String))), Location: s.Location}, nil
	case *constStmt:
		// A literal folded by foldConstants: shared by every evaluation.
		p.constTerms[s.Value] = struct{}{}
	}
	return s, nil
}

// function returns the plan's function of that name, or OPA's builtin.
func (p *Program) function(name string) (*irFunc, error) {
	if fn := p.byName[name]; fn != nil {
		return fn, nil
	}
	bi := topdown.GetBuiltin(name)
	if bi == nil {
		return nil, fmt.Errorf("builtin %s is not available", name)
	}
	if fast := fastBuiltins[name]; fast != nil {
		bi = fast(bi)
	}
	fn := &irFunc{name: name, index: -1, builtin: bi}
	if decl, ok := ast.BuiltinMap[name]; ok {
		fn.clock, fn.relation = decl.Nondeterministic, decl.Relation
	}
	p.byName[name] = fn
	return fn, nil
}

// uses lists what a statement refers to: locals, operands (locals or string
// constants), indexes of string constants, and nested blocks.
type uses struct {
	locals   []ir.Local
	operands []ir.Operand
	strings  []int
	blocks   []*ir.Block
}

func locals(l ...ir.Local) uses     { return uses{locals: l} }
func operands(o ...ir.Operand) uses { return uses{operands: o} }
func blocks(b ...*ir.Block) uses    { return uses{blocks: b} }

func (u uses) and(v uses) uses {
	u.locals = append(u.locals, v.locals...)
	u.operands = append(u.operands, v.operands...)
	u.blocks = append(u.blocks, v.blocks...)
	return u
}

// usesOf describes a statement the evaluator runs; it fails for a statement
// it does not know.
func usesOf(s ir.Stmt) (uses, error) {
	switch s := s.(type) {
	case *callStmt:
		return locals(s.Result).and(operands(s.Args...)), nil
	case *ir.CallDynamicStmt:
		return locals(append([]ir.Local{s.Result}, s.Args...)...).and(operands(s.Path...)), nil
	case *ir.BlockStmt:
		return blocks(s.Blocks...), nil
	case *ir.ScanStmt:
		return locals(s.Source, s.Key, s.Value).and(blocks(s.Block)), nil
	case *ir.NotStmt:
		return blocks(s.Block), nil
	case *ir.WithStmt:
		u := locals(s.Local).and(operands(s.Value)).and(blocks(s.Block))
		u.strings = s.Path
		return u, nil
	case *ir.ReturnLocalStmt:
		return locals(s.Source), nil
	case *ir.BreakStmt, *ir.NopStmt:
		return uses{}, nil
	case *ir.DotStmt:
		return locals(s.Target).and(operands(s.Source, s.Key)), nil
	case *ir.LenStmt:
		return locals(s.Target).and(operands(s.Source)), nil
	case *ir.AssignVarStmt:
		return locals(s.Target).and(operands(s.Source)), nil
	case *ir.AssignVarOnceStmt:
		return locals(s.Target).and(operands(s.Source)), nil
	case *ir.ResetLocalStmt:
		return locals(s.Target), nil
	case *ir.MakeArrayStmt:
		return locals(s.Target), nil
	case *ir.MakeObjectStmt:
		return locals(s.Target), nil
	case *ir.MakeSetStmt:
		return locals(s.Target), nil
	case *ir.EqualStmt:
		return operands(s.A, s.B), nil
	case *ir.NotEqualStmt:
		return operands(s.A, s.B), nil
	case *ir.IsArrayStmt:
		return operands(s.Source), nil
	case *ir.IsObjectStmt:
		return operands(s.Source), nil
	case *ir.IsSetStmt:
		return operands(s.Source), nil
	case *ir.IsDefinedStmt:
		return locals(s.Source), nil
	case *ir.IsUndefinedStmt:
		return locals(s.Source), nil
	case *ir.ArrayAppendStmt:
		return locals(s.Array).and(operands(s.Value)), nil
	case *ir.ObjectInsertStmt:
		return locals(s.Object).and(operands(s.Key, s.Value)), nil
	case *ir.ObjectInsertOnceStmt:
		return locals(s.Object).and(operands(s.Key, s.Value)), nil
	case *ir.ObjectMergeStmt:
		return locals(s.A, s.B, s.Target), nil
	case *ir.SetAddStmt:
		return locals(s.Set).and(operands(s.Value)), nil
	case *ir.ResultSetAddStmt:
		return locals(s.Value), nil
	case *constStmt:
		return locals(s.Target), nil
	case *dataDotStmt:
		return locals(s.Target, s.data).and(operands(s.Source, s.Key)), nil
	case *objectStmt:
		return locals(s.Target).and(operands(s.Values...)), nil
	case *arrayStmt:
		return locals(s.Target).and(operands(s.Values...)), nil
	}
	return uses{}, fmt.Errorf("statement %T is not supported", s)
}
