package admission

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

// serve posts body to the handler behind controller-runtime's webhook, with
// panics recovered as the serve command registers it, and decodes its
// AdmissionReview answer.
func serve(tb testing.TB, h admission.Handler, contentType string, body []byte) *admissionv1.AdmissionResponse {
	tb.Helper()
	wh := &webhook.Admission{Handler: h}
	wh.WithRecoverPanic(true)
	srv, err := admission.StandaloneWebhook(wh, admission.StandaloneOptions{Logger: logr.Discard()})
	if err != nil {
		tb.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		tb.Fatalf("HTTP status %d: %s", w.Code, w.Body.String())
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil {
		tb.Fatalf("response is not an AdmissionReview: %v\n%s", err, w.Body.String())
	}
	if ar.Response == nil {
		tb.Fatalf("AdmissionReview without a response: %s", w.Body.String())
	}
	return ar.Response
}

func TestHTTPDecisions(t *testing.T) {
	store := tinyStore(t)
	create := createReq(t, alice, aliceGroups, "payments-dev", requested(nil), nil)

	t.Run("mutate returns a JSON patch", func(t *testing.T) {
		resp := serve(t, &Mutator{Policies: store}, "application/json", testutil.Review(t, create))
		if !resp.Allowed || resp.UID != create.UID {
			t.Fatalf("response %+v", resp)
		}
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
		}
		var ops []map[string]any
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		ns := testutil.PatchedNamespace(t, create.Object.Raw, ops)
		wantAnn, wantLabels := mutated()
		if !reflect.DeepEqual(ns.Annotations, wantAnn) || !reflect.DeepEqual(ns.Labels, wantLabels) {
			t.Errorf("patched object annotations %v labels %v", ns.Annotations, ns.Labels)
		}
	})

	t.Run("validate denies with 403, every rule and the warnings", func(t *testing.T) {
		req := denyingReq(t)
		resp := serve(t, &Validator{Policies: store}, "application/json", testutil.Review(t, req))
		if resp.Allowed || resp.UID != req.UID || resp.Result == nil || resp.Result.Code != http.StatusForbidden {
			t.Fatalf("response %+v", resp)
		}
		for _, rule := range []string{"name-prefix: ", "size-invalid: "} {
			if !strings.Contains(resp.Result.Message, rule) {
				t.Errorf("message %q lacks %q", resp.Result.Message, rule)
			}
		}
		if resp.Result.Details == nil || len(resp.Result.Details.Causes) != 2 {
			t.Errorf("details %+v, want two causes", resp.Result.Details)
		}
		if want := []string{"annotation example.com/scratch is ignored"}; !slices.Equal(resp.Warnings, want) {
			t.Errorf("warnings %q, want %q", resp.Warnings, want)
		}
	})

	t.Run("evaluation error is a 500", func(t *testing.T) {
		resp := serve(t, &Validator{Policies: store}, "application/json", testutil.Review(t, failingReq(t, admissionv1.Create)))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusInternalServerError {
			t.Fatalf("response %+v", resp)
		}
	})

	// A store without a bundle makes the handlers panic; the request fails
	// with a 500 instead of being allowed or killing the server.
	t.Run("panic is a 500", func(t *testing.T) {
		for _, h := range handlers(policy.StaticStore(nil)) {
			resp := serve(t, h.Handler, "application/json", testutil.Review(t, create))
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusInternalServerError {
				t.Errorf("%s: response %+v, want a 500", h.name, resp)
			}
		}
	})
}

func TestHTTPMalformed(t *testing.T) {
	store := tinyStore(t)
	good := testutil.NamespaceJSON(t, "payments-dev", requested(nil), nil)
	req := func(op admissionv1.Operation, obj []byte) admission.Request {
		return testutil.AdmissionRequest(op, "payments-dev", alice, aliceGroups, obj, nil)
	}
	pod := req(admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}`))
	pod.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	oversized := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","padding":"`),
		bytes.Repeat([]byte("a"), 7<<20)...)
	oversized = append(oversized, []byte(`"}}`)...)
	// rawReview is a CREATE review by alice with the given request.object.
	rawReview := func(uid, object string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid +
			`","kind":{"group":"","version":"v1","kind":"Namespace"},"resource":{"group":"","version":"v1","resource":"namespaces"},"operation":"CREATE","userInfo":{"username":"alice"},"object":` +
			object + `}}`)
	}

	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantCode    int32
		wantMsg     string
	}{
		{"body not JSON", "application/json", []byte("this is not json"), http.StatusBadRequest, ""},
		{"wrong content type", "text/plain", testutil.Review(t, req(admissionv1.Create, good)), http.StatusBadRequest, "contentType=text/plain"},
		{"no content type", "", testutil.Review(t, req(admissionv1.Create, good)), http.StatusBadRequest, "expected application/json"},
		{"oversized body", "application/json", oversized, http.StatusRequestEntityTooLarge, "too large"},
		{"wrong kind", "application/json", testutil.Review(t, pod), http.StatusBadRequest, "Kind=Pod"},
		{"missing object", "application/json", testutil.Review(t, req(admissionv1.Create, nil)), http.StatusBadRequest, "no object"},
		{"null object", "application/json", rawReview("u1", "null"), http.StatusBadRequest, "no object"},
		{"update without oldObject", "application/json", testutil.Review(t, req(admissionv1.Update, good)), http.StatusBadRequest, "no oldObject"},
		{"metadata is a number", "application/json", rawReview("u2", `{"apiVersion":"v1","kind":"Namespace","metadata":5}`), http.StatusBadRequest, "request.object is not a Namespace"},
		{"object is an array", "application/json", rawReview("u3", "[1,2]"), http.StatusBadRequest, "request.object is not a Namespace"},
	}
	for _, tt := range tests {
		for _, h := range handlers(store) {
			t.Run(tt.name+"/"+h.name, func(t *testing.T) {
				rec := &recorder{}
				h.setRecorder(rec)
				resp := serve(t, h.Handler, tt.contentType, tt.body)
				if resp.Allowed {
					t.Fatalf("allowed, want %d", tt.wantCode)
				}
				if resp.Result == nil || resp.Result.Code != tt.wantCode {
					t.Fatalf("result %+v, want code %d", resp.Result, tt.wantCode)
				}
				if resp.Result.Message == "" || !strings.Contains(resp.Result.Message, tt.wantMsg) {
					t.Errorf("message %q, want it to contain %q", resp.Result.Message, tt.wantMsg)
				}
				if len(resp.Patch) != 0 {
					t.Errorf("patch on an error: %s", resp.Patch)
				}
			})
		}
	}
}

// An AdmissionReview without a request (an empty body, "{}", a review with
// no request field) reaches the handlers with an empty operation. It is not
// a request nsprov can evaluate and must not be allowed.
func TestHTTPNoRequest(t *testing.T) {
	store := tinyStore(t)
	bodies := map[string]string{
		"empty body":         "",
		"empty object":       "{}",
		"null":               "null",
		"review, no request": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
	}
	for name, body := range bodies {
		for _, h := range handlers(store) {
			t.Run(name+"/"+h.name, func(t *testing.T) {
				resp := serve(t, h.Handler, "application/json", []byte(body))
				if resp.Allowed {
					t.Fatalf("allowed %q, want a 400 that says the review has no request", body)
				}
				if resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
					t.Fatalf("result %+v, want code 400", resp.Result)
				}
			})
		}
	}
}
