package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nsprov/nsprov/internal/testutil"
)

func cacheRequest() *Request {
	return &Request{
		UID: "1", Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"},
		Object: testutil.Namespace("payments-dev", map[string]string{
			"nsprov.io/team": "payments", "nsprov.io/environment": "development",
		}, nil),
	}
}

// TestCacheKeyCoversTheInput changes each part of the policy input in turn:
// every change must give a different key, and the request UID must not.
func TestCacheKeyCoversTheInput(t *testing.T) {
	base := cacheRequest().cacheKey()
	changes := map[string]func(r *Request){
		"operation":           func(r *Request) { r.Operation = "UPDATE" },
		"username":            func(r *Request) { r.Username = "bob" },
		"group added":         func(r *Request) { r.Groups = append(r.Groups, "platform-admins") },
		"group renamed":       func(r *Request) { r.Groups = []string{"team-web"} },
		"groups split":        func(r *Request) { r.Groups = []string{"team", "payments"} },
		"dry run":             func(r *Request) { r.DryRun = true },
		"name":                func(r *Request) { r.Object.Name = "payments-prod" },
		"object uid":          func(r *Request) { r.Object.UID = "u" },
		"phase":               func(r *Request) { r.Object.Status.Phase = corev1.NamespaceTerminating },
		"deletion":            func(r *Request) { now := metav1.Now(); r.Object.DeletionTimestamp = &now },
		"annotation value":    func(r *Request) { r.Object.Annotations["nsprov.io/team"] = "web" },
		"annotation added":    func(r *Request) { r.Object.Annotations["nsprov.io/tier"] = "micro" },
		"label added":         func(r *Request) { r.Object.Labels = map[string]string{"a": "b"} },
		"annotation as label": func(r *Request) { r.Object.Labels = map[string]string{"nsprov.io/team": "payments"} },
		"old object":          func(r *Request) { r.OldObject = r.Object.DeepCopy() },
		"key and value moved": func(r *Request) {
			r.Object.Annotations = map[string]string{"nsprov.io/team": "payments:1:x", "nsprov.io/environment": "development"}
		},
	}
	seen := map[string]cacheKey{"": base}
	for name, change := range changes {
		r := cacheRequest()
		change(r)
		k := r.cacheKey()
		if k == base {
			t.Errorf("%s: same key as the unchanged request", name)
		}
		for other, ok := range seen {
			if ok == k && other != "" {
				t.Errorf("%s and %s share a key", name, other)
			}
		}
		seen[name] = k
	}
	r := cacheRequest()
	r.UID = "2"
	if r.cacheKey() != base {
		t.Errorf("the request UID changes the key; no decision would ever be reused")
	}
}

func TestDecisionCache(t *testing.T) {
	ctx := context.Background()
	b, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := cacheRequest()
	first, err := b.Validate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Validate(ctx, cacheRequest())
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("the same input was evaluated again instead of answered from the cache")
	}
	if s := b.CacheStats(); s.Hits != 1 || s.Misses != 1 {
		t.Errorf("cache stats %+v, want 1 hit and 1 miss", s)
	}
	other := cacheRequest()
	other.Username, other.Groups = "bob", []string{"team-web"}
	denied, err := b.Validate(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if denied.Allowed() || denied.Rules()[0] != "requester-not-in-team" {
		t.Errorf("bob's request = %v, want denied by requester-not-in-team", denied.Violations)
	}

	// Disabled, every call evaluates.
	b.SetDecisionCacheSize(0)
	x, _ := b.Validate(ctx, req)
	y, _ := b.Validate(ctx, req)
	if x == y {
		t.Errorf("with the cache disabled the same result object came back twice")
	}
}

func keyOf(s string) cacheKey { return sha256.Sum256([]byte(s)) }

