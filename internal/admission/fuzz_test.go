package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

// The fuzz targets run the handlers on the embedded policy, the one nsprov
// serves. Their seeds run with every `go test`; `make fuzz` explores more.

var embeddedStore = sync.OnceValues(func() (*policy.Store, error) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		return nil, err
	}
	return policy.StaticStore(b), nil
})

func fuzzStore(tb testing.TB) *policy.Store {
	s, err := embeddedStore()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzServers are the two handlers behind controller-runtime's webhook, as
// serve registers them but without panic recovery: a panic fails the fuzz
// target.
func fuzzServers(tb testing.TB) map[string]http.Handler {
	store := fuzzStore(tb)
	out := map[string]http.Handler{}
	for name, h := range map[string]admission.Handler{
		"mutate":   &Mutator{Policies: store, Recorder: discardRecorder{}},
		"validate": &Validator{Policies: store, Recorder: discardRecorder{}},
	} {
		srv, err := admission.StandaloneWebhook(&webhook.Admission{Handler: h}, admission.StandaloneOptions{Logger: logr.Discard()})
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = srv
	}
	return out
}

// FuzzAdmissionReview posts arbitrary bodies to both webhooks. Whatever the
// body, the answer is an AdmissionReview (or an HTTP error), never a panic;
// a denial's message is bounded; an allowed mutation's patch applies to the
// object it was computed for.
func FuzzAdmissionReview(f *testing.F) {
	good := testutil.NamespaceJSON(f, "payments-dev", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, nil)
	bad := testutil.NamespaceJSON(f, "kube-x", map[string]string{"nsprov.io/team": "Payments!", "nsprov.io/features": "istio,gpu,,x", "example.com/a": ""}, map[string]string{"nsprov.io/tier": "large"})
	for _, req := range []admission.Request{
		testutil.AdmissionRequest(admissionv1.Create, "payments-dev", "alice", []string{"team-payments"}, good, nil),
		testutil.AdmissionRequest(admissionv1.Create, "kube-x", "bob", []string{"team-web"}, bad, nil),
		testutil.AdmissionRequest(admissionv1.Update, "payments-dev", "alice", []string{"team-payments"}, good, bad),
		testutil.AdmissionRequest(admissionv1.Delete, "payments-dev", "alice", nil, nil, good),
		testutil.AdmissionRequest(admissionv1.Create, "payments-dev", "alice", nil, nil, nil),
	} {
		f.Add(testutil.Review(f, req))
	}
	for _, s := range []string{
		"", "{}", "null", "this is not json", `{"request":null}`, `{"request":{"operation":"CREATE"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Namespace","version":"v1"},"operation":"CREATE","userInfo":{"username":"alice"},"object":{"metadata":5}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Namespace","version":"v1"},"operation":"UPDATE","object":{"metadata":{"name":"a","annotations":{"nsprov.io/team":"a"}}},"oldObject":[1]}}`,
		`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Namespace","version":"v1"},"operation":"CREATE","object":{"metadata":{"name":"a-dev","labels":{"nsprov.io/team":"x"},"annotations":{"nsprov.io/team":"a","nsprov.io/environment":"development"}}}}}`,
	} {
		f.Add([]byte(s))
	}
	servers := fuzzServers(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		for name, srv := range servers {
			r := httptest.NewRequest(http.MethodPost, "/"+name, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				continue // controller-runtime refused the body itself
			}
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil || ar.Response == nil {
				t.Fatalf("%s: status 200 without an AdmissionReview response: %v\n%s", name, err, w.Body.String())
			}
			resp := ar.Response
			if resp.Result != nil && len(resp.Result.Message) > MaxMessageBytes {
				t.Fatalf("%s: a message of %d bytes, more than %d", name, len(resp.Result.Message), MaxMessageBytes)
			}
			if len(resp.Patch) == 0 {
				continue
			}
			if !resp.Allowed {
				t.Fatalf("%s: a patch on a response that does not allow: %s", name, resp.Patch)
			}
			var in admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
				continue
			}
			p, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatalf("%s: the patch is not an RFC 6902 patch: %v\n%s", name, err, resp.Patch)
			}
			if _, err := p.Apply(in.Request.Object.Raw); err != nil {
				t.Fatalf("%s: the patch does not apply to the object: %v\npatch %s\nobject %s", name, err, resp.Patch, in.Request.Object.Raw)
			}
		}
	})
}

