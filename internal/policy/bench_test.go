package policy

import (
	"context"
	"testing"

	"github.com/nsprov/nsprov/internal/benchcpu"

	"github.com/nsprov/nsprov/internal/testutil"
)

// benchRequests are the requests of BenchmarkEvaluation, those of the
// admission package's BenchmarkDecision: an allowed CREATE by a team member
// (as the validating webhook sees it, after the mutation) and a denied
// production CREATE with an open network policy by a user outside the team.
func benchRequests() []struct {
	name    string
	req     *Request
	allowed bool
} {
	return []struct {
		name    string
		req     *Request
		allowed bool
	}{
		{"allowed", &Request{
			UID: "u", Operation: "CREATE", Username: "alice", Groups: []string{"system:authenticated", "team-payments"},
			Object: testutil.Namespace("payments-dev", map[string]string{
				"nsprov.io/team":        "payments",
				"nsprov.io/environment": "development",
				"nsprov.io/features":    "istio, Monitoring-Enhanced",
			}, nil),
		}, true},
		{"denied", &Request{
			UID: "u", Operation: "CREATE", Username: "bob", Groups: []string{"system:authenticated", "team-web"},
			Object: testutil.Namespace("payments-prod", map[string]string{
				"nsprov.io/team":           "payments",
				"nsprov.io/environment":    "production",
				"nsprov.io/network-policy": "open",
			}, nil),
		}, false},
	}
}

// BenchmarkEvaluation measures the policy's part of one admission decision
// with the decision cache off: the mutation of a request, then the
// validation of the mutated object (the two webhook calls of a CREATE), each
// with its input built from the request. "mutate" and "validate" measure one
// call each. It reports the process's CPU time per operation (cpu-ns/op,
// garbage collection included) beside wall time.
func BenchmarkEvaluation(b *testing.B) {
	ctx := context.Background()
	for _, evaluator := range []string{EvaluatorCompiled, EvaluatorTopdown} {
		bundle, err := LoadEmbedded(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := bundle.UseEvaluator(evaluator); err != nil {
			b.Fatal(err)
		}
		bundle.SetDecisionCacheSize(0)
		for _, bc := range benchRequests() {
			mutation, err := bundle.Mutate(ctx, bc.req)
			if err != nil {
				b.Fatal(err)
			}
			mutated := *bc.req
			mutated.Object = bc.req.Object.DeepCopy()
			apply(&mutated.Object.Annotations, mutation.Annotations)
			apply(&mutated.Object.Labels, mutation.Labels)
			v, err := bundle.Validate(ctx, &mutated)
			if err != nil {
				b.Fatal(err)
			}
			if v.Allowed() != bc.allowed {
				b.Fatalf("%s: allowed = %v, want %v: %v", bc.name, v.Allowed(), bc.allowed, v.Violations)
			}
			run := func(name string, op func() error) {
				b.Run(evaluator+"/"+bc.name+"/"+name, func(b *testing.B) {
					b.ReportAllocs()
					cpu := benchcpu.Now()
					for b.Loop() {
						if err := op(); err != nil {
							b.Fatal(err)
						}
					}
					benchcpu.Report(b, cpu)
				})
			}
			mutate := func() error { _, err := bundle.Mutate(ctx, bc.req); return err }
			validate := func() error { _, err := bundle.Validate(ctx, &mutated); return err }
			run("both", func() error {
				if err := mutate(); err != nil {
					return err
				}
				return validate()
			})
			run("mutate", mutate)
			run("validate", validate)
		}
	}
}
