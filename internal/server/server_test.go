package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

type memRecorder struct {
	mu      sync.Mutex
	records []admission.Record
}

func (m *memRecorder) Record(_ context.Context, r *admission.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, *r)
}

// registerWebhooks serves both handlers on their paths.
func TestRegisterWebhooks(t *testing.T) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	server := webhook.NewServer(webhook.Options{})
	rec := &memRecorder{}
	registerWebhooks(server, policy.StaticStore(b), rec, false)
	srv := httptest.NewServer(server.WebhookMux())
	defer srv.Close()

	obj := []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"payments-dev","annotations":{"nsprov.io/team":"payments","nsprov.io/environment":"development"}}}`)
	post := func(path string, req admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		t.Helper()
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request:  &req,
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ar admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
			t.Fatal(err)
		}
		if ar.Response == nil || ar.Response.UID != req.UID {
			t.Fatalf("%s: response %+v", path, ar.Response)
		}
		return ar.Response
	}
	req := admissionv1.AdmissionRequest{
		UID:       "u1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		Name:      "payments-dev",
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "bob", Groups: []string{"team-web"}},
		Object:    runtime.RawExtension{Raw: obj},
	}
	m := post(admission.MutatePath, req)
	if !m.Allowed || m.PatchType == nil || len(m.Patch) == 0 {
		t.Errorf("mutate: %+v", m)
	}
	v := post(admission.ValidatePath, req)
	if v.Allowed || v.Result == nil || v.Result.Code != http.StatusForbidden || !strings.Contains(v.Result.Message, "requester-not-in-team: ") {
		t.Errorf("validate: %+v", v)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.records) != 2 || rec.records[0].Webhook != "mutate" || rec.records[1].Webhook != "validate" {
		t.Errorf("records %+v", rec.records)
	}
	for _, r := range rec.records {
		if r.ClientVerified {
			t.Errorf("%s record is marked ClientVerified without client verification", r.Webhook)
		}
	}
}
