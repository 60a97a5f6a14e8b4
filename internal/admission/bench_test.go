package admission

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nsprov/nsprov/internal/benchcpu"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

// paymentsDev is the allowed request of the benchmarks, in the real policy's
// annotations.
func paymentsDev() map[string]string {
	return map[string]string{
		"nsprov.io/team":        "payments",
		"nsprov.io/environment": "development",
		"nsprov.io/features":    "istio, Monitoring-Enhanced",
	}
}

// benchCases are the requests of the benchmarks, which measure the real
// embedded bundle: an allowed CREATE by a team member, and a denied
// production CREATE with an open network policy by a user outside the team.
func benchCases(tb testing.TB) []struct {
	name    string
	req     admission.Request
	allowed bool
} {
	return []struct {
		name    string
		req     admission.Request
		allowed bool
	}{
		{
			name:    "allowed",
			req:     testutil.AdmissionRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, testutil.NamespaceJSON(tb, "payments-dev", paymentsDev(), nil), nil),
			allowed: true,
		},
		{
			name: "denied",
			req: testutil.AdmissionRequest(admissionv1.Create, "payments-prod", bob, bobGroups, testutil.NamespaceJSON(tb, "payments-prod", map[string]string{
				"nsprov.io/team":           "payments",
				"nsprov.io/environment":    "production",
				"nsprov.io/network-policy": "open",
			}, nil), nil),
			allowed: false,
		},
	}
}

// decide is one full admission decision as the API server makes it: the
// mutating webhook, its JSON patch applied to the object, then the validating
// webhook on the mutated object.
func decide(ctx context.Context, m *Mutator, v *Validator, req admission.Request) (admission.Response, error) {
	mresp := m.Handle(ctx, req)
	if !mresp.Allowed {
		return mresp, nil
	}
	mutated, err := mutatedRequest(ctx, m, req)
	if err != nil {
		return mresp, err
	}
	return v.Handle(ctx, mutated), nil
}

// BenchmarkDecision measures one full admission decision as nsprov makes it
// for a CREATE: the mutating handler on the request, then the validating
// handler on the object the API server stored after applying the patch. The
// patch is applied once, outside the loop: that work is the API server's.
// "cold" evaluates the policy every time (decision cache off) with the
// compiled evaluator, "topdown" the same with OPA's evaluator; "repeat" is the
// same request again with the cache on, as for a re-applied Namespace.
func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []struct {
		name      string
		cacheSize int
		evaluator string
	}{
		{"cold", 0, policy.EvaluatorCompiled},
		{"topdown", 0, policy.EvaluatorTopdown},
		{"repeat", policy.DefaultDecisionCacheSize, policy.EvaluatorCompiled},
	} {
		bundle, err := policy.LoadEmbedded(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := bundle.UseEvaluator(mode.evaluator); err != nil {
			b.Fatal(err)
		}
		if bundle.Evaluator != mode.evaluator {
			b.Fatalf("the bundle is evaluated by %q, want %q", bundle.Evaluator, mode.evaluator)
		}
		bundle.SetDecisionCacheSize(mode.cacheSize)
		store := policy.StaticStore(bundle)
		m := &Mutator{Policies: store, Recorder: discardRecorder{}}
		v := &Validator{Policies: store, Recorder: discardRecorder{}}
		benchDecisions(b, mode.name, m, v)
	}
}

func benchDecisions(b *testing.B, mode string, m *Mutator, v *Validator) {
	ctx := context.Background()
	for _, bc := range benchCases(b) {
		b.Run(mode+"/"+bc.name, func(b *testing.B) {
			mutated, err := mutatedRequest(ctx, m, bc.req)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := decide(ctx, m, v, bc.req)
			if err != nil {
				b.Fatal(err)
			}
			if resp.Allowed != bc.allowed {
				b.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, bc.allowed, resp.Result)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchcpu.Now()
			for b.Loop() {
				if r := m.Handle(ctx, bc.req); !r.Allowed {
					b.Fatal(r.Result)
				}
				if r := v.Handle(ctx, mutated); r.Allowed != bc.allowed {
					b.Fatal(r.Result)
				}
			}
			benchcpu.Report(b, cpu)
		})
	}
}

// mutatedRequest is req with the mutating handler's patch applied to its
// object, as the API server passes it to the validating webhook.
func mutatedRequest(ctx context.Context, m *Mutator, req admission.Request) (admission.Request, error) {
	mutated := req
	mresp := m.Handle(ctx, req)
	if len(mresp.Patches) == 0 {
		return mutated, nil
	}
	ops, err := json.Marshal(mresp.Patches)
	if err != nil {
		return mutated, err
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		return mutated, err
	}
	mutated.Object.Raw, err = patch.Apply(req.Object.Raw)
	return mutated, err
}

// BenchmarkBundle measures policy.Bundle.Decide (mutation, validation and,
// when allowed, the plan) without the decision cache.
func BenchmarkBundle(b *testing.B) {
	ctx := context.Background()
	bundle, err := policy.LoadEmbedded(ctx)
	if err != nil {
		b.Fatal(err)
	}
	bundle.SetDecisionCacheSize(0)
	for _, bc := range benchCases(b) {
		b.Run(bc.name, func(b *testing.B) {
			in, err := decode(&bc.req)
			if err != nil {
				b.Fatal(err)
			}
			d, err := Decide(ctx, bundle, in)
			if err != nil {
				b.Fatal(err)
			}
			if d.Allowed != bc.allowed {
				b.Fatalf("allowed = %v, want %v: %v", d.Allowed, bc.allowed, d.Violations)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchcpu.Now()
			for b.Loop() {
				if _, err := Decide(ctx, bundle, in); err != nil {
					b.Fatal(err)
				}
			}
			benchcpu.Report(b, cpu)
		})
	}
}

type discardRecorder struct{}

func (discardRecorder) Record(context.Context, *Record) {}
