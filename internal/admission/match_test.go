package admission

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/testutil"
)

// TestUncheckedUpdates: an UPDATE of a namespace being deleted, or one that
// changes neither labels nor annotations (a finalizer patch), is allowed
// without evaluating the policy, by both handlers. The object makes the tiny
// bundle's evaluation fail, so an evaluation would answer 500.
func TestUncheckedUpdates(t *testing.T) {
	stored := testutil.NamespaceJSON(t, "payments", requested(map[string]string{"example.com/fail": "yes"}), map[string]string{"example.com/team": "payments"})
	patched := func(ops ...map[string]any) []byte { return testutil.ApplyPatch(t, stored, ops) }
	deleting := patched(map[string]any{"op": "add", "path": "/metadata/deletionTimestamp", "value": "2026-01-02T03:04:05Z"})
	finalizer := map[string]any{"op": "add", "path": "/metadata/finalizers", "value": []string{"foregroundDeletion"}}
	label := map[string]any{"op": "add", "path": "/metadata/labels/example.com~1owner", "value": "ops"}
	update := func(old, obj []byte) admission.Request {
		return testutil.AdmissionRequest(admissionv1.Update, "payments", "system:serviceaccount:kube-system:generic-garbage-collector", nil, obj, old)
	}
	tests := []struct {
		name      string
		req       admission.Request
		evaluated bool
	}{
		{"finalizer added", update(stored, patched(finalizer)), false},
		{"finalizer removed", update(patched(finalizer), stored), false},
		{"nothing changed", update(stored, stored), false},
		{"being deleted, finalizer removed", update(testutil.ApplyPatch(t, deleting, []any{finalizer}), deleting), false},
		{"being deleted, label added", update(deleting, testutil.ApplyPatch(t, deleting, []any{label})), false},
		{"label added", update(stored, patched(label)), true},
		{"label added beside a finalizer", update(stored, patched(finalizer, label)), true},
		{"create", testutil.AdmissionRequest(admissionv1.Create, "payments", "alice", nil, stored, nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, h := range map[string]admission.Handler{
				"mutate":   &Mutator{Policies: tinyStore(t)},
				"validate": &Validator{Policies: tinyStore(t)},
			} {
				resp := h.Handle(context.Background(), tt.req)
				if tt.evaluated {
					if resp.Allowed || resp.Result == nil || resp.Result.Code != 500 {
						t.Errorf("%s: %+v, want the failing evaluation's 500", name, resp.Result)
					}
					continue
				}
				if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 0 {
					t.Errorf("%s: allowed %v, patches %v, warnings %v, result %+v; want allowed untouched", name, resp.Allowed, resp.Patches, resp.Warnings, resp.Result)
				}
			}
		})
	}
}
