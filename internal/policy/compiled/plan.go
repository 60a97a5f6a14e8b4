// Planning: how a query becomes OPA's plan.
//
// OPA's planner is internal to OPA; two public packages run it. The compile
// package (target "plan", what `opa build -t plan` uses) plans entry points,
// each a rule reference, as `result = <ref>`, one plan per entry point, after
// compiling the modules again from a bundle. For nsprov's four rules it was
// compared with this file's plans: the same functions and the same plan
// bodies, except for the numbering of locals and string constants and for
// source locations. But nsprov needs more than entry points:
// its validation is one query of two rules (`deny = ...; warn = ...`),
// planned and memoized together, and the compliance and differential tests
// plan arbitrary queries with several variables (`some i; v :=
// data.t.items[i]; ...`), which no entry point can express. The rego package
// plans any query, on the compiler the bundle already has, for a target
// plugin. So planning goes through a rego target plugin; the plugin is
// registered once, on first use, and hands the plan back through a value in
// the context of the one PrepareForEval call that asked for it. Both are
// confined to this file.

package compiled

import (
	"context"
	"errors"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// irTarget is the rego target name under which the planner's output reaches
// Plan.
const irTarget = "nsprov-compiled"

var registerPlugin = sync.OnceFunc(func() { rego.RegisterPlugin(irTarget, irPlugin{}) })

// Compile plans a query (Rego text) on a compiled set of modules and prepares
// it to run on data, the whole data document, which store holds too.
func Compile(ctx context.Context, compiler *ast.Compiler, store storage.Store, data ast.Value, query string) (*Program, error) {
	pol, err := Plan(ctx, compiler, store, query)
	if err != nil {
		return nil, err
	}
	return New(pol, data)
}

// Plan returns the plan OPA's planner makes of a query (Rego text) on a
// compiled set of modules.
func Plan(ctx context.Context, compiler *ast.Compiler, store storage.Store, query string) (*ir.Policy, error) {
	registerPlugin()
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
	if slot.policy == nil {
		return nil, errors.New("the planner produced no plan")
	}
	return slot.policy, nil
}

// planSlot carries a plan from the plugin back to Plan.
type planSlot struct{ policy *ir.Policy }

type planSlotKey struct{}

// irPlugin receives the planned policy from the rego package, which has
// parsed, compiled and planned the query.
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
		return nil, errors.New("the " + irTarget + " target is prepared only by compiled.Plan")
	}
	slot.policy = pol
	return unevaluable{}, nil
}

// unevaluable is what the rego package gets back: programs are run by their
// callers, never through the rego package.
type unevaluable struct{}

func (unevaluable) Eval(context.Context, *rego.EvalContext, ast.Value) (ast.Value, error) {
	return nil, errors.New("the " + irTarget + " target is evaluated only through compiled.Program")
}
