package admission

import (
	"context"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nsprov/nsprov/internal/policy"
)

func testNamespace(name string, annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: maps.Clone(annotations), Labels: maps.Clone(labels)}}
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	b, err := policy.LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	request := map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}
	obj := testNamespace("payments-dev", request, nil)
	req := &policy.Request{Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"}, Object: obj}
	d, err := Decide(ctx, b, req)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || len(d.Violations) != 0 || d.Plan == nil || len(d.Patch) != 4 {
		t.Errorf("decision %+v", d)
	}
	if d.Object.Labels["nsprov.io/tier"] != "small" || d.Object.Annotations["nsprov.io/requested-by"] != "alice" {
		t.Errorf("mutated object %+v", d.Object.ObjectMeta)
	}
	// Decide works on a copy.
	if obj.Labels != nil || len(obj.Annotations) != 2 {
		t.Errorf("Decide changed the request's object: %+v", obj.ObjectMeta)
	}

	denied := &policy.Request{Operation: "CREATE", Username: "bob", Groups: []string{}, Object: testNamespace("payments-prod", map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/network-policy": "open",
	}, nil)}
	d, err = Decide(ctx, b, denied)
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, v := range d.Violations {
		rules = append(rules, v.Rule)
	}
	if d.Allowed || d.Plan != nil || strings.Join(rules, ",") != "network-policy-not-allowed-in-environment,requester-not-in-team" {
		t.Errorf("decision allowed=%v plan=%v rules=%v", d.Allowed, d.Plan, rules)
	}
}

func TestPatchEscapesKeys(t *testing.T) {
	v := func(s string) *string { return &s }
	ns := testNamespace("x", map[string]string{"a/b": "1", "c~d": "2", "keep": "k"}, nil)
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
