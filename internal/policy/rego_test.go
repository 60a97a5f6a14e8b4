package policy

import (
	"bytes"
	"context"
	"testing"
)

// TestRegoTests runs every _test.rego of the embedded bundle through OPA's
// tester, so `go test` covers the policies too.
func TestRegoTests(t *testing.T) {
	b, err := LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sum, err := b.Test(context.Background(), &out, testing.Verbose())
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !sum.OK() {
		t.Fatalf("rego tests: %d passed, %d failed, %d errored\n%s", sum.Passed, sum.Failed, sum.Errored, out.String())
	}
	t.Logf("rego tests: %d passed\n%s", sum.Passed, out.String())
}
