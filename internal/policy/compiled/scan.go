package compiled

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

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
