package policy

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/testutil"
)

const minimalEntryPoints = `package nsprov.mutation

import rego.v1

result := {"annotations": {}, "labels": {}}
`

func minimalBundle() fstest.MapFS {
	return fstest.MapFS{
		"mutation.rego": {Data: []byte(minimalEntryPoints)},
		"validation.rego": {Data: []byte(`package nsprov.validation

import rego.v1

deny contains {"rule": "always", "message": "no"} if input.request.object.metadata.name == "forbidden"

warn contains "careful" if input.request.object.metadata.name == "risky"
`)},
		"plan.rego": {Data: []byte(`package nsprov.plan

import rego.v1

plan := {"namespace": input.request.object.metadata.name, "limit": data.config.settings.limit}
`)},
		"config/settings.yaml": {Data: []byte("settings:\n  limit: 3\n")},
	}
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	embedded := testutil.EmbeddedPolicies(t)
	without := func(name string) fstest.MapFS {
		m := testutil.CloneFS(embedded)
		delete(m, name)
		return m
	}
	with := func(name, content string) fstest.MapFS {
		m := testutil.CloneFS(embedded)
		m[name] = &fstest.MapFile{Data: []byte(content)}
		return m
	}
	tests := []struct {
		name    string
		fsys    fs.FS
		wantErr []string // substrings of the error; nil means success
	}{
		{name: "embedded", fsys: embedded},
		{name: "minimal", fsys: minimalBundle()},
		{
			name:    "no plan",
			fsys:    without("plan.rego"),
			wantErr: []string{"does not define data.nsprov.plan.plan"},
		},
		{
			name:    "no mutation",
			fsys:    without("mutation.rego"),
			wantErr: []string{"does not define data.nsprov.mutation.result"},
		},
		{
			name: "no warn",
			fsys: func() fs.FS {
				m := without("warnings.rego")
				delete(m, "warnings_test.rego")
				return m
			}(),
			wantErr: []string{"does not define data.nsprov.validation.warn"},
		},
		{
			name: "no deny",
			fsys: fstest.MapFS{
				"mutation.rego": {Data: []byte(minimalEntryPoints)},
				"v.rego":        {Data: []byte("package nsprov.validation\n\nimport rego.v1\n\nwarn contains \"x\" if false\n")},
				"plan.rego":     {Data: []byte("package nsprov.plan\n\nimport rego.v1\n\nplan := {}\n")},
			},
			wantErr: []string{"does not define data.nsprov.validation.deny"},
		},
		{
			name:    "syntax error",
			fsys:    with("naming.rego", strings.Replace(string(embedded["naming.rego"].Data), "deny contains violation if {", "deny contains violation if {{", 1)),
			wantErr: []string{"naming.rego:", "rego_parse_error"},
		},
		{
			name:    "syntax error line",
			fsys:    with("broken.rego", "package nsprov.extra\n\nimport rego.v1\n\nx := 1 ]\n\ny := 2\n"),
			wantErr: []string{"broken.rego:5", "rego_parse_error"},
		},
		{
			name:    "compile error",
			fsys:    with("broken.rego", "package nsprov.extra\n\nimport rego.v1\n\nx := y\n"),
			wantErr: []string{"does not compile", "broken.rego:5", "var y is unsafe"},
		},
		{
			name:    "no rego files",
			fsys:    fstest.MapFS{"config/tiers.yaml": embedded["config/tiers.yaml"]},
			wantErr: []string{"has no .rego modules"},
		},
		{
			name:    "only tests",
			fsys:    fstest.MapFS{"lib_test.rego": embedded["lib_test.rego"]},
			wantErr: []string{"has no .rego modules"},
		},
		{
			name:    "empty",
			fsys:    fstest.MapFS{},
			wantErr: []string{"has no .rego modules"},
		},
		{
			name:    "data conflict between files",
			fsys:    with("config/tiers-extra.yaml", "tiers:\n  small:\n    monthly_cost_usd: 1\n"),
			wantErr: []string{"merge error", "data.config.tiers.small.monthly_cost_usd", "config/tiers.yaml", "config/tiers-extra.yaml"},
		},
		{
			name:    "data file not YAML",
			fsys:    with("config/broken.yaml", "tiers: [\n"),
			wantErr: []string{"config/broken.yaml"},
		},
		{
			name: "hidden and unknown files are ignored",
			fsys: func() fs.FS {
				m := with(".hidden.rego", "this is not rego")
				m["README.md"] = &fstest.MapFile{Data: []byte("# not data")}
				m["..data/broken.rego"] = &fstest.MapFile{Data: []byte("not rego either")}
				return m
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Load(ctx, tt.fsys, "test-"+tt.name)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if b.Source != "test-"+tt.name || len(b.Revision) != 12 {
					t.Errorf("source %q revision %q", b.Source, b.Revision)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want an error with %q", tt.wantErr)
			}
			if b != nil {
				t.Errorf("Load returned a bundle with an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.Contains(err.Error(), "test-"+tt.name) {
				t.Errorf("error does not name the bundle source %q:\n%v", "test-"+tt.name, err)
			}
		})
	}
}

func TestLoadDataPlacement(t *testing.T) {
	b, err := Load(context.Background(), minimalBundle(), "minimal")
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Operation: "CREATE", Username: "alice", Groups: []string{}, Object: testutil.Namespace("team-dev", nil, nil)}
	plan, err := b.Plan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// config/settings.yaml is data.config.settings, as opa eval -d would load it.
	if got := plan["limit"]; got == nil || got.(interface{ String() string }).String() != "3" {
		// OPA numbers are json.Number.
		t.Errorf("plan %v, want limit 3 from config/settings.yaml", plan)
	}
}

