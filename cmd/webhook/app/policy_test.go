package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/policies"
)

// result is one run of the command line.
type result struct {
	code        int
	out, errOut string
}

func runCommand(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, streams{in: strings.NewReader(stdin), out: &out, err: &errOut})
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d", r.code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.errOut
}

// copyPolicies writes the embedded bundle into a new temporary directory.
func copyPolicies(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := policies.Export(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// brokenPolicies is a copy of policies/ whose lib.rego does not parse.
func brokenPolicies(t *testing.T) string {
	t.Helper()
	dir := copyPolicies(t)
	f, err := os.OpenFile(filepath.Join(dir, "lib.rego"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\nbroken := {\n"); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testdata(name string) string { return filepath.Join("testdata", name) }

// decision is the JSON output of policy eval.
type decision struct {
	Allowed    bool `json:"allowed"`
	Violations []struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"violations"`
	Warnings []string          `json:"warnings"`
	Patch    []map[string]any  `json:"patch"`
	Object   *corev1.Namespace `json:"object"`
	Plan     map[string]any    `json:"plan"`
	Raw      map[string]any    `json:"-"`
}

func parseDecision(t *testing.T, r result) decision {
	t.Helper()
	var d decision
	if err := json.Unmarshal([]byte(r.out), &d); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r)
	}
	if err := json.Unmarshal([]byte(r.out), &d.Raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"allowed", "violations", "warnings", "patch", "object", "plan"} {
		if _, ok := d.Raw[k]; !ok {
			t.Errorf("output has no %q field:\n%s", k, r.out)
		}
	}
	return d
}

func rulesOf(d decision) []string {
	var rules []string
	for _, v := range d.Violations {
		rules = append(rules, v.Rule)
	}
	return rules
}

func TestPolicyEvalAllowedJSON(t *testing.T) {
	r := runCommand(t, "", "policy", "eval", "-f", testdata("payments-dev.yaml"), "--user", "alice", "--group", "team-payments", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("want exit 0\n%s", r)
	}
	if r.errOut != "" {
		t.Errorf("stderr: %s", r.errOut)
	}
	d := parseDecision(t, r)
	if !d.Allowed || len(d.Violations) != 0 {
		t.Errorf("allowed %v violations %v", d.Allowed, d.Violations)
	}
	if v, ok := d.Raw["violations"].([]any); !ok || len(v) != 0 {
		t.Errorf("violations is %#v, want []", d.Raw["violations"])
	}
	if !slices.Equal(d.Warnings, []string{"tier small costs $100 per month (2 CPU, 4Gi memory, 20Gi storage)"}) {
		t.Errorf("warnings %q", d.Warnings)
	}
	wantPatch := []map[string]any{
		{"op": "replace", "path": "/metadata/annotations/nsprov.io~1features", "value": "istio,monitoring-enhanced"},
		{"op": "add", "path": "/metadata/annotations/nsprov.io~1network-policy", "value": "isolated"},
		{"op": "add", "path": "/metadata/annotations/nsprov.io~1provisioning", "value": "Pending"},
		{"op": "add", "path": "/metadata/annotations/nsprov.io~1requested-by", "value": "alice"},
		{"op": "add", "path": "/metadata/annotations/nsprov.io~1tier", "value": "small"},
		{"op": "add", "path": "/metadata/labels", "value": map[string]any{
			"nsprov.io/environment": "development", "nsprov.io/team": "payments", "nsprov.io/tier": "small",
		}},
	}
	if !reflect.DeepEqual(d.Patch, wantPatch) {
		got, _ := json.Marshal(d.Patch)
		t.Errorf("patch %s", got)
	}
	o := d.Object
	if o == nil || o.APIVersion != "v1" || o.Kind != "Namespace" || o.Name != "payments-dev" {
		t.Fatalf("object %+v", o)
	}
	wantAnn := map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/features": "istio,monitoring-enhanced",
		"nsprov.io/tier": "small", "nsprov.io/network-policy": "isolated", "nsprov.io/requested-by": "alice",
		"nsprov.io/provisioning": "Pending",
	}
	wantLabels := map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small"}
	if !reflect.DeepEqual(o.Annotations, wantAnn) || !reflect.DeepEqual(o.Labels, wantLabels) {
		t.Errorf("object annotations %v labels %v", o.Annotations, o.Labels)
	}
	p := d.Plan
	if p == nil {
		t.Fatal("no plan")
	}
	for k, want := range map[string]any{
		"namespace": "payments-dev", "team": "payments", "environment": "development", "tier": "small",
		"monthly_cost_usd": float64(100),
		"quota":            map[string]any{"cpu": "2", "memory": "4Gi", "storage": "20Gi"},
		"features":         []any{"istio", "monitoring-enhanced"},
		"role_bindings":    []any{map[string]any{"name": "nsprov-team-edit", "cluster_role": "edit", "group": "team-payments"}},
	} {
		if !reflect.DeepEqual(p[k], want) {
			t.Errorf("plan[%q] = %#v, want %#v", k, p[k], want)
		}
	}
	if np, _ := p["network_policy"].(map[string]any); np["mode"] != "isolated" {
		t.Errorf("plan network_policy %v", p["network_policy"])
	}
}

func TestPolicyEvalText(t *testing.T) {
	r := runCommand(t, "", "policy", "eval", "-f", testdata("payments-dev.yaml"), "--user", "alice", "--group", "team-payments")
	if r.code != ExitOK {
		t.Fatalf("want exit 0\n%s", r)
	}
	for _, want := range []string{
		"ALLOWED namespace payments-dev (policy embedded, revision ",
		"Warnings:\n  tier small costs $100 per month",
		"Mutation:\n  replace /metadata/annotations/nsprov.io~1features \"istio,monitoring-enhanced\"",
		"Plan:\n",
		"monthly_cost_usd: 100",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}

	r = runCommand(t, "", "policy", "eval", "-f", testdata("payments-prod-open.yaml"), "--user", "bob")
	if r.code != ExitDenied {
		t.Fatalf("want exit 1\n%s", r)
	}
	for _, want := range []string{
		"DENIED namespace payments-prod",
		"Violations:\n  network-policy-not-allowed-in-environment: ",
		"  requester-not-in-team: user \"bob\"",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out, "Plan:") {
		t.Errorf("a denied request has a plan:\n%s", r.out)
	}
}

func TestPolicyEvalDenied(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantRules []string
	}{
		{
			name:      "production open by a user outside the team",
			args:      []string{"-f", testdata("payments-prod-open.yaml"), "--user", "bob", "--group", "team-web"},
			wantRules: []string{"network-policy-not-allowed-in-environment", "requester-not-in-team"},
		},
		{
			name:      "default user is not in any team",
			args:      []string{"-f", testdata("payments-dev.yaml")},
			wantRules: []string{"requester-not-in-team"},
		},
		{
			name:      "team change on update",
			args:      []string{"-f", testdata("payments-dev-team-web.yaml"), "--old", testdata("payments-dev-stored.yaml"), "--user", "alice", "--group", "team-payments"},
			wantRules: []string{"requester-not-in-team", "team-immutable"},
		},
		{
			name:      "explicit UPDATE",
			args:      []string{"--operation", "update", "-f", testdata("payments-dev-team-web.yaml"), "--old", testdata("payments-dev-stored.yaml"), "--user", "alice", "--group", "team-payments"},
			wantRules: []string{"requester-not-in-team", "team-immutable"},
		},
	}
	for _, tt := range tests {
		for _, evaluator := range []string{"compiled", "topdown"} {
			t.Run(tt.name+"/"+evaluator, func(t *testing.T) {
				r := runCommand(t, "", append([]string{"policy", "eval", "-o", "json", "--policy-evaluator", evaluator}, tt.args...)...)
				if r.code != ExitDenied {
					t.Fatalf("want exit 1\n%s", r)
				}
				d := parseDecision(t, r)
				if d.Allowed || !slices.Equal(rulesOf(d), tt.wantRules) {
					t.Errorf("allowed %v rules %v, want %v", d.Allowed, rulesOf(d), tt.wantRules)
				}
				for _, v := range d.Violations {
					if v.Message == "" {
						t.Errorf("violation %s has no message", v.Rule)
					}
				}
				if d.Plan != nil {
					t.Errorf("a denied decision has a plan: %v", d.Plan)
				}
			})
		}
	}
}

func TestPolicyEvalUpdateAllowed(t *testing.T) {
	r := runCommand(t, "", "policy", "eval", "-o", "json", "-f", testdata("payments-dev-tier-medium.yaml"), "--old", testdata("payments-dev-stored.yaml"), "--user", "bob", "--group", "team-payments")
	if r.code != ExitOK {
		t.Fatalf("want exit 0\n%s", r)
	}
	d := parseDecision(t, r)
	// The requester of an update is kept; the tier label follows the annotation.
	if d.Object.Annotations["nsprov.io/requested-by"] != "alice" || d.Object.Labels["nsprov.io/tier"] != "medium" {
		t.Errorf("object %+v", d.Object.ObjectMeta)
	}
	want := "tier changes from small to medium: from $100 per month (2 CPU, 4Gi memory, 20Gi storage) to $200 per month (4 CPU, 8Gi memory, 50Gi storage)"
	if !slices.Contains(d.Warnings, want) {
		t.Errorf("warnings %q lack %q", d.Warnings, want)
	}
}

func TestPolicyEvalStdin(t *testing.T) {
	for _, name := range []string{"payments-dev.yaml", "payments-dev.json"} {
		t.Run(name, func(t *testing.T) {
			manifest, err := os.ReadFile(testdata(name))
			if err != nil {
				t.Fatal(err)
			}
			r := runCommand(t, string(manifest), "policy", "eval", "-f", "-", "--user", "alice", "--group", "team-payments", "-o", "json")
			if r.code != ExitOK {
				t.Fatalf("want exit 0\n%s", r)
			}
			if d := parseDecision(t, r); !d.Allowed || d.Object.Name != "payments-dev" {
				t.Errorf("decision %+v", d)
			}
		})
	}
	t.Run("old from stdin", func(t *testing.T) {
		old, err := os.ReadFile(testdata("payments-dev-stored.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		r := runCommand(t, string(old), "policy", "eval", "-f", testdata("payments-dev-team-web.yaml"), "--old", "-", "--user", "alice", "--group", "team-payments", "-o", "json")
		if r.code != ExitDenied || !slices.Contains(rulesOf(parseDecision(t, r)), "team-immutable") {
			t.Fatalf("want exit 1 with team-immutable\n%s", r)
		}
	})
}

func TestPolicyEvalPolicyDir(t *testing.T) {
	dir := copyPolicies(t)
	tiers := filepath.Join(dir, "config", "tiers.yaml")
	data, err := os.ReadFile(tiers)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tiers, bytes.Replace(data, []byte("monthly_cost_usd: 100"), []byte("monthly_cost_usd: 125"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCommand(t, "", "policy", "eval", "-f", testdata("payments-dev.yaml"), "--user", "alice", "--group", "team-payments", "--policy-dir", dir)
	if r.code != ExitOK {
		t.Fatalf("want exit 0\n%s", r)
	}
	if !strings.Contains(r.out, "tier small costs $125 per month") || !strings.Contains(r.out, "(policy "+dir+", revision ") {
		t.Errorf("the bundle in --policy-dir was not used:\n%s", r.out)
	}
}

func TestPolicyEvalBadInput(t *testing.T) {
	dir := t.TempDir()
	large := filepath.Join(dir, "large.yaml")
	padding := "# " + strings.Repeat("x", 1<<20) + "\n"
	manifest, err := os.ReadFile(testdata("payments-dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(large, append(manifest, padding...), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := brokenPolicies(t)

	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"missing -f", "", []string{}, []string{"-f is required"}},
		{"file not found", "", []string{"-f", testdata("missing.yaml")}, []string{"testdata/missing.yaml", "no such file or directory"}},
		{"not YAML", "", []string{"-f", testdata("not-yaml.yaml")}, []string{"testdata/not-yaml.yaml is not valid YAML or JSON"}},
		{"a Pod", "", []string{"-f", testdata("pod.yaml")}, []string{`kind "Pod"`, "nsprov evaluates v1 Namespaces"}},
		{"two documents", "", []string{"-f", testdata("two-documents.yaml")}, []string{"more than one document"}},
		{"empty file", "", []string{"-f", testdata("empty.yaml")}, []string{"testdata/empty.yaml is empty"}},
		{"empty stdin", "", []string{"-f", "-"}, []string{"standard input is empty"}},
		{"plain text on stdin", "hello world\n", []string{"-f", "-"}, []string{"standard input is not a Kubernetes object"}},
		{"no name", "", []string{"-f", testdata("no-name.yaml")}, []string{"has no metadata.name"}},
		{"larger than 1 MiB", "", []string{"-f", large}, []string{"large.yaml is larger than 1048576 bytes"}},
		{"larger than 1 MiB on stdin", string(manifest) + padding, []string{"-f", "-"}, []string{"standard input is larger than 1048576 bytes"}},
		{"update without old", "", []string{"-f", testdata("payments-dev.yaml"), "--operation", "UPDATE"}, []string{"--operation UPDATE needs --old"}},
		{"create with old", "", []string{"-f", testdata("payments-dev.yaml"), "--operation", "CREATE", "--old", testdata("payments-dev-stored.yaml")}, []string{"--old is only used with --operation UPDATE"}},
		{"delete", "", []string{"-f", testdata("payments-dev.yaml"), "--operation", "DELETE"}, []string{`--operation "DELETE" is not supported`}},
		{"both from stdin", "", []string{"-f", "-", "--old", "-"}, []string{"cannot both read standard input"}},
		{"bad output", "", []string{"-f", testdata("payments-dev.yaml"), "-o", "yaml"}, []string{`-o "yaml" is not supported`}},
		{"unknown evaluator", "", []string{"-f", testdata("payments-dev.yaml"), "--policy-evaluator", "wasm"}, []string{`--policy-evaluator "wasm" is not known; use compiled or topdown`}},
		{"old not found", "", []string{"-f", testdata("payments-dev.yaml"), "--old", testdata("missing.yaml")}, []string{"testdata/missing.yaml"}},
		{"old is a Pod", "", []string{"-f", testdata("payments-dev.yaml"), "--old", testdata("pod.yaml")}, []string{`kind "Pod"`}},
		{"broken policy dir", "", []string{"-f", testdata("payments-dev.yaml"), "--policy-dir", broken}, []string{broken, "lib.rego"}},
		{"missing policy dir", "", []string{"-f", testdata("payments-dev.yaml"), "--policy-dir", filepath.Join(dir, "nope")}, []string{"policy directory", "nope"}},
		{"unknown flag", "", []string{"-f", testdata("payments-dev.yaml"), "--frobnicate"}, []string{"unknown flag: --frobnicate"}},
		{"extra argument", "", []string{"-f", testdata("payments-dev.yaml"), "extra"}, []string{`unknown command "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCommand(t, tt.stdin, append([]string{"policy", "eval"}, tt.args...)...)
			if r.code != ExitBadUsage {
				t.Fatalf("want exit 2\n%s", r)
			}
			if r.out != "" {
				t.Errorf("stdout holds %q, want nothing", r.out)
			}
			if !strings.HasPrefix(r.errOut, "nsprov: ") {
				t.Errorf("stderr %q does not start with nsprov: ", r.errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.errOut)
				}
			}
		})
	}
}

func TestPolicyTest(t *testing.T) {
	failing := copyPolicies(t)
	if err := os.WriteFile(filepath.Join(failing, "extra_test.rego"), []byte(`package nsprov.extra_test

import data.nsprov.lib
import rego.v1

test_team_key_is_wrong if {
	lib.team_key == "nsprov.io/squad"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	noTests := copyPolicies(t)
	entries, err := filepath.Glob(filepath.Join(noTests, "*_test.rego"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
	brokenTest := copyPolicies(t)
	if err := os.WriteFile(filepath.Join(brokenTest, "broken_test.rego"), []byte("package nsprov.broken_test\n\nimport rego.v1\n\ntest_x if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string
		wantErrOut []string
	}{
		{"embedded", nil, ExitOK, []string{"PASS"}, nil},
		{"embedded verbose", []string{"-v"}, ExitOK, []string{"PASS", "test_defaults_in_development"}, nil},
		{"copy", []string{"--policy-dir", copyPolicies(t)}, ExitOK, []string{"PASS"}, nil},
		{"a failing test", []string{"--policy-dir", failing}, ExitDenied, []string{"FAIL", "test_team_key_is_wrong"}, []string{"1 of", "tests failed"}},
		{"broken dir", []string{"--policy-dir", brokenPolicies(t)}, ExitBadUsage, nil, []string{"lib.rego"}},
		{"broken test file", []string{"--policy-dir", brokenTest}, ExitBadUsage, nil, []string{"broken_test.rego"}},
		{"no tests", []string{"--policy-dir", noTests}, ExitBadUsage, nil, []string{"no _test.rego files"}},
		{"missing dir", []string{"--policy-dir", filepath.Join(t.TempDir(), "nope")}, ExitBadUsage, nil, []string{"nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCommand(t, "", append([]string{"policy", "test"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Fatalf("want exit %d\n%s", tt.wantCode, r)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(r.out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.out)
				}
			}
			for _, w := range tt.wantErrOut {
				if !strings.Contains(r.errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.errOut)
				}
			}
			if tt.wantCode == ExitOK && r.errOut != "" {
				t.Errorf("stderr: %s", r.errOut)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	r := runCommand(t, "", "frobnicate")
	if r.code != ExitBadUsage || !strings.Contains(r.errOut, `unknown command "frobnicate"`) {
		t.Errorf("want exit 2 with the unknown command\n%s", r)
	}
	r = runCommand(t, "", "version")
	if r.code != ExitOK || !strings.HasPrefix(r.out, "nsprov ") {
		t.Errorf("version\n%s", r)
	}
}

func TestPolicyExport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my-policies")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "export", dir}, streams{in: strings.NewReader(""), out: &out, err: &errOut}); code != 0 {
		t.Fatalf("policy export: exit %d: %s", code, errOut.String())
	}
	// The exported copy loads, passes its tests and has the embedded revision.
	exported, err := policy.LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if exported.Revision != embedded.Revision {
		t.Errorf("exported revision %s, embedded %s", exported.Revision, embedded.Revision)
	}
	// Exporting again over the same files is refused rather than clobbering edits.
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"policy", "export", dir}, streams{in: strings.NewReader(""), out: &out, err: &errOut}); code != ExitBadUsage {
		t.Errorf("second export: exit %d, want %d; stderr %s", code, ExitBadUsage, errOut.String())
	}
}
