package admission

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/testutil"
)

func TestValidatorAllowed(t *testing.T) {
	mutAnn, mutLabels := mutated()
	tests := []struct {
		name         string
		req          admission.Request
		wantWarnings []string
	}{
		{
			name: "a valid create without warnings",
			req:  createReq(t, alice, aliceGroups, "payments-dev", mutAnn, mutLabels),
		},
		{
			name: "a valid update",
			req: testutil.AdmissionRequest(admissionv1.Update, "payments-dev", bob, bobGroups,
				testutil.NamespaceJSON(t, "payments-dev", requested(map[string]string{"example.com/requested-by": "bob"}), mutLabels),
				testutil.NamespaceJSON(t, "payments-dev", mutAnn, mutLabels)),
		},
		{
			name: "allowed with every warning",
			req: createReq(t, alice, aliceGroups, "payments-big",
				requested(map[string]string{"example.com/size": "large", "example.com/scratch": "x"}), mutLabels),
			wantWarnings: []string{"size large costs 4", "annotation example.com/scratch is ignored"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			v := &Validator{Policies: tinyStore(t), Recorder: rec}
			resp := v.Handle(context.Background(), tt.req)
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if len(resp.Patches) != 0 {
				t.Errorf("validator returned patches %v", resp.Patches)
			}
			if !sameSet(resp.Warnings, tt.wantWarnings) {
				t.Errorf("warnings\n got %q\nwant %q", resp.Warnings, tt.wantWarnings)
			}
			recs := rec.all()
			if len(recs) != 1 || !recs[0].Allowed || recs[0].Webhook != "validate" || len(recs[0].Violations) != 0 || !sameSet(recs[0].Warnings, tt.wantWarnings) {
				t.Errorf("records %+v", recs)
			}
		})
	}
}

func TestValidatorDenied(t *testing.T) {
	tests := []struct {
		name         string
		req          admission.Request
		wantRules    []string
		wantWarnings []string
	}{
		{
			name:         "every violated rule, with the warnings",
			req:          denyingReq(t),
			wantRules:    []string{"name-prefix", "size-invalid"},
			wantWarnings: []string{"annotation example.com/scratch is ignored"},
		},
		{
			name:      "one violated rule",
			req:       createReq(t, bob, bobGroups, "scratch", nil, nil),
			wantRules: []string{"team-required"},
		},
		{
			name: "a rule violated twice is reported twice",
			req: createReq(t, alice, aliceGroups, "payments-dev",
				requested(map[string]string{"example.com/a": "", "example.com/b": ""}), nil),
			wantRules: []string{"value-empty", "value-empty"},
		},
		{
			name: "an update is validated",
			req: testutil.AdmissionRequest(admissionv1.Update, "payments-dev", alice, aliceGroups,
				testutil.NamespaceJSON(t, "payments-dev", requested(map[string]string{"example.com/size": "huge"}), nil),
				testutil.NamespaceJSON(t, "payments-dev", requested(nil), nil)),
			wantRules: []string{"size-invalid"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			v := &Validator{Policies: tinyStore(t), Recorder: rec}
			resp := v.Handle(context.Background(), tt.req)
			if resp.Allowed {
				t.Fatalf("allowed, want denied with %v", tt.wantRules)
			}
			if resp.Result == nil {
				t.Fatal("no result")
			}
			if resp.Result.Code != http.StatusForbidden {
				t.Errorf("code %d, want 403", resp.Result.Code)
			}
			if resp.Result.Reason != metav1.StatusReasonForbidden {
				t.Errorf("reason %q, want Forbidden", resp.Result.Reason)
			}
			d := resp.Result.Details
			if d == nil {
				t.Fatalf("no details in %+v", resp.Result)
			}
			if d.Name != tt.req.Name || d.Kind != "namespaces" {
				t.Errorf("details name %q kind %q", d.Name, d.Kind)
			}
			var rules, parts []string
			for _, c := range d.Causes {
				rules = append(rules, string(c.Type))
				if c.Message == "" {
					t.Errorf("cause %s has no message", c.Type)
				}
				parts = append(parts, string(c.Type)+": "+c.Message)
			}
			if !slices.Equal(rules, tt.wantRules) {
				t.Errorf("causes %v, want %v", rules, tt.wantRules)
			}
			// Every violation is in the message as "rule-id: message".
			if want := strings.Join(parts, "; "); resp.Result.Message != want {
				t.Errorf("message\n got %q\nwant %q", resp.Result.Message, want)
			}
			if !sameSet(resp.Warnings, tt.wantWarnings) {
				t.Errorf("warnings\n got %q\nwant %q", resp.Warnings, tt.wantWarnings)
			}
			recs := rec.all()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			r := recs[0]
			if r.Allowed || r.Err != nil || len(r.Violations) != len(tt.wantRules) || !sameSet(r.Warnings, tt.wantWarnings) {
				t.Errorf("record %+v", r)
			}
			for i, v := range r.Violations {
				if v.Rule != tt.wantRules[i] || v.Message != d.Causes[i].Message {
					t.Errorf("record violation %d = %v, want cause %v", i, v, d.Causes[i])
				}
			}
		})
	}
}
