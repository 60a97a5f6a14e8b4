package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/nsprov/nsprov/internal/policy"
)

// embeddedBundle compiles the embedded bundle once for the whole package.
var embeddedBundle = sync.OnceValues(func() (*policy.Bundle, error) {
	return policy.LoadEmbedded(context.Background())
})

func embeddedStore(tb testing.TB) *policy.Store {
	tb.Helper()
	b, err := embeddedBundle()
	if err != nil {
		tb.Fatalf("loading the embedded bundle: %v", err)
	}
	return policy.StaticStore(b)
}

// brokenBundle defines every entry point, but both the mutation and deny
// raise a runtime error for any Namespace: the mutation's complete rule has
// two conflicting values and deny calls to_number on the name with strict
// builtin errors.
var brokenBundle = sync.OnceValues(func() (*policy.Bundle, error) {
	return policy.Load(context.Background(), fstest.MapFS{
		"broken.rego": {Data: []byte(`package nsprov.mutation

import rego.v1

result := {"annotations": {}, "labels": {}} if input.request.operation != ""

result := {"annotations": {"x": "y"}, "labels": {}} if input.request.object.metadata.name != ""
`)},
		"validation.rego": {Data: []byte(`package nsprov.validation

import rego.v1

deny contains {"rule": "boom", "message": sprintf("%v", [n])} if {
	n := to_number(input.request.object.metadata.name)
}

warn contains "never" if false
`)},
		"plan.rego": {Data: []byte(`package nsprov.plan

import rego.v1

plan := {}
`)},
	}, "test")
})

func brokenStore(tb testing.TB) *policy.Store {
	tb.Helper()
	b, err := brokenBundle()
	if err != nil {
		tb.Fatalf("loading the broken test bundle: %v", err)
	}
	return policy.StaticStore(b)
}

// recorder keeps a copy of every record it receives.
type recorder struct {
	mu      sync.Mutex
	records []Record
}

func (r *recorder) Record(_ context.Context, rec *Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, *rec)
}

func (r *recorder) all() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.records)
}

// nsJSON is a Namespace as the API server sends it in an AdmissionRequest.
func nsJSON(tb testing.TB, name string, annotations, labels map[string]string) []byte {
	tb.Helper()
	ns := corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: labels},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	raw, err := json.Marshal(ns)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

var namespaceGVK = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Namespace"}

// newRequest builds an AdmissionRequest for a Namespace as the API server does.
func newRequest(op admissionv1.Operation, name, user string, groups []string, obj, old []byte) admission.Request {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:         types.UID("uid-" + strings.ToLower(string(op)) + "-" + name),
		Kind:        namespaceGVK,
		Resource:    metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		RequestKind: &namespaceGVK,
		Name:        name,
		Operation:   op,
		UserInfo:    authenticationv1.UserInfo{Username: user, Groups: groups},
		DryRun:      ptr.To(false),
	}}
	if obj != nil {
		req.Object = runtime.RawExtension{Raw: obj}
	}
	if old != nil {
		req.OldObject = runtime.RawExtension{Raw: old}
	}
	return req
}

var (
	alice       = "alice"
	aliceGroups = []string{"system:authenticated", "team-payments"}
	bob         = "bob"
	bobGroups   = []string{"system:authenticated", "team-web"}
	admin       = "root"
	adminGroups = []string{"system:authenticated", "platform-admins"}
)

// paymentsDev is the allowed request of the benchmarks and most tests.
func paymentsDev() map[string]string {
	return map[string]string{
		"nsprov.io/team":        "payments",
		"nsprov.io/environment": "development",
		"nsprov.io/features":    "istio, Monitoring-Enhanced",
	}
}

// mutatedPaymentsDev is paymentsDev after alice's CREATE went through the mutation.
func mutatedPaymentsDev() (map[string]string, map[string]string) {
	return map[string]string{
			"nsprov.io/team":           "payments",
			"nsprov.io/environment":    "development",
			"nsprov.io/features":       "istio,monitoring-enhanced",
			"nsprov.io/tier":           "small",
			"nsprov.io/network-policy": "isolated",
			"nsprov.io/requested-by":   "alice",
		}, map[string]string{
			"nsprov.io/team":        "payments",
			"nsprov.io/environment": "development",
			"nsprov.io/tier":        "small",
		}
}

