package compiled

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// foldConstants replaces each literal collection of fn (a Make statement
// followed by appends or inserts of constants) by a constStmt. The shared
// value is never modified: a collection is folded only when those appends
// and inserts are the only statements of fn that modify its local.
func (p *Program) foldConstants(fn *irFunc) {
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
			if a, n, ok := arrayLiteral(s, b.Stmts[i+1:]); ok && n == mutations[a.Target] {
				out = append(out, a)
				i += n
				continue
			}
			if o, n, ok := objectLiteral(s, b.Stmts[i+1:], constant); ok && n > 0 && n == mutations[o.Target] {
				out = append(out, o)
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
func (p *Program) literal(s ir.Stmt, rest []ir.Stmt, constant func(ir.Operand) (*ast.Term, bool)) (ir.Local, *ast.Term, int, bool) {
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

// arrayStmt makes an array of the values of its operands in one step: an
// array literal with values known only when the plan runs (["a", x]), which
// the planner makes with a Make statement and one append per element, each
// of which would allocate the array anew.
type arrayStmt struct {
	Target ir.Local
	Values []ir.Operand
	ir.Location
}

// arrayLiteral recognises an array made with a Make statement followed by
// appends into its local; it returns the array statement and how many
// statements after the Make statement build it.
func arrayLiteral(s ir.Stmt, rest []ir.Stmt) (*arrayStmt, int, bool) {
	mk, ok := s.(*ir.MakeArrayStmt)
	if !ok {
		return nil, 0, false
	}
	a := &arrayStmt{Target: mk.Target, Location: mk.Location}
	for _, r := range rest {
		app, ok := r.(*ir.ArrayAppendStmt)
		if !ok || app.Array != mk.Target {
			break
		}
		a.Values = append(a.Values, app.Value)
	}
	return a, len(a.Values), true
}

// objectStmt makes an object of constant, distinct keys and the values of
// its operands in one step: an object literal with values known only when
// the plan runs ({"rule": "x", "message": msg}), which the planner makes with
// a Make statement and one insert per key.
type objectStmt struct {
	Target ir.Local
	Keys   []*ast.Term
	Values []ir.Operand
	ir.Location
}

// objectLiteral recognises an object made with a Make statement followed by
// inserts of constant, distinct keys into its local; it returns the object
// statement and how many statements after the Make statement build it.
func objectLiteral(s ir.Stmt, rest []ir.Stmt, constant func(ir.Operand) (*ast.Term, bool)) (*objectStmt, int, bool) {
	mk, ok := s.(*ir.MakeObjectStmt)
	if !ok {
		return nil, 0, false
	}
	o := &objectStmt{Target: mk.Target, Location: mk.Location}
	seen := ast.NewSet()
	for _, r := range rest {
		ins, ok := r.(*ir.ObjectInsertStmt)
		if !ok || ins.Object != mk.Target {
			break
		}
		k, ok := constant(ins.Key)
		if !ok || seen.Contains(k) {
			break
		}
		seen.Add(k)
		o.Keys = append(o.Keys, k)
		o.Values = append(o.Values, ins.Value)
	}
	return o, len(o.Keys), true
}
