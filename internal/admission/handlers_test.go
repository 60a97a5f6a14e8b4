package admission

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

// The handler tests run on the tiny bundle in testdata/bundle, not on the
// real policy: the real rules are tested by policies/*_test.rego and the
// envtest suites. The tiny bundle's rules, on example.com/ annotations:
//   - mutation: a namespace annotated example.com/team gets
//     example.com/requested-by (the requester), example.com/size (default
//     small), the label example.com/team, and loses example.com/scratch;
//   - deny: team-required, name-prefix (the name starts with the team),
//     size-invalid (small or large), value-empty (one per empty annotation);
//   - warn: "size large costs 4", "annotation example.com/scratch is ignored";
//   - a namespace annotated example.com/fail makes the mutation and deny fail.
const tinyBundleDir = "testdata/bundle"

// tinyBundle compiles the tiny bundle once for the whole package.
var tinyBundle = sync.OnceValues(func() (*policy.Bundle, error) {
	return policy.Load(context.Background(), os.DirFS(tinyBundleDir), tinyBundleDir)
})

func tinyStore(tb testing.TB) *policy.Store {
	tb.Helper()
	b, err := tinyBundle()
	if err != nil {
		tb.Fatalf("loading the tiny test bundle: %v", err)
	}
	return policy.StaticStore(b)
}

// The tiny bundle's own _test.rego files pass: its rules do what the
// comment above says.
func TestTinyBundle(t *testing.T) {
	b, err := tinyBundle()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sum, err := b.Test(context.Background(), &out, false)
	if err != nil || !sum.OK() {
		t.Fatalf("tiny bundle tests: %+v, %v\n%s", sum, err, out.String())
	}
}

var (
	alice       = "alice"
	aliceGroups = []string{"system:authenticated", "team-payments"}
	bob         = "bob"
	bobGroups   = []string{"system:authenticated", "team-web"}
)

// requested is a namespace request of the payments team with extra annotations.
func requested(extra map[string]string) map[string]string {
	a := map[string]string{"example.com/team": "payments"}
	maps.Copy(a, extra)
	return a
}

// mutated is requested(nil) after alice's CREATE went through the mutation.
func mutated() (annotations, labels map[string]string) {
	return requested(map[string]string{"example.com/requested-by": "alice", "example.com/size": "small"}),
		map[string]string{"example.com/team": "payments"}
}

// createReq is a CREATE of a namespace with the given annotations and labels.
func createReq(tb testing.TB, user string, groups []string, name string, annotations, labels map[string]string) admission.Request {
	return testutil.AdmissionRequest(admissionv1.Create, name, user, groups, testutil.NamespaceJSON(tb, name, annotations, labels), nil)
}

// denyingReq is a CREATE by bob that violates name-prefix and size-invalid
// and has a warning.
func denyingReq(tb testing.TB) admission.Request {
	return createReq(tb, bob, bobGroups, "shop", requested(map[string]string{
		"example.com/size": "huge", "example.com/scratch": "x",
	}), nil)
}

// failingReq is a request on which the tiny bundle's evaluation fails (an
// UPDATE adds the annotation that makes it fail: an UPDATE that changes no
// label and no annotation is not evaluated).
func failingReq(tb testing.TB, op admissionv1.Operation) admission.Request {
	obj := testutil.NamespaceJSON(tb, "payments", requested(map[string]string{"example.com/fail": "yes"}), nil)
	var old []byte
	if op != admissionv1.Create {
		old = testutil.NamespaceJSON(tb, "payments", requested(nil), nil)
	}
	return testutil.AdmissionRequest(op, "payments", alice, aliceGroups, obj, old)
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

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestHandlersEvaluationError(t *testing.T) {
	store := tinyStore(t)
	for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update} {
		req := failingReq(t, op)
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
				if len(resp.Patches) != 0 {
					t.Errorf("patches on an error: %v", resp.Patches)
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
	// The request fails to evaluate: a pass proves that nothing was evaluated.
	store := tinyStore(t)
	for _, op := range []admissionv1.Operation{admissionv1.Delete, admissionv1.Connect} {
		req := failingReq(t, op)
		req.Object.Raw = nil
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

// The handlers serve concurrent requests from one bundle; run with -race.
// (The real bundle's evaluators are tested concurrently in internal/policy.)
func TestHandlersConcurrent(t *testing.T) {
	store := tinyStore(t)
	m := &Mutator{Policies: store, Recorder: &recorder{}}
	v := &Validator{Policies: store, Recorder: &recorder{}}
	ctx := context.Background()
	cases := []admission.Request{
		createReq(t, alice, aliceGroups, "payments-dev", requested(nil), nil),
		createReq(t, alice, aliceGroups, "payments-big", requested(map[string]string{"example.com/size": "large"}), nil),
		denyingReq(t),
	}
	want := make([]string, len(cases))
	for i, req := range cases {
		resp, err := decide(ctx, m, v, req)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = testutil.MustJSON(t, resp)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				k := (g + i) % len(cases)
				resp, err := decide(ctx, m, v, cases[k])
				if err != nil {
					errs <- err.Error()
					return
				}
				raw, _ := json.Marshal(resp)
				if string(raw) != want[k] {
					errs <- cases[k].Name + ": " + string(raw)
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
