package compiled

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// noMetrics is what builtins record into: nothing.
var noMetrics = metrics.NoOp()

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
