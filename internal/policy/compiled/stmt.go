package compiled

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// block runs the statements of b. It returns completed, returned, or the
// number of enclosing blocks the caller must leave as well (0: only b was
// left). It runs the statements that change the flow itself; step runs the
// others.
func (m *machine) block(f *frame, b *ir.Block) (int, error) {
	for _, s := range b.Stmts {
		var r int
		var err error
		switch s := s.(type) {
		case *ir.BlockStmt:
			r, err = m.blocks(f, s)
		case *ir.BreakStmt:
			return int(s.Index), nil
		case *ir.ReturnLocalStmt:
			f.ret = f.locals[s.Source]
			return returned, nil
		case *ir.NotStmt:
			r, err = m.not(f, s)
		case *ir.ScanStmt:
			r, err = m.scan(f, s)
		case *ir.WithStmt:
			r, err = m.with(f, s)
			if r == 0 {
				// The with's block was left: so is this one.
				return 0, err
			}
			if r > 0 {
				r--
			}
		default:
			var holds bool
			if holds, err = m.step(f, s); err == nil && !holds {
				return 0, nil
			}
			r = completed
		}
		if err != nil {
			return 0, err
		}
		if r != completed {
			return r, nil
		}
	}
	return completed, nil
}

// blocks runs the blocks of a BlockStmt in order until one is left by a
// break or returns.
func (m *machine) blocks(f *frame, s *ir.BlockStmt) (int, error) {
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
	return completed, nil
}

// not holds when its block is left (the negated body is undefined).
func (m *machine) not(f *frame, s *ir.NotStmt) (int, error) {
	r, err := m.block(f, s.Block)
	switch {
	case err != nil:
		return 0, err
	case r == completed:
		return 0, nil
	case r == returned:
		return returned, nil
	case r > 0:
		return r - 1, nil
	}
	return completed, nil
}

// step runs a statement that does not change the flow, and reports whether
// it holds: false leaves the block.
func (m *machine) step(f *frame, s ir.Stmt) (bool, error) {
	switch s := s.(type) {
	case *callStmt:
		v, err := m.callStmt(f, s.CallStmt, s.fn)
		if err != nil || v == nil {
			return false, err
		}
		f.locals[s.Result] = v
	case *ir.DotStmt:
		v := dot(m.operand(f, s.Source), m.operand(f, s.Key))
		if v == nil {
			return false, nil
		}
		f.locals[s.Target] = v
	case *dataDotStmt:
		v := s.value
		if f.locals[s.data] != m.prog.data {
			// Under a with of data: read the replaced document.
			v = dot(m.operand(f, s.Source), m.operand(f, s.Key))
		}
		if v == nil {
			return false, nil
		}
		f.locals[s.Target] = v
	case *ir.AssignVarStmt:
		f.locals[s.Target] = m.operand(f, s.Source)
	case *ir.AssignVarOnceStmt:
		v := m.operand(f, s.Source)
		if cur := f.locals[s.Target]; cur != nil {
			if ast.Compare(cur.Value, v.Value) != 0 {
				return false, conflict(s.Location, "complete rules must not produce multiple outputs")
			}
			return true, nil
		}
		f.locals[s.Target] = v
	case *ir.ResetLocalStmt:
		f.locals[s.Target] = nil
	case *constStmt:
		f.locals[s.Target] = s.Value
	case *ir.NotEqualStmt:
		a, b := m.operand(f, s.A), m.operand(f, s.B)
		return a != nil && b != nil && ast.Compare(a.Value, b.Value) != 0, nil
	case *ir.EqualStmt:
		a, b := m.operand(f, s.A), m.operand(f, s.B)
		return a != nil && b != nil && ast.Compare(a.Value, b.Value) == 0, nil
	case *ir.IsDefinedStmt:
		return f.locals[s.Source] != nil, nil
	case *ir.IsUndefinedStmt:
		return f.locals[s.Source] == nil, nil
	case *ir.LenStmt:
		n, ok := length(m.operand(f, s.Source))
		if !ok {
			return false, nil
		}
		f.locals[s.Target] = ast.InternedTerm(n)
	case *ir.IsArrayStmt:
		v := m.operand(f, s.Source)
		return v != nil && isArray(v.Value), nil
	case *ir.IsObjectStmt:
		v := m.operand(f, s.Source)
		return v != nil && isObject(v.Value), nil
	case *ir.IsSetStmt:
		v := m.operand(f, s.Source)
		return v != nil && isSet(v.Value), nil
	case *ir.CallDynamicStmt:
		v, err := m.callDynamic(f, s)
		if err != nil || v == nil {
			return false, err
		}
		f.locals[s.Result] = v
	case *ir.ResultSetAddStmt:
		// Results are objects of the query's variables; once yield has had
		// enough, the evaluation runs to its end without reporting more.
		if t := f.locals[s.Value]; t != nil && m.more {
			if obj, ok := t.Value.(ast.Object); ok {
				if m.result == nil {
					// First: the first result is the answer.
					m.first, m.more = obj, false
				} else {
					m.more = m.result(obj)
				}
			}
		}
	case *ir.NopStmt:
	default:
		return true, m.collection(f, s)
	}
	return true, nil
}

