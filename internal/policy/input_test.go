package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/nsprov/nsprov/internal/testutil"
)

// TestKnownStringsComeFromTheBundle: the strings the input shares are those
// the loaded bundle spells in its data and modules, plus Kubernetes' own; a
// value added to the data becomes known with the bundle that adds it.
func TestKnownStringsComeFromTheBundle(t *testing.T) {
	ctx := context.Background()
	embedded, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	files := testutil.EmbeddedPolicies(t)
	files["config/tiers.yaml"].Data = []byte(strings.Replace(string(files["config/tiers.yaml"].Data), "tiers:\n", "tiers:\n  xlarge:\n    quota: {cpu: \"16\", memory: 32Gi, storage: 200Gi}\n    container_defaults: {cpu: 250m, memory: 256Mi}\n    container_default_requests: {cpu: 50m, memory: 64Mi}\n    monthly_cost_usd: 800\n", 1))
	edited, err := Load(ctx, files, "edited")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxKnownStringLength+1)
	for _, tt := range []struct {
		s                string
		embedded, edited bool
	}{
		{"nsprov.io/team", true, true},      // a module literal
		{"nsprov.io/features", true, true},  // a module literal
		{"micro", true, true},               // a data key
		{"monitoring-enhanced", true, true}, // data
		{"production", true, true},          // data
		{"CREATE", true, true},              // Kubernetes
		{"system:authenticated", true, true},
		{"xlarge", false, true}, // only in the edited data
		{"payments-dev", false, false},
		{long, false, false},
	} {
		if _, ok := embedded.strings[tt.s]; ok != tt.embedded {
			t.Errorf("embedded bundle: %.20q known %v, want %v", tt.s, ok, tt.embedded)
		}
		if _, ok := edited.strings[tt.s]; ok != tt.edited {
			t.Errorf("edited bundle: %.20q known %v, want %v", tt.s, ok, tt.edited)
		}
	}
	if n := len(embedded.strings); n > maxKnownStrings {
		t.Errorf("%d known strings, more than %d", n, maxKnownStrings)
	}

	// The input shares the known terms and makes the others.
	req := &Request{Operation: "CREATE", Username: "alice", Object: testutil.Namespace("payments-dev", map[string]string{"nsprov.io/tier": "xlarge"}, nil)}
	in := edited.input(req)
	ann := in.(ast.Object).Get(keyRequest).Value.(ast.Object).Get(keyObject).Value.(ast.Object).
		Get(keyMetadata).Value.(ast.Object).Get(keyAnnotations).Value.(ast.Object)
	var key, value *ast.Term
	ann.Foreach(func(k, v *ast.Term) { key, value = k, v })
	if key != edited.strings["nsprov.io/tier"] || value != edited.strings["xlarge"] {
		t.Errorf("the input's annotation %v: %v does not share the bundle's known terms", key, value)
	}
	name := in.(ast.Object).Get(keyRequest).Value.(ast.Object).Get(keyName)
	if name.Value.Compare(ast.String("payments-dev")) != 0 || name == edited.strings["payments-dev"] {
		t.Errorf("name term %v", name)
	}
}
