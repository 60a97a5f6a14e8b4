package admission

import (
	"context"
	"net/http"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/testutil"
)

type op = map[string]any

func TestMutatorPatches(t *testing.T) {
	mutAnn, mutLabels := mutated()
	tests := []struct {
		name string
		req  admission.Request
		want []op
	}{
		{
			name: "create without labels adds the annotations and the labels map",
			req:  createReq(t, alice, aliceGroups, "payments-dev", requested(nil), nil),
			want: []op{
				{"op": "add", "path": "/metadata/annotations/example.com~1requested-by", "value": "alice"},
				{"op": "add", "path": "/metadata/annotations/example.com~1size", "value": "small"},
				{"op": "add", "path": "/metadata/labels", "value": map[string]any{"example.com/team": "payments"}},
			},
		},
		{
			name: "existing keys are replaced or removed and existing labels are patched key by key",
			req: createReq(t, alice, aliceGroups, "payments-dev",
				requested(map[string]string{"example.com/requested-by": "mallory", "example.com/size": "large", "example.com/scratch": "x"}),
				map[string]string{"app": "shop", "example.com/team": "web"}),
			want: []op{
				{"op": "replace", "path": "/metadata/annotations/example.com~1requested-by", "value": "alice"},
				{"op": "remove", "path": "/metadata/annotations/example.com~1scratch"},
				{"op": "replace", "path": "/metadata/labels/example.com~1team", "value": "payments"},
			},
		},
		{
			name: "an already mutated object needs no patch",
			req:  createReq(t, alice, aliceGroups, "payments-dev", mutAnn, mutLabels),
			want: nil,
		},
		{
			name: "a namespace the mutation leaves alone needs no patch",
			req:  createReq(t, bob, bobGroups, "scratch", nil, nil),
			want: nil,
		},
		{
			name: "an update is mutated from its new object",
			req: testutil.AdmissionRequest(admissionv1.Update, "payments-dev", bob, bobGroups,
				testutil.NamespaceJSON(t, "payments-dev", mutAnn, mutLabels),
				testutil.NamespaceJSON(t, "payments-dev", nil, nil)),
			want: []op{
				{"op": "replace", "path": "/metadata/annotations/example.com~1requested-by", "value": "bob"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			m := &Mutator{Policies: tinyStore(t), Recorder: rec}
			resp := m.Handle(context.Background(), tt.req)
			if !resp.Allowed {
				t.Fatalf("not allowed: %+v", resp.Result)
			}
			if resp.Result != nil && resp.Result.Code != 0 && resp.Result.Code != http.StatusOK {
				t.Errorf("result code %d, want 200", resp.Result.Code)
			}
			if len(tt.want) == 0 {
				if len(resp.Patches) != 0 {
					t.Fatalf("patches %s, want none", testutil.MustJSON(t, resp.Patches))
				}
			} else if !testutil.JSONEqual(t, resp.Patches, tt.want) {
				t.Fatalf("patches\n got %s\nwant %s", testutil.MustJSON(t, resp.Patches), testutil.MustJSON(t, tt.want))
			}
			// The patch applies to the object the API server sent.
			if len(resp.Patches) > 0 {
				testutil.ApplyPatch(t, tt.req.Object.Raw, resp.Patches)
			}
			recs := rec.all()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if recs[0].Patches != len(resp.Patches) || !recs[0].Allowed || recs[0].Err != nil || recs[0].Webhook != "mutate" {
				t.Errorf("record %+v, want an allowed mutate record with %d patches", recs[0], len(resp.Patches))
			}
		})
	}
}

func TestMutatorPatchProducesMutatedObject(t *testing.T) {
	m := &Mutator{Policies: tinyStore(t)}
	req := createReq(t, alice, aliceGroups, "payments-dev", requested(map[string]string{"example.com/scratch": "x"}), nil)
	resp := m.Handle(context.Background(), req)
	if !resp.Allowed {
		t.Fatalf("not allowed: %+v", resp.Result)
	}
	ns := testutil.PatchedNamespace(t, req.Object.Raw, resp.Patches)
	wantAnn, wantLabels := mutated()
	if !reflect.DeepEqual(ns.Annotations, wantAnn) {
		t.Errorf("annotations %v, want %v", ns.Annotations, wantAnn)
	}
	if !reflect.DeepEqual(ns.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", ns.Labels, wantLabels)
	}
	// Fields the policy does not read survive.
	if ns.Status.Phase != corev1.NamespaceActive || len(ns.Spec.Finalizers) != 1 {
		t.Errorf("unrelated fields changed: %+v %+v", ns.Spec, ns.Status)
	}
}
