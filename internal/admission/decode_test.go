package admission

import (
	"context"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/testutil"
)

// A request nsprov cannot evaluate answers 400 with what is wrong, from both
// handlers, and is recorded as failed.
func TestHandlersBadRequests(t *testing.T) {
	good := testutil.NamespaceJSON(t, "payments-dev", requested(nil), nil)
	req := func(op admissionv1.Operation, obj, old []byte) admission.Request {
		return testutil.AdmissionRequest(op, "payments-dev", alice, aliceGroups, obj, old)
	}
	pod := req(admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}`), nil)
	pod.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	deployment := req(admissionv1.Create, good, nil)
	deployment.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	tests := []struct {
		name     string
		req      admission.Request
		wantCode int32
		wantMsg  []string
	}{
		{"wrong kind Pod", pod, http.StatusBadRequest, []string{"Namespace", "Kind=Pod"}},
		{"wrong group", deployment, http.StatusBadRequest, []string{"apps/v1, Kind=Deployment"}},
		{"missing object", req(admissionv1.Create, nil, nil), http.StatusBadRequest, []string{"no object"}},
		{"update without oldObject", req(admissionv1.Update, good, nil), http.StatusBadRequest, []string{"no oldObject"}},
		{"object metadata not an object", req(admissionv1.Create, []byte(`{"metadata": 5}`), nil), http.StatusBadRequest, []string{"request.object is not a Namespace"}},
		{"object is a string", req(admissionv1.Create, []byte(`"payments-dev"`), nil), http.StatusBadRequest, []string{"request.object is not a Namespace"}},
		{"annotation value not a string", req(admissionv1.Create, []byte(`{"metadata":{"name":"payments-dev","annotations":{"example.com/team":5}}}`), nil), http.StatusBadRequest, []string{"request.object is not a Namespace"}},
		{"oldObject not a Namespace", req(admissionv1.Update, good, []byte(`{"metadata":{"labels":[]}}`)), http.StatusBadRequest, []string{"request.oldObject is not a Namespace"}},
	}
	for _, tt := range tests {
		for _, h := range handlers(tinyStore(t)) {
			t.Run(tt.name+"/"+h.name, func(t *testing.T) {
				rec := &recorder{}
				h.setRecorder(rec)
				resp := h.Handle(context.Background(), tt.req)
				if resp.Allowed {
					t.Fatal("allowed, want an error")
				}
				if resp.Result == nil || resp.Result.Code != tt.wantCode {
					t.Fatalf("result %+v, want code %d", resp.Result, tt.wantCode)
				}
				for _, w := range tt.wantMsg {
					if !strings.Contains(resp.Result.Message, w) {
						t.Errorf("message %q lacks %q", resp.Result.Message, w)
					}
				}
				if len(resp.Patches) != 0 {
					t.Errorf("patches on an error: %v", resp.Patches)
				}
				recs := rec.all()
				if len(recs) != 1 || recs[0].Err == nil || recs[0].Allowed || recs[0].Webhook != h.name {
					t.Fatalf("records %+v, want one failed %s record", recs, h.name)
				}
				if recs[0].Err.Error() != resp.Result.Message {
					t.Errorf("record error %q, response message %q", recs[0].Err, resp.Result.Message)
				}
			})
		}
	}
}