func TestLoadDir(t *testing.T) {
	ctx := context.Background()
	dir := testutil.PoliciesDir(t)
	b, err := LoadDir(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != emb.Revision {
		t.Errorf("a copy of policies/ has revision %s, the embedded bundle %s", b.Revision, emb.Revision)
	}
	if b.Source != dir || emb.Source != "embedded" {
		t.Errorf("sources %q %q", b.Source, emb.Source)
	}

	if _, err := LoadDir(ctx, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "policy directory") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := LoadDir(ctx, filepath.Join(dir, "lib.rego")); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("a file: %v", err)
	}
}

func TestRevision(t *testing.T) {
	ctx := context.Background()
	base := testutil.EmbeddedPolicies(t)
	rev := func(fsys fs.FS) string {
		t.Helper()
		b, err := Load(ctx, fsys, "rev")
		if err != nil {
			t.Fatal(err)
		}
		return b.Revision
	}
	r0 := rev(base)
	if r := rev(testutil.CloneFS(base)); r != r0 {
		t.Errorf("same files, revisions %s and %s", r0, r)
	}
	if r := rev(base); r != r0 {
		t.Errorf("loading twice: revisions %s and %s", r0, r)
	}

	changes := map[string]func(fstest.MapFS){
		"rego comment": func(m fstest.MapFS) { m["lib.rego"].Data = append(m["lib.rego"].Data, "\n# edited\n"...) },
		"data value": func(m fstest.MapFS) {
			m["config/tiers.yaml"].Data = []byte(strings.Replace(string(m["config/tiers.yaml"].Data), "monthly_cost_usd: 50", "monthly_cost_usd: 55", 1))
		},
		"test file": func(m fstest.MapFS) {
			m["lib_test.rego"].Data = append(m["lib_test.rego"].Data, "\n# edited\n"...)
		},
		"new data file": func(m fstest.MapFS) { m["config/extra.json"] = &fstest.MapFile{Data: []byte(`{"extra": 1}`)} },
		"renamed file": func(m fstest.MapFS) {
			m["config/tiers2.yaml"] = m["config/tiers.yaml"]
			delete(m, "config/tiers.yaml")
		},
	}
	seen := map[string]string{r0: "base"}
	for name, change := range changes {
		m := testutil.CloneFS(base)
		change(m)
		r := rev(m)
		if prev, ok := seen[r]; ok {
			t.Errorf("%s: revision %s, the same as %s", name, r, prev)
		}
		seen[r] = name
	}

	// Files the loader ignores do not change the revision.
	m := testutil.CloneFS(base)
	m[".hidden"] = &fstest.MapFile{Data: []byte("x")}
	m["README.md"] = &fstest.MapFile{Data: []byte("x")}
	if r := rev(m); r != r0 {
		t.Errorf("ignored files changed the revision: %s, want %s", r, r0)
	}
}

