package compiled

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// dataDotStmt is a DotStmt that reads a document of data at a constant
// path (data.config.environments is data["config"]["environments"]): its
// value on the program's data, found when the program is prepared. When the
// function's data argument is the program's data document, the statement
// takes that value (nil: the document is undefined) instead of looking the
// key up; under a `with data...` it looks it up as a DotStmt does.
type dataDotStmt struct {
	*ir.DotStmt
	data  ir.Local  // the function's data parameter
	value *ast.Term // nil when undefined
}

// foldDataPaths replaces the DotStmts of fn that read data at a constant path
// by dataDotStmts. A path is followed within one block, from the data
// parameter through DotStmts with string keys: the planner emits each
// reference to data as such a run, and within a run each local holds the
// document the previous statement read, as long as no other statement
// writes it. A nested block starts afresh, so a loop's next iteration never
// relies on what its previous one wrote.
func (p *Program) foldDataPaths(fn *irFunc) {
	if len(fn.params) < 2 || p.data == nil {
		return
	}
	data := fn.params[1]
	var fold func(b *ir.Block)
	fold = func(b *ir.Block) {
		// known holds the locals that hold a document of data at a
		// constant path, with its value.
		known := map[ir.Local]*ast.Term{}
		for i, s := range b.Stmts {
			if d, ok := s.(*ir.DotStmt); ok {
				key, isString := d.Key.Value.(ir.StringIndex)
				src, isLocal := d.Source.Value.(ir.Local)
				var from *ast.Term
				switch {
				case !isString || !isLocal || int(key) >= len(p.strings):
				case src == data:
					from = p.data
				default:
					from = known[src]
				}
				delete(known, d.Target)
				if from != nil {
					v := dot(from, p.strings[key])
					b.Stmts[i] = &dataDotStmt{DotStmt: d, data: data, value: v}
					if v != nil && d.Target != data {
						known[d.Target] = v
					}
				}
				continue
			}
			u, err := usesOf(s)
			if err != nil {
				return
			}
			for _, l := range u.locals {
				delete(known, l)
			}
			if len(u.blocks) > 0 {
				// A nested block may write any local.
				clear(known)
				for _, inner := range u.blocks {
					fold(inner)
				}
			}
		}
	}
	for _, b := range fn.blocks {
		fold(b)
	}
}