// jsonEqual compares two values by their JSON encoding.
func jsonEqual(tb testing.TB, got, want any) bool {
	tb.Helper()
	norm := func(v any) any {
		raw, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(raw, &out); err != nil {
			tb.Fatal(err)
		}
		return out
	}
	return reflect.DeepEqual(norm(got), norm(want))
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(raw)
}

type op = map[string]any

func TestMutatorPatches(t *testing.T) {
	mutAnn, mutLabels := mutatedPaymentsDev()
	tests := []struct {
		name string
		req  admission.Request
		want []op
	}{
		{
			name: "create adds defaults, normalises features and mirrors labels",
			req:  newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", paymentsDev(), nil), nil),
			want: []op{
				{"op": "replace", "path": "/metadata/annotations/nsprov.io~1features", "value": "istio,monitoring-enhanced"},
				{"op": "add", "path": "/metadata/annotations/nsprov.io~1network-policy", "value": "isolated"},
				{"op": "add", "path": "/metadata/annotations/nsprov.io~1requested-by", "value": "alice"},
				{"op": "add", "path": "/metadata/annotations/nsprov.io~1tier", "value": "small"},
				{"op": "add", "path": "/metadata/labels", "value": map[string]any{
					"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small",
				}},
			},
		},
		{
			name: "client-supplied requested-by is replaced and existing labels are patched key by key",
			req: newRequest(admissionv1.Create, "payments-prod", alice, aliceGroups, nsJSON(t, "payments-prod", map[string]string{
				"nsprov.io/team":           "payments",
				"nsprov.io/environment":    "production",
				"nsprov.io/tier":           "large",
				"nsprov.io/network-policy": "team",
				"nsprov.io/requested-by":   "mallory",
			}, map[string]string{
				"app":            "shop",
				"nsprov.io/tier": "micro",
			}), nil),
			want: []op{
				{"op": "replace", "path": "/metadata/annotations/nsprov.io~1requested-by", "value": "alice"},
				{"op": "add", "path": "/metadata/labels/nsprov.io~1environment", "value": "production"},
				{"op": "add", "path": "/metadata/labels/nsprov.io~1team", "value": "payments"},
				{"op": "replace", "path": "/metadata/labels/nsprov.io~1tier", "value": "large"},
			},
		},
		{
			name: "an already mutated object needs no patch",
			req:  newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", mutAnn, mutLabels), nil),
			want: nil,
		},
		{
			name: "a bare namespace is left alone",
			req:  newRequest(admissionv1.Create, "scratch", admin, adminGroups, nsJSON(t, "scratch", nil, nil), nil),
			want: nil,
		},
		{
			name: "update keeps the original requester and removes an emptied features annotation",
			req: newRequest(admissionv1.Update, "payments-dev", bob, []string{"team-payments"},
				nsJSON(t, "payments-dev", map[string]string{
					"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small",
					"nsprov.io/network-policy": "isolated", "nsprov.io/requested-by": "bob", "nsprov.io/features": "",
				}, mutLabels),
				nsJSON(t, "payments-dev", mutAnn, mutLabels)),
			want: []op{
				{"op": "remove", "path": "/metadata/annotations/nsprov.io~1features"},
				{"op": "replace", "path": "/metadata/annotations/nsprov.io~1requested-by", "value": "alice"},
			},
		},
		{
			name: "an admin releasing a namespace drops the mirrored labels",
			req: newRequest(admissionv1.Update, "payments-dev", admin, adminGroups,
				nsJSON(t, "payments-dev", map[string]string{"nsprov.io/requested-by": "alice"}, map[string]string{"app": "shop", "nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small"}),
				nsJSON(t, "payments-dev", mutAnn, mutLabels)),
			want: []op{
				{"op": "remove", "path": "/metadata/labels/nsprov.io~1environment"},
				{"op": "remove", "path": "/metadata/labels/nsprov.io~1team"},
				{"op": "remove", "path": "/metadata/labels/nsprov.io~1tier"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			m := &Mutator{Policies: embeddedStore(t), Recorder: rec}
			resp := m.Handle(context.Background(), tt.req)
			if !resp.Allowed {
				t.Fatalf("not allowed: %+v", resp.Result)
			}
			if resp.Result != nil && resp.Result.Code != 0 && resp.Result.Code != http.StatusOK {
				t.Errorf("result code %d, want 200", resp.Result.Code)
			}
			if len(tt.want) == 0 {
				if len(resp.Patches) != 0 {
					t.Fatalf("patches %s, want none", mustJSON(t, resp.Patches))
				}
			} else if !jsonEqual(t, resp.Patches, tt.want) {
				t.Fatalf("patches\n got %s\nwant %s", mustJSON(t, resp.Patches), mustJSON(t, tt.want))
			}
			// The patch applies to the object the API server sent.
			if len(resp.Patches) > 0 {
				applyPatch(t, tt.req.Object.Raw, resp.Patches)
			}
			recs := rec.all()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if recs[0].Patches != len(resp.Patches) {
				t.Errorf("record.Patches = %d, want %d", recs[0].Patches, len(resp.Patches))
			}
		})
	}
}

// applyPatch applies patch operations to raw as the API server does and
// returns the resulting Namespace.
func applyPatch(tb testing.TB, raw []byte, ops any) *corev1.Namespace {
	tb.Helper()
	opsJSON, err := json.Marshal(ops)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(opsJSON)
	if err != nil {
		tb.Fatalf("decoding patch %s: %v", opsJSON, err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		tb.Fatalf("applying patch %s to %s: %v", opsJSON, raw, err)
	}
	ns := &corev1.Namespace{}
	if err := json.Unmarshal(out, ns); err != nil {
		tb.Fatal(err)
	}
	return ns
}

func TestMutatorPatchProducesMutatedObject(t *testing.T) {
	m := &Mutator{Policies: embeddedStore(t)}
	req := newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", paymentsDev(), nil), nil)
	resp := m.Handle(context.Background(), req)
	if !resp.Allowed {
		t.Fatalf("not allowed: %+v", resp.Result)
	}
	ns := applyPatch(t, req.Object.Raw, resp.Patches)
	wantAnn, wantLabels := mutatedPaymentsDev()
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

func TestValidatorAllowed(t *testing.T) {
	mutAnn, mutLabels := mutatedPaymentsDev()
	tests := []struct {
		name         string
		req          admission.Request
		wantWarnings []string
	}{
		{
			name:         "alice creates payments-dev",
			req:          newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", mutAnn, mutLabels), nil),
			wantWarnings: []string{"tier small costs $100 per month (2 CPU, 4Gi memory, 20Gi storage)"},
		},
		{
			name:         "an admin creates a bare namespace",
			req:          newRequest(admissionv1.Create, "scratch", admin, adminGroups, nsJSON(t, "scratch", nil, nil), nil),
			wantWarnings: nil,
		},
		{
			name: "an admin moves a namespace to another team",
			req: newRequest(admissionv1.Update, "payments-dev", admin, adminGroups,
				nsJSON(t, "payments-dev", map[string]string{
					"nsprov.io/team": "web", "nsprov.io/environment": "development", "nsprov.io/tier": "small",
					"nsprov.io/network-policy": "isolated", "nsprov.io/requested-by": "alice",
				}, map[string]string{"nsprov.io/team": "web", "nsprov.io/environment": "development", "nsprov.io/tier": "small"}),
				nsJSON(t, "payments-dev", mutAnn, mutLabels)),
			wantWarnings: nil,
		},
		{
			name: "staging with an open network policy is allowed with a warning",
			req: newRequest(admissionv1.Create, "payments-staging", alice, aliceGroups, nsJSON(t, "payments-staging", map[string]string{
				"nsprov.io/team": "payments", "nsprov.io/environment": "staging", "nsprov.io/tier": "medium",
				"nsprov.io/network-policy": "open", "nsprov.io/requested-by": "alice", "nsprov.io/colour": "blue",
			}, map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "staging", "nsprov.io/tier": "medium"}), nil),
			wantWarnings: []string{
				"tier medium costs $200 per month (4 CPU, 8Gi memory, 50Gi storage)",
				"network policy open in staging: no default deny; all traffic allowed; consider isolated or team",
				"annotation nsprov.io/colour is not used by nsprov and is ignored; known annotations: nsprov.io/environment, nsprov.io/features, nsprov.io/network-policy, nsprov.io/reprovision, nsprov.io/requested-by, nsprov.io/team, nsprov.io/tier, nsprov.io/workflow",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			v := &Validator{Policies: embeddedStore(t), Recorder: rec}
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
			if len(recs) != 1 || !recs[0].Allowed || len(recs[0].Violations) != 0 || !sameSet(recs[0].Warnings, tt.wantWarnings) {
				t.Errorf("records %+v", recs)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestValidatorDenied(t *testing.T) {
	mutAnn, mutLabels := mutatedPaymentsDev()
	tests := []struct {
		name         string
		req          admission.Request
		wantRules    []string
		wantWarnings []string
	}{
		{
			name: "production with an open network policy by a user outside the team",
			req: newRequest(admissionv1.Create, "payments-prod", bob, bobGroups, nsJSON(t, "payments-prod", map[string]string{
				"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/tier": "medium",
				"nsprov.io/network-policy": "open", "nsprov.io/requested-by": "bob",
			}, map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/tier": "medium"}), nil),
			wantRules: []string{"network-policy-not-allowed-in-environment", "requester-not-in-team"},
			// No open-network-policy warning: the denial already says it.
			wantWarnings: []string{"tier medium costs $200 per month (4 CPU, 8Gi memory, 50Gi storage)"},
		},
		{
			name:      "a bare namespace by an ordinary user",
			req:       newRequest(admissionv1.Create, "scratch", bob, bobGroups, nsJSON(t, "scratch", nil, nil), nil),
			wantRules: []string{"request-required"},
		},
		{
			name: "every invalid value is reported",
			req: newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", map[string]string{
				"nsprov.io/team": "Payments!", "nsprov.io/environment": "prod", "nsprov.io/tier": "huge",
			}, nil), nil),
			wantRules: []string{"environment-invalid", "team-invalid", "tier-invalid"},
		},
		{
			name: "a team change by a member",
			req: newRequest(admissionv1.Update, "payments-dev", alice, aliceGroups,
				nsJSON(t, "payments-dev", map[string]string{
					"nsprov.io/team": "web", "nsprov.io/environment": "development", "nsprov.io/tier": "small",
					"nsprov.io/network-policy": "isolated", "nsprov.io/requested-by": "alice",
				}, nil),
				nsJSON(t, "payments-dev", mutAnn, mutLabels)),
			wantRules: []string{"requester-not-in-team", "team-immutable"},
		},
		{
			name: "forged managed metadata",
			req: newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", map[string]string{
				"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small",
				"nsprov.io/network-policy": "isolated", "nsprov.io/requested-by": "alice", "nsprov.io/workflow": "argo/x",
			}, map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small", "nsprov.io/owner": "alice"}), nil),
			wantRules:    []string{"managed-metadata-forged", "managed-metadata-forged"},
			wantWarnings: []string{"tier small costs $100 per month (2 CPU, 4Gi memory, 20Gi storage)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			v := &Validator{Policies: embeddedStore(t), Recorder: rec}
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

func TestHandlersBadRequests(t *testing.T) {
	good := nsJSON(t, "payments-dev", paymentsDev(), nil)
	pod := newRequest(admissionv1.Create, "web", alice, aliceGroups, []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}`), nil)
	pod.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	deployment := newRequest(admissionv1.Create, "web", alice, aliceGroups, good, nil)
	deployment.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	tests := []struct {
		name     string
		req      admission.Request
		wantCode int32
		wantMsg  []string
	}{
		{"wrong kind Pod", pod, http.StatusBadRequest, []string{"Namespace", "Kind=Pod"}},
		{"wrong group", deployment, http.StatusBadRequest, []string{"apps/v1, Kind=Deployment"}},
		{"missing object", newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nil, nil), http.StatusBadRequest, []string{"no object"}},
		{"update without oldObject", newRequest(admissionv1.Update, "payments-dev", alice, aliceGroups, good, nil), http.StatusBadRequest, []string{"no oldObject"}},
		{"object metadata not an object", newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, []byte(`{"metadata": 5}`), nil), http.StatusBadRequest, []string{"request.object is not a Namespace"}},
		{"object is a string", newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, []byte(`"payments-dev"`), nil), http.StatusBadRequest, []string{"request.object is not a Namespace"}},
		{"annotation value not a string", newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, []byte(`{"metadata":{"name":"payments-dev","annotations":{"nsprov.io/team":5}}}`), nil), http.StatusBadRequest, []string{"request.object is not a Namespace"}},
		{"oldObject not a Namespace", newRequest(admissionv1.Update, "payments-dev", alice, aliceGroups, good, []byte(`{"metadata":{"labels":[]}}`)), http.StatusBadRequest, []string{"request.oldObject is not a Namespace"}},
	}
	for _, tt := range tests {
		for _, h := range handlers(embeddedStore(t)) {
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

// namedHandler is a Mutator or Validator under a name.
type namedHandler struct {
	name string
	admission.Handler
	setRecorder func(Recorder)
}

func handlers(store *policy.Store) []namedHandler {
	m := &Mutator{Policies: store}
	v := &Validator{Policies: store}
	return []namedHandler{
		{"mutate", m, func(r Recorder) { m.Recorder = r }},
		{"validate", v, func(r Recorder) { v.Recorder = r }},
	}
}

func TestHandlersEvaluationError(t *testing.T) {
	store := brokenStore(t)
	for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update} {
		old := []byte(nil)
		if op == admissionv1.Update {
			old = nsJSON(t, "payments-dev", paymentsDev(), nil)
		}
		req := newRequest(op, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", paymentsDev(), nil), old)
		for _, h := range handlers(store) {
			t.Run(string(op)+"/"+h.name, func(t *testing.T) {
				rec := &recorder{}
				h.setRecorder(rec)
				resp := h.Handle(context.Background(), req)
				if resp.Allowed {
					t.Fatal("allowed, want a 500")
				}
				if resp.Result == nil || resp.Result.Code != http.StatusInternalServerError {
					t.Fatalf("result %+v, want code 500", resp.Result)
				}
				if !strings.Contains(resp.Result.Message, "evaluating data.nsprov.") {
					t.Errorf("message %q does not say which query failed", resp.Result.Message)
				}
				recs := rec.all()
				if len(recs) != 1 || recs[0].Err == nil || recs[0].Allowed {
					t.Fatalf("records %+v, want one failed record", recs)
				}
				if recs[0].Revision != store.Bundle().Revision {
					t.Errorf("record revision %q, want %q", recs[0].Revision, store.Bundle().Revision)
				}
			})
		}
	}
}

func TestHandlersSkipOtherOperations(t *testing.T) {
	// The broken bundle answers 500 to anything it evaluates: a pass proves
	// that nothing was evaluated.
	store := brokenStore(t)
	obj := nsJSON(t, "payments-dev", paymentsDev(), nil)
	for _, op := range []admissionv1.Operation{admissionv1.Delete, admissionv1.Connect} {
		req := newRequest(op, "payments-dev", bob, bobGroups, nil, obj)
		for _, h := range handlers(store) {
			t.Run(string(op)+"/"+h.name, func(t *testing.T) {
				rec := &recorder{}
				h.setRecorder(rec)
				resp := h.Handle(context.Background(), req)
				if !resp.Allowed {
					t.Fatalf("denied: %+v", resp.Result)
				}
				if len(resp.Patches) != 0 || len(resp.Warnings) != 0 {
					t.Errorf("patches %v warnings %v", resp.Patches, resp.Warnings)
				}
				if recs := rec.all(); len(recs) != 0 {
					t.Errorf("records %+v, want none for %s", recs, op)
				}
			})
		}
	}
}

func TestHandlersDryRun(t *testing.T) {
	mutAnn, mutLabels := mutatedPaymentsDev()
	create := newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", paymentsDev(), nil), nil)
	validCreate := newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", mutAnn, mutLabels), nil)
	denied := newRequest(admissionv1.Create, "payments-prod", bob, bobGroups, nsJSON(t, "payments-prod", map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/network-policy": "open",
	}, nil), nil)
	store := embeddedStore(t)
	tests := []struct {
		name string
		h    admission.Handler
		req  admission.Request
	}{
		{"mutate", &Mutator{Policies: store}, create},
		{"validate allowed", &Validator{Policies: store}, validCreate},
		{"validate denied", &Validator{Policies: store}, denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wet, dry admission.Response
			var wetRec, dryRec *Record
			for _, dryRun := range []bool{false, true} {
				req := tt.req
				req.DryRun = ptr.To(dryRun)
				rec := &recorder{}
				switch h := tt.h.(type) {
				case *Mutator:
					h.Recorder = rec
				case *Validator:
					h.Recorder = rec
				}
				resp := tt.h.Handle(context.Background(), req)
				recs := rec.all()
				if len(recs) != 1 {
					t.Fatalf("dryRun=%v: %d records, want 1", dryRun, len(recs))
				}
				if recs[0].DryRun != dryRun {
					t.Errorf("record.DryRun = %v, want %v", recs[0].DryRun, dryRun)
				}
				if dryRun {
					dry, dryRec = resp, &recs[0]
				} else {
					wet, wetRec = resp, &recs[0]
				}
			}
			if !jsonEqual(t, dry, wet) {
				t.Errorf("dry-run response differs:\n dry %s\n wet %s", mustJSON(t, dry), mustJSON(t, wet))
			}
			if dryRec.Allowed != wetRec.Allowed || dryRec.Patches != wetRec.Patches || !reflect.DeepEqual(dryRec.Violations, wetRec.Violations) {
				t.Errorf("dry-run record %+v differs from %+v", dryRec, wetRec)
			}
		})
	}
}

func TestRecorderFields(t *testing.T) {
	store := embeddedStore(t)
	rec := &recorder{}
	m := &Mutator{Policies: store, Recorder: rec}
	v := &Validator{Policies: store, Recorder: rec}
	req := newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", paymentsDev(), nil), nil)
	req.DryRun = ptr.To(true)
	mresp := m.Handle(context.Background(), req)
	mutated := req
	mutated.Object.Raw = mustApply(t, req.Object.Raw, mresp.Patches)
	vresp := v.Handle(context.Background(), mutated)
	if !mresp.Allowed || !vresp.Allowed {
		t.Fatalf("mutate %+v validate %+v", mresp.Result, vresp.Result)
	}
	deniedReq := newRequest(admissionv1.Create, "payments-prod", bob, bobGroups, nsJSON(t, "payments-prod", map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/network-policy": "open",
	}, nil), nil)
	dresp := v.Handle(context.Background(), deniedReq)

	recs := rec.all()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Time.IsZero() {
			t.Errorf("%s record has no time", r.Webhook)
		}
		if r.Latency < 0 {
			t.Errorf("%s record has a negative latency", r.Webhook)
		}
		if r.Revision != store.Bundle().Revision {
			t.Errorf("%s record revision %q, want %q", r.Webhook, r.Revision, store.Bundle().Revision)
		}
	}
	strip := func(r Record) Record { r.Time, r.Latency = time.Time{}, 0; return r }
	want := []Record{
		{
			Webhook: "mutate", UID: string(req.UID), Operation: "CREATE", Namespace: "payments-dev",
			Username: alice, Groups: aliceGroups, Allowed: true, Patches: len(mresp.Patches), DryRun: true,
			Revision: store.Bundle().Revision,
		},
		{
			Webhook: "validate", UID: string(req.UID), Operation: "CREATE", Namespace: "payments-dev",
			Username: alice, Groups: aliceGroups, Allowed: true, DryRun: true,
			Warnings: vresp.Warnings, Violations: []policy.Violation{}, Revision: store.Bundle().Revision,
		},
		{
			Webhook: "validate", UID: string(deniedReq.UID), Operation: "CREATE", Namespace: "payments-prod",
			Username: bob, Groups: bobGroups, Allowed: false, DryRun: false,
			Warnings: dresp.Warnings, Revision: store.Bundle().Revision,
			Violations: []policy.Violation{
				{Rule: "network-policy-not-allowed-in-environment", Message: dresp.Result.Details.Causes[0].Message},
				{Rule: "requester-not-in-team", Message: dresp.Result.Details.Causes[1].Message},
			},
		},
	}
	if want[0].Patches != 5 {
		t.Errorf("mutation made %d patches, want 5", want[0].Patches)
	}
	if len(want[1].Warnings) != 1 || len(want[2].Warnings) != 1 {
		t.Errorf("warnings %q and %q", want[1].Warnings, want[2].Warnings)
	}
	for i := range want {
		got := strip(recs[i])
		// An allowed validation may record nil or empty violations.
		if len(got.Violations) == 0 && len(want[i].Violations) == 0 {
			got.Violations, want[i].Violations = nil, nil
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("record %d\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

func mustApply(tb testing.TB, raw []byte, ops any) []byte {
	tb.Helper()
	opsJSON, err := json.Marshal(ops)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(opsJSON)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// --- through controller-runtime's HTTP handler ---

// review wraps a request in an AdmissionReview body.
func review(tb testing.TB, req admission.Request) []byte {
	tb.Helper()
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	}
	raw, err := json.Marshal(ar)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// serve posts body to the webhook and decodes its AdmissionReview answer.
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
	store := embeddedStore(t)
	create := newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nsJSON(t, "payments-dev", paymentsDev(), nil), nil)

	t.Run("mutate returns a JSON patch", func(t *testing.T) {
		resp := serve(t, &Mutator{Policies: store}, "application/json", review(t, create))
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
		ns := applyPatch(t, create.Object.Raw, ops)
		wantAnn, wantLabels := mutatedPaymentsDev()
		if !reflect.DeepEqual(ns.Annotations, wantAnn) || !reflect.DeepEqual(ns.Labels, wantLabels) {
			t.Errorf("patched object annotations %v labels %v", ns.Annotations, ns.Labels)
		}
	})

	t.Run("validate denies with 403 and every rule", func(t *testing.T) {
		req := newRequest(admissionv1.Create, "payments-prod", bob, bobGroups, nsJSON(t, "payments-prod", map[string]string{
			"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/network-policy": "open",
			"nsprov.io/tier": "medium", "nsprov.io/requested-by": "bob",
		}, map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/tier": "medium"}), nil)
		resp := serve(t, &Validator{Policies: store}, "application/json", review(t, req))
		if resp.Allowed || resp.UID != req.UID || resp.Result == nil || resp.Result.Code != http.StatusForbidden {
			t.Fatalf("response %+v", resp)
		}
		for _, rule := range []string{"network-policy-not-allowed-in-environment: ", "requester-not-in-team: "} {
			if !strings.Contains(resp.Result.Message, rule) {
				t.Errorf("message %q lacks %q", resp.Result.Message, rule)
			}
		}
		if resp.Result.Details == nil || len(resp.Result.Details.Causes) != 2 {
			t.Errorf("details %+v, want two causes", resp.Result.Details)
		}
		if want := []string{"tier medium costs $200 per month (4 CPU, 8Gi memory, 50Gi storage)"}; !slices.Equal(resp.Warnings, want) {
			t.Errorf("warnings %q, want %q", resp.Warnings, want)
		}
	})

	t.Run("evaluation error is a 500", func(t *testing.T) {
		resp := serve(t, &Validator{Policies: brokenStore(t)}, "application/json", review(t, create))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusInternalServerError {
			t.Fatalf("response %+v", resp)
		}
	})
}

func TestHTTPMalformed(t *testing.T) {
	store := embeddedStore(t)
	good := nsJSON(t, "payments-dev", paymentsDev(), nil)
	pod := newRequest(admissionv1.Create, "web", alice, aliceGroups, []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}`), nil)
	pod.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	oversized := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","padding":"`),
		bytes.Repeat([]byte("a"), 7<<20)...)
	oversized = append(oversized, []byte(`"}}`)...)

	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantCode    int32
		wantMsg     string
	}{
		{"body not JSON", "application/json", []byte("this is not json"), http.StatusBadRequest, ""},
		{"wrong content type", "text/plain", review(t, newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, good, nil)), http.StatusBadRequest, "contentType=text/plain"},
		{"no content type", "", review(t, newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, good, nil)), http.StatusBadRequest, "expected application/json"},
		{"oversized body", "application/json", oversized, http.StatusRequestEntityTooLarge, "too large"},
		{"wrong kind", "application/json", review(t, pod), http.StatusBadRequest, "Kind=Pod"},
		{"missing object", "application/json", review(t, newRequest(admissionv1.Create, "payments-dev", alice, aliceGroups, nil, nil)), http.StatusBadRequest, "no object"},
		{"null object", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Namespace"},"resource":{"group":"","version":"v1","resource":"namespaces"},"operation":"CREATE","userInfo":{"username":"alice"},"object":null}}`), http.StatusBadRequest, "no object"},
		{"update without oldObject", "application/json", review(t, newRequest(admissionv1.Update, "payments-dev", alice, aliceGroups, good, nil)), http.StatusBadRequest, "no oldObject"},
		{"metadata is a number", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u2","kind":{"group":"","version":"v1","kind":"Namespace"},"resource":{"group":"","version":"v1","resource":"namespaces"},"operation":"CREATE","userInfo":{"username":"alice"},"object":{"apiVersion":"v1","kind":"Namespace","metadata":5}}}`), http.StatusBadRequest, "request.object is not a Namespace"},
		{"object is an array", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u3","kind":{"group":"","version":"v1","kind":"Namespace"},"resource":{"group":"","version":"v1","resource":"namespaces"},"operation":"CREATE","userInfo":{"username":"alice"},"object":[1,2]}}`), http.StatusBadRequest, "request.object is not a Namespace"},
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
	store := embeddedStore(t)
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

// The handlers serve concurrent requests from one bundle; run with -race.
func TestHandlersConcurrent(t *testing.T) {
	store := embeddedStore(t)
	m := &Mutator{Policies: store, Recorder: &recorder{}}
	v := &Validator{Policies: store, Recorder: &recorder{}}
	ctx := context.Background()
	cases := benchCases(t)
	want := make([]string, len(cases))
	for i, bc := range cases {
		resp, err := decide(ctx, m, v, bc.req)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = mustJSON(t, resp)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				k := (g + i) % len(cases)
				resp, err := decide(ctx, m, v, cases[k].req)
				if err != nil {
					errs <- err.Error()
					return
				}
				raw, _ := json.Marshal(resp)
				if string(raw) != want[k] {
					errs <- cases[k].name + ": " + string(raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent decision differs: %s", e)
	}
}

func TestLogRecorder(t *testing.T) {
	tests := []struct {
		name      string
		rec       Record
		verbosity int
		want      []string // substrings of the one line logged; nil: nothing logged
	}{
		{"error", Record{Webhook: "mutate", UID: "u1", Err: errors.New("boom")}, 0, []string{`"msg"="admission request failed"`, `"error"="boom"`, `"uid"="u1"`}},
		{"denied", Record{Webhook: "validate", UID: "u2", Violations: []policy.Violation{{Rule: "team-required", Message: "add it"}}}, 0, []string{`"msg"="admission denied"`, `team-required: add it`}},
		{"allowed at verbosity 0", Record{Webhook: "validate", Allowed: true}, 0, nil},
		{"allowed at verbosity 1", Record{Webhook: "mutate", Allowed: true, Patches: 3}, 1, []string{`"msg"="admission allowed"`, `"patches"=3`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines []string
			log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: tt.verbosity})
			LogRecorder{}.Record(logr.NewContext(context.Background(), log), &tt.rec)
			if tt.want == nil {
				if len(lines) != 0 {
					t.Errorf("logged %q, want nothing", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("logged %q, want one line", lines)
			}
			for _, w := range tt.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("line %s lacks %s", lines[0], w)
				}
			}
		})
	}
}
