// Package compiled evaluates Rego queries by running the plan OPA's planner
// makes of them.
//
// OPA's planner turns a query and the modules it reaches into OPA's
// intermediate representation (package ir): the plan that `opa build -t plan`
// writes and that OPA compiles to WebAssembly. Rules become functions of
// blocks of simple statements over numbered locals; every rule body, `not`,
// `some ... in`, comprehension and builtin call is already resolved. A
// Program runs such a plan directly on OPA's values and calls OPA's own
// builtin implementations. Compared with OPA's evaluator (topdown), it does
// no unification, keeps no binding lists and copies no data references, so
// one decision allocates a fraction of what topdown needs. The results are the
// same: package policy runs OPA's own evaluation test suite through both
// evaluators and compares them on every rule of nsprov's bundle.
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
//
// Work that depends on the bundle alone is done once, when a Program is
// prepared: rules that read data and never input are evaluated then, and
// reads of data at a constant path (data.config.tiers) are looked up then;
// an evaluation takes those values as long as its data is the program's
// own, that is, everywhere but under a `with data...`. Literal collections
// are built then too, and literals with values of the evaluation are made in
// one step rather than by one append or insert each.
//
// The package is split by concern: plan.go gets the plan from OPA;
// program.go makes a Program of it and runs it; prepare.go checks its
// statements and resolves calls and constants once; fold.go folds literal
// collections into constants; static.go evaluates the rules of data alone
// and datafold.go the reads of data; machine.go holds the state of one evaluation
// and calls functions; stmt.go runs statements, scan.go loops and `with`,
// builtin.go builtin and dynamic calls, fast.go cheaper implementations of
// some of OPA's builtins (same results); arena.go allocates terms.
package compiled
