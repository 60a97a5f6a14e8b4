package policy

import (
	"context"
	"fmt"
	"io"
	"maps"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestSummary counts the outcome of a bundle's Rego tests.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// OK reports whether at least one test ran and none failed or errored.
func (s TestSummary) OK() bool { return s.Passed > 0 && s.Failed == 0 && s.Errored == 0 }

// Test runs the bundle's _test.rego tests with OPA's tester and reports them
// to w like `opa test` does (verbose lists every test). A run error (the tests
// do not compile) is returned; failing tests are counted in the summary.
func (b *Bundle) Test(ctx context.Context, w io.Writer, verbose bool) (TestSummary, error) {
	var sum TestSummary
	if len(b.tests) == 0 {
		return sum, fmt.Errorf("policy bundle %s has no _test.rego files", b.Source)
	}
	modules := maps.Clone(b.modules)
	maps.Copy(modules, b.tests)
	// The tests run on a store of their own so that nothing they do can touch
	// the store that serves requests.
	store := inmem.NewFromObjectWithOpts(b.data, inmem.OptRoundTripOnWrite(false))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return sum, err
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithEnablePrintStatements(true)).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		SetDefaultRegoVersion(ast.RegoV1).
		RunTests(ctx, txn)
	if err != nil {
		return sum, fmt.Errorf("policy bundle %s: running tests: %w", b.Source, err)
	}
	var results []*tester.Result
	for r := range ch {
		if r.Error != nil && r.Name == "" {
			return sum, fmt.Errorf("policy bundle %s: %w", b.Source, r.Error)
		}
		switch {
		case r.Skip:
			sum.Skipped++
		case r.Error != nil:
			sum.Errored++
		case r.Fail:
			sum.Failed++
		default:
			sum.Passed++
		}
		results = append(results, r)
	}
	rch := make(chan *tester.Result, len(results))
	for _, r := range results {
		rch <- r
	}
	close(rch)
	rep := tester.PrettyReporter{Output: w, Verbose: verbose}
	if err := rep.Report(rch); err != nil {
		return sum, err
	}
	return sum, nil
}