// collection runs a statement that makes or fills a collection.
func (m *machine) collection(f *frame, s ir.Stmt) error {
	switch s := s.(type) {
	case *ir.MakeObjectStmt:
		f.locals[s.Target] = m.terms.Term(ast.NewObject())
	case *ir.MakeSetStmt:
		f.locals[s.Target] = m.terms.Term(ast.NewSet())
	case *ir.MakeArrayStmt:
		f.locals[s.Target] = m.terms.Term(ast.NewArrayWithCapacity(int(s.Capacity)))
	case *objectStmt:
		items := m.items[:0]
		for i, o := range s.Values {
			v := m.operand(f, o)
			if v == nil {
				return fmt.Errorf("internal error: object insert of an undefined value")
			}
			items = append(items, [2]*ast.Term{s.Keys[i], v})
		}
		f.locals[s.Target] = m.terms.Term(ast.NewObject(items...))
		clear(items)
		m.items = items[:0]
	case *arrayStmt:
		elems := make([]*ast.Term, len(s.Values))
		for i, o := range s.Values {
			if elems[i] = m.operand(f, o); elems[i] == nil {
				return fmt.Errorf("internal error: array append of an undefined value")
			}
		}
		f.locals[s.Target] = m.terms.Term(ast.NewArray(elems...))
	case *ir.ObjectInsertStmt:
		obj, err := m.mutableObject(f, s.Object)
		if err != nil {
			return err
		}
		obj.Insert(m.operand(f, s.Key), m.operand(f, s.Value))
	case *ir.ObjectInsertOnceStmt:
		obj, err := m.mutableObject(f, s.Object)
		if err != nil {
			return err
		}
		k, v := m.operand(f, s.Key), m.operand(f, s.Value)
		if cur := obj.Get(k); cur != nil {
			if ast.Compare(cur.Value, v.Value) != 0 {
				return conflict(s.Location, "object keys must be unique")
			}
			return nil
		}
		obj.Insert(k, v)
	case *ir.SetAddStmt:
		t := m.mutable(f, s.Set)
		set, ok := t.Value.(ast.Set)
		if !ok {
			return fmt.Errorf("internal error: set add to %s", ast.ValueName(t.Value))
		}
		set.Add(m.operand(f, s.Value))
	case *ir.ArrayAppendStmt:
		t := m.mutable(f, s.Array)
		arr, ok := t.Value.(*ast.Array)
		if !ok {
			return fmt.Errorf("internal error: array append to %s", ast.ValueName(t.Value))
		}
		// In place, as OPA's WebAssembly runtime appends: the array was
		// made for this local and nothing else refers to it yet.
		*arr = *arr.Append(m.operand(f, s.Value))
	case *ir.ObjectMergeStmt:
		f.locals[s.Target] = merge(f.locals[s.A], f.locals[s.B])
	}
	return nil
}

func (m *machine) mutableObject(f *frame, l ir.Local) (ast.Object, error) {
	t := m.mutable(f, l)
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("internal error: object insert into %s", ast.ValueName(t.Value))
	}
	return obj, nil
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