func TestLoadTooLarge(t *testing.T) {
	m := minimalBundle()
	for i := range maxBundleFiles {
		m[filepath.Join("config", "many", "x"+strconv.Itoa(i)+".json")] = &fstest.MapFile{Data: []byte("{}")}
	}
	_, err := Load(context.Background(), m, "huge")
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("error %v, want too large", err)
	}
}

// decision is what the webhooks and the controller compute for a request:
// the mutation, the validation of the mutated object and, when allowed, the
// plan. (The admission package's Decide adds the JSON patch.)
type decision struct {
	Mutation   *Mutation
	Object     *corev1.Namespace
	Validation *Validation
	Plan       map[string]any
}

func decide(ctx context.Context, b *Bundle, req *Request) (*decision, error) {
	r := *req
	r.Object = req.Object.DeepCopy()
	m, err := b.Mutate(ctx, &r)
	if err != nil {
		return nil, err
	}
	apply(&r.Object.Annotations, m.Annotations)
	apply(&r.Object.Labels, m.Labels)
	d := &decision{Mutation: m, Object: r.Object}
	if d.Validation, err = b.Validate(ctx, &r); err != nil {
		return nil, err
	}
	if d.Validation.Allowed() {
		if d.Plan, err = b.Plan(ctx, &r); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// apply sets the wanted keys of a mutation and removes those it sets to nil.
func apply(have *map[string]string, want map[string]*string) {
	for k, v := range want {
		switch {
		case v == nil:
			delete(*have, k)
		case *have == nil:
			*have = map[string]string{k: *v}
		default:
			(*have)[k] = *v
		}
	}
}

// TestConcurrentDecisions evaluates different requests from many goroutines
// with the decision cache off: the shared data cache and the pooled rule
// caches must give every evaluation the answer it gets alone.
func TestConcurrentDecisions(t *testing.T) {
	ctx := context.Background()
	b, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.SetDecisionCacheSize(0)
	envs := []string{"development", "staging", "production", "qa"}
	tiers := []string{"", "micro", "small", "medium", "large", "huge"}
	var reqs []*Request
	for i, env := range envs {
		for j, tier := range tiers {
			a := map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": env}
			if tier != "" {
				a["nsprov.io/tier"] = tier
			}
			if j%2 == 1 {
				a["nsprov.io/network-policy"] = "open"
			}
			groups := []string{"team-payments"}
			if i%2 == 1 {
				groups = nil
			}
			reqs = append(reqs, &Request{Operation: "CREATE", Username: "alice", Groups: groups,
				Object: testutil.Namespace("payments-"+env, a, map[string]string{"nsprov.io/tier": "small"})})
		}
	}
	want := make([]*decision, len(reqs))
	for i, r := range reqs {
		if want[i], err = decide(ctx, b, r); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, len(reqs)*8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; n < 3; n++ {
				for i := range reqs {
					i := (i + w*7) % len(reqs)
					got, err := decide(ctx, b, reqs[i])
					if err != nil {
						errs <- err.Error()
						return
					}
					if !reflect.DeepEqual(got, want[i]) {
						errs <- fmt.Sprintf("request %d: got %+v, want %+v", i, got, want[i])
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
