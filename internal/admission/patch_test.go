package admission

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

// TestDecide runs a full offline decision on the tiny test bundle: the
// mutation's patch, the validation of the mutated object, then the plan.
func TestDecide(t *testing.T) {
	ctx := context.Background()
	b, err := tinyBundle()
	if err != nil {
		t.Fatal(err)
	}
	obj := testutil.Namespace("payments-dev", requested(nil), nil)
	req := &policy.Request{Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"}, Object: obj}
	d, err := Decide(ctx, b, req)
	if err != nil {
		t.Fatal(err)
	}
	wantPlan := map[string]any{"namespace": "payments-dev", "team": "payments", "size": "small"}
	if !d.Allowed || len(d.Violations) != 0 || len(d.Warnings) != 0 || len(d.Patch) != 3 || !reflect.DeepEqual(d.Plan, wantPlan) {
		t.Errorf("decision %+v, want allowed with 3 operations and plan %v", d, wantPlan)
	}
	wantAnn, wantLabels := mutated()
	if !reflect.DeepEqual(d.Object.Annotations, wantAnn) || !reflect.DeepEqual(d.Object.Labels, wantLabels) {
		t.Errorf("mutated object %+v", d.Object.ObjectMeta)
	}
	// Decide works on a copy.
	if obj.Labels != nil || !reflect.DeepEqual(obj.Annotations, requested(nil)) {
		t.Errorf("Decide changed the request's object: %+v", obj.ObjectMeta)
	}

	denied := &policy.Request{Operation: "CREATE", Username: "bob", Groups: []string{}, Object: testutil.Namespace("shop", requested(map[string]string{
		"example.com/size": "huge", "example.com/scratch": "x",
	}), nil)}
	d, err = Decide(ctx, b, denied)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, v := range d.Violations {
		rules = append(rules, v.Rule)
	}
	// The validation sees the mutated object: example.com/scratch is gone, so
	// there is no warning about it.
	if d.Allowed || d.Plan != nil || strings.Join(rules, ",") != "name-prefix,size-invalid" || len(d.Warnings) != 0 {
		t.Errorf("decision allowed=%v plan=%v rules=%v warnings=%q", d.Allowed, d.Plan, rules, d.Warnings)
	}
	// Empty lists, not null, in the JSON of `nsprov policy eval`.
	if d.Warnings == nil || d.Violations == nil {
		t.Errorf("warnings %#v violations %#v, want empty lists", d.Warnings, d.Violations)
	}
}

func TestPatchEscapesKeys(t *testing.T) {
	v := func(s string) *string { return &s }
	ns := testutil.Namespace("x", map[string]string{"a/b": "1", "c~d": "2", "keep": "k"}, nil)
	m := &policy.Mutation{Annotations: map[string]*string{"a/b": nil, "c~d": v("3"), "keep": v("k"), "new": v("n"), "absent": nil}}
	ops := patch(m, ns)
	var got []string
	for _, op := range ops {
		got = append(got, op.Operation+" "+op.Path)
	}
	want := "remove /metadata/annotations/a~1b,replace /metadata/annotations/c~0d,add /metadata/annotations/new"
	if strings.Join(got, ",") != want {
		t.Errorf("ops %v, want %s", got, want)
	}
	if _, ok := ns.Annotations["a/b"]; ok || ns.Annotations["c~d"] != "3" || ns.Annotations["new"] != "n" {
		t.Errorf("object after patch %v", ns.Annotations)
	}
}

// pointer escapes a key as RFC 6901 says, in one allocation.
func TestPointer(t *testing.T) {
	tests := []struct{ path, key, want string }{
		{"/metadata/labels", "team", "/metadata/labels/team"},
		{"/metadata/annotations", "nsprov.io/team", "/metadata/annotations/nsprov.io~1team"},
		{"/metadata/annotations", "a~/b/~~", "/metadata/annotations/a~0~1b~1~0~0"},
		{"/metadata/annotations", "", "/metadata/annotations/"},
		{"/metadata/annotations", "caf\u00e9/\U0001F600", "/metadata/annotations/caf\u00e9~1\U0001F600"},
	}
	for _, tt := range tests {
		if got := pointer(tt.path, tt.key); got != tt.want {
			t.Errorf("pointer(%q, %q) = %q, want %q", tt.path, tt.key, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = pointer("/metadata/annotations", "nsprov.io/team") }); n != 1 {
		t.Errorf("%v allocations, want 1", n)
	}
}