func TestDecisionCacheIsBounded(t *testing.T) {
	c := newDecisionCache(6, 1<<20, func(int) int { return 0 })
	for i := range 10 {
		c.put(keyOf(fmt.Sprint(i)), i)
	}
	if n := len(c.cur) + len(c.prev); n > 6 {
		t.Errorf("%d entries kept, want at most 6", n)
	}
	if v, ok := c.get(keyOf("9")); !ok || v != 9 {
		t.Errorf("newest entry lost: %v %v", v, ok)
	}
	if _, ok := c.get(keyOf("0")); ok {
		t.Errorf("oldest entry kept after 10 inserts into a cache of 6")
	}
	// An entry found in the previous generation is promoted and survives the
	// next rotation.
	c = newDecisionCache(4, 1<<20, func(int) int { return 0 })
	c.put(keyOf("a"), 1)
	c.put(keyOf("b"), 2)
	c.put(keyOf("c"), 3) // rotates: prev {a b}, cur {c}
	if _, ok := c.get(keyOf("a")); !ok {
		t.Fatal("entry of the previous generation not found")
	}
	c.put(keyOf("d"), 4) // rotates: prev {c a}, cur {d}
	if _, ok := c.get(keyOf("a")); !ok {
		t.Errorf("a promoted entry was dropped by the next rotation")
	}
}

func TestQueryCache(t *testing.T) {
	c := acquireQueryCache()
	defer c.release()
	a, b := ast.MustParseRef("data.p.a"), ast.MustParseRef("data.p.b")
	if v, undefined := c.Get(a); v != nil || undefined {
		t.Fatalf("empty cache: %v %v", v, undefined)
	}
	c.Put(a, ast.IntNumberTerm(1))
	c.Put(b, nil)
	if v, undefined := c.Get(ast.MustParseRef("data.p.a")); undefined || !v.Equal(ast.IntNumberTerm(1)) {
		t.Errorf("a = %v %v, want 1", v, undefined)
	}
	if v, undefined := c.Get(b); v != nil || !undefined {
		t.Errorf("b = %v %v, want undefined", v, undefined)
	}
	// A new frame starts empty and popping it restores the previous one.
	c.Push()
	if v, undefined := c.Get(a); v != nil || undefined {
		t.Errorf("pushed frame: a = %v %v", v, undefined)
	}
	c.Put(a, ast.IntNumberTerm(2))
	c.Pop()
	if v, _ := c.Get(a); !v.Equal(ast.IntNumberTerm(1)) {
		t.Errorf("after pop: a = %v, want 1", v)
	}
	if keys := c.Keys(); len(keys) != 1 || !keys[0].Equal(a) {
		t.Errorf("keys %v, want [%v]", keys, a)
	}
	// Refs whose hashes collide (the hash of a ref sums its terms) stay apart.
	x, y := ast.MustParseRef(`data.p["x"].y`), ast.MustParseRef(`data.p["y"].x`)
	c.Put(x, ast.StringTerm("x"))
	c.Put(y, ast.StringTerm("y"))
	if v, _ := c.Get(x); !v.Equal(ast.StringTerm("x")) {
		t.Errorf("x = %v", v)
	}
	if v, _ := c.Get(y); !v.Equal(ast.StringTerm("y")) {
		t.Errorf("y = %v", v)
	}
}

func TestDataCache(t *testing.T) {
	var c dataCache
	if v := c.Get(ast.MustParseRef("data.config")); v != nil {
		t.Fatalf("empty cache: %v", v)
	}
	c.Put(ast.MustParseRef("data.config.tiers"), ast.MustParseTerm(`{"small": {"cost": 100}}`).Value)
	for ref, want := range map[string]string{
		"data.config.tiers":            `{"small": {"cost": 100}}`,
		"data.config.tiers.small.cost": `100`,
	} {
		if v := c.Get(ast.MustParseRef(ref)); v == nil || v.Compare(ast.MustParseTerm(want).Value) != 0 {
			t.Errorf("%s = %v, want %s", ref, v, want)
		}
	}
	for _, ref := range []string{"data.config", "data.config.tiers.large", "data.config.names"} {
		if v := c.Get(ast.MustParseRef(ref)); v != nil {
			t.Errorf("%s = %v, want a miss", ref, v)
		}
	}
}

func TestEvaluationStopsWhenCancelled(t *testing.T) {
	b, err := LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.SetDecisionCacheSize(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Validate(ctx, cacheRequest()); err == nil {
		t.Error("a cancelled evaluation succeeded")
	}
}