// FuzzHandlers builds well-formed requests from fuzzed names, users, groups,
// annotations and labels and runs both handlers on the embedded policy: the
// policy never fails on them, a denial is bounded, and the mutation's patch
// applies and is stable (mutating the mutated namespace changes nothing).
func FuzzHandlers(f *testing.F) {
	f.Add(false, "alice", "team-payments", "payments-dev", "nsprov.io/team=payments\nnsprov.io/environment=development", "", "")
	f.Add(false, "alice", "team-payments", "payments-prod", "nsprov.io/team=payments\nnsprov.io/environment=production\nnsprov.io/tier=large\nnsprov.io/network-policy=open\nnsprov.io/features= Istio,monitoring-enhanced,istio ", "", "")
	f.Add(false, "bob", "team-web,system:authenticated", "kube-payments", "nsprov.io/team=Payments!\nnsprov.io/environment=qa\nnsprov.io/tier=huge\nnsprov.io/features=gpu,,", "nsprov.io/tier=large", "")
	f.Add(true, "alice", "team-payments", "payments-dev", "nsprov.io/team=payments\nnsprov.io/environment=staging", "", "nsprov.io/team=payments\nnsprov.io/environment=development")
	f.Add(true, "system:serviceaccount:nsprov-system:nsprov", "system:serviceaccounts", "search-dev", "nsprov.io/requested-by=x\nnsprov.io/workflow=y", "nsprov.io/team=search", "nsprov.io/team=search")
	f.Add(false, "root", "system:masters", "default", "example.com/notes=", "a/b=c", "")
	store := fuzzStore(f)
	m := &Mutator{Policies: store, Recorder: discardRecorder{}}
	v := &Validator{Policies: store, Recorder: discardRecorder{}}
	parse := func(s string) map[string]string {
		if s == "" {
			return nil
		}
		out := map[string]string{}
		for line := range strings.SplitSeq(s, "\n") {
			k, val, _ := strings.Cut(line, "=")
			out[k] = val
		}
		return out
	}
	f.Fuzz(func(t *testing.T, update bool, user, groups, name, annotations, labels, oldAnnotations string) {
		// A request reaches nsprov as JSON, whose strings are valid UTF-8
		// (a JSON decoder replaces invalid bytes with U+FFFD); do the same.
		valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
		user, groups, name = valid(user), valid(groups), valid(name)
		annotations, labels, oldAnnotations = valid(annotations), valid(labels), valid(oldAnnotations)
		var gs []string
		if groups != "" {
			gs = strings.Split(groups, ",")
		}
		obj := testutil.NamespaceJSON(t, name, parse(annotations), parse(labels))
		op, old := admissionv1.Create, []byte(nil)
		if update {
			op, old = admissionv1.Update, testutil.NamespaceJSON(t, name, parse(oldAnnotations), parse(labels))
		}
		req := testutil.AdmissionRequest(op, name, user, gs, obj, old)
		ctx := context.Background()
		mresp := m.Handle(ctx, req)
		if !mresp.Allowed {
			t.Fatalf("the mutation failed: %+v", mresp.Result)
		}
		mutated := req
		if len(mresp.Patches) > 0 {
			mutated.Object.Raw = testutil.ApplyPatch(t, obj, mresp.Patches)
			again := m.Handle(ctx, mutated)
			if !again.Allowed || len(again.Patches) != 0 {
				t.Fatalf("mutating the mutated namespace changes it again: %+v %v", again.Result, again.Patches)
			}
		}
		vresp := v.Handle(ctx, mutated)
		if vresp.Result != nil && vresp.Result.Code >= 500 {
			t.Fatalf("the validation failed: %+v", vresp.Result)
		}
		if !vresp.Allowed && (vresp.Result == nil || vresp.Result.Code != http.StatusForbidden || len(vresp.Result.Message) > MaxMessageBytes) {
			t.Fatalf("a denial that is not a bounded 403: %+v", vresp.Result)
		}
	})
}
