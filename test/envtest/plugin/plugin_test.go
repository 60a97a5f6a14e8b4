package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/test/envtest"
)

// user is a person with a kubeconfig of her own.
type user struct {
	name       string
	kubeconfig string
}

// newUser writes a kubeconfig that authenticates as name with groups.
func newUser(t *testing.T, name string, groups ...string) *user {
	t.Helper()
	kc, err := env.UserKubeconfig(name, groups...)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(kubeconfigDir, name+".kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return &user{name: name, kubeconfig: path}
}

func alice(t *testing.T) *user { return newUser(t, "alice", "team-payments") }
func bob(t *testing.T) *user   { return newUser(t, "bob", "team-web") }

// eve is authenticated but in no requester group.
func eve(t *testing.T) *user { return newUser(t, "eve", "contractors") }

// result is what a command printed and its exit code.
type result struct {
	out, err string
	code     int
}

func (r result) String() string {
	return fmt.Sprintf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
}

// run runs `kubectl nsprov args...` as u: the binary invoked as
// kubectl-nsprov, in process, with u's kubeconfig.
func (u *user) run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--kubeconfig", u.kubeconfig)
	code := app.RunAs(context.Background(), app.PluginName, args, strings.NewReader(""), &out, &errOut)
	r := result{out: out.String(), err: errOut.String(), code: code}
	t.Logf("%s: kubectl nsprov %s -> %d", u.name, strings.Join(args[:len(args)-2], " "), code)
	return r
}

// exists tells whether the namespace exists, as the admin sees it.
func exists(t *testing.T, name string) *corev1.Namespace {
	t.Helper()
	ns := &corev1.Namespace{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// An allowed request creates the namespace as its caller and prints the
// policy's warnings (the tier's cost) the way kubectl prints warnings.
func TestRequestAllowedShowsWarnings(t *testing.T) {
	const name = "plug-ok-dev"
	r := alice(t).run(t, "request", name, "--team", "payments", "--environment", "development", "--tier", "small",
		"--network-policy", "team", "--features", "monitoring-enhanced")
	if r.code != app.ExitOK || !strings.Contains(r.out, "namespace/"+name+" created") {
		t.Fatalf("request: %s", r)
	}
	if !strings.Contains(r.err, "Warning: tier small costs $100 per month") {
		t.Errorf("the tier's cost warning is not shown:\n%s", r)
	}
	ns := exists(t, name)
	if ns == nil {
		t.Fatalf("%s was not created", name)
	}
	a := ns.Annotations
	if a[contract.RequestedByAnnotation] != "alice" || a[contract.TeamAnnotation] != "payments" || a[contract.EnvironmentAnnotation] != "development" ||
		a[contract.TierAnnotation] != "small" || a[contract.NetworkPolicyAnnotation] != "team" || a[contract.FeaturesAnnotation] != "monitoring-enhanced" {
		t.Errorf("annotations of %s: %v", name, a)
	}
	// A second request of the same name says it exists.
	again := alice(t).run(t, "request", name, "--team", "payments", "--environment", "development")
	if again.code != app.ExitDenied || !strings.Contains(again.err, "already exists") {
		t.Errorf("second request: %s", again)
	}
}

// A denied request prints every broken rule with its ID and its fix, exits
// 1, and creates nothing.
func TestRequestDeniedShowsRuleAndFix(t *testing.T) {
	tests := []struct {
		name, who, ns, team, environment string
		want                             []string
	}{
		{
			name: "name without the environment's suffix", who: "alice", ns: "plug-live", team: "payments", environment: "production",
			want: []string{"namespace/plug-live denied by nsprov's policy", "name-environment-suffix:", `must end with "-prod", for example plug-live-prod`},
		},
		{
			name: "another team's namespace", who: "bob", ns: "plug-steal-dev", team: "payments", environment: "development",
			want: []string{"requester-not-in-team:", `user "bob" is not in group "team-payments"`, "ask a member of the team"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := alice(t)
			if tt.who == "bob" {
				u = bob(t)
			}
			r := u.run(t, "request", tt.ns, "--team", tt.team, "--environment", tt.environment)
			if r.code != app.ExitDenied {
				t.Fatalf("request: %s", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.err, w) {
					t.Errorf("the denial does not say %q:\n%s", w, r)
				}
			}
			if !strings.Contains(r.err, "kubectl nsprov why "+tt.ns) {
				t.Errorf("the denial does not point to why:\n%s", r)
			}
			if exists(t, tt.ns) != nil {
				t.Errorf("%s exists after a denial", tt.ns)
			}
		})
	}
}

// --dry-run=server asks nsprov and the API server and stores nothing: an
// allowed request shows the warnings and, with -o yaml, the Namespace as
// nsprov's mutation left it; a denied one shows the rules.
func TestRequestDryRunCreatesNothing(t *testing.T) {
	a := alice(t)
	r := a.run(t, "request", "plug-dry-dev", "--team", "payments", "--environment", "development", "--dry-run=server")
	if r.code != app.ExitOK || !strings.Contains(r.out, "namespace/plug-dry-dev allowed (server dry run") || !strings.Contains(r.err, "Warning: tier ") {
		t.Fatalf("dry run: %s", r)
	}
	r = a.run(t, "request", "plug-dry-dev", "--team", "payments", "--environment", "development", "--dry-run=server", "-o", "yaml")
	var ns corev1.Namespace
	if err := yaml.Unmarshal([]byte(r.out), &ns); r.code != app.ExitOK || err != nil {
		t.Fatalf("dry run -o yaml (%v): %s", err, r)
	}
	if ns.Name != "plug-dry-dev" || ns.Labels[contract.TeamLabel] != "payments" || ns.Annotations[contract.RequestedByAnnotation] != "alice" {
		t.Errorf("the dry run's Namespace lacks nsprov's mutation (team label, requested-by): %+v", ns.ObjectMeta)
	}
	r = a.run(t, "request", "plug-dry", "--team", "payments", "--environment", "development", "--dry-run=server")
	if r.code != app.ExitDenied || !strings.Contains(r.err, "name-environment-suffix:") || !strings.Contains(r.err, "a dry run is not recorded") {
		t.Fatalf("denied dry run: %s", r)
	}
	for _, name := range []string{"plug-dry-dev", "plug-dry"} {
		if exists(t, name) != nil {
			t.Errorf("the dry run created %s", name)
		}
	}
}

// statusJSON is what the tests read of `status -o json`.
type statusJSON struct {
	Name        string `json:"name"`
	Team        string `json:"team"`
	RequestedBy string `json:"requestedBy"`
	Condition   *struct {
		Status, Reason, Message string
	} `json:"condition"`
	Workflow *struct {
		Namespace, Name, Phase, Error string
		Steps                         []struct {
			Name, State, Message string
		}
	} `json:"workflow"`
}

// status --watch follows a namespace until Argo has provisioned it, a line
// per change; status then shows the condition, the Workflow and its steps,
// as text, JSON and YAML. Listing shows one's own namespaces; what others
// see is what the chart's requester RBAC grants.
func TestStatusOfProvisionedNamespace(t *testing.T) {
	const name = "plug-status-dev"
	a := alice(t)
	if r := a.run(t, "request", name, "--team", "payments", "--environment", "development"); r.code != app.ExitOK {
		t.Fatalf("request: %s", r)
	}
	w := a.run(t, "status", name, "--watch", "--timeout", "3m", "--interval", "200ms")
	if w.code != app.ExitOK {
		t.Fatalf("status --watch: %s", w)
	}
	t.Logf("status --watch printed:\n%s", w.out)
	for _, want := range []string{
		`(?m)^ *\d+[smhd]\S*  Provisioned: True \(Succeeded\): Workflow `, // the last change line
		`(?m)^ *\d+[smhd]\S*  Workflow ` + envtest.ArgoNamespace + `/\S+$`,
		`step quota: done`, `step limits: done`,
		`(?m)^Namespace: +` + name + ` \(Active\)$`,
		`(?m)^Requested by: +alice$`,
		`(?m)^Provisioned: +True \(Succeeded\)`,
		`(?m)^Workflow: +` + envtest.ArgoNamespace + `/\S+ Succeeded`,
		`(?m)^  quota +done `,
	} {
		if !regexp.MustCompile(want).MatchString(w.out) {
			t.Errorf("status --watch does not show %s:\n%s", want, w)
		}
	}

	// Without progress lines, --watch prints only the final status.
	if q := a.run(t, "status", name, "--watch", "--progress=false"); q.code != app.ExitOK || !strings.HasPrefix(q.out, "Namespace:") {
		t.Errorf("status --watch --progress=false: %s", q)
	}

	r := a.run(t, "status", name, "-o", "json")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.out), &st); r.code != app.ExitOK || err != nil {
		t.Fatalf("status -o json (%v): %s", err, r)
	}
	ns := exists(t, name)
	if st.Name != name || st.Team != "payments" || st.RequestedBy != "alice" || st.Condition == nil ||
		st.Condition.Status != "True" || st.Condition.Reason != contract.ReasonSucceeded {
		t.Fatalf("status -o json: %+v", st)
	}
	if st.Workflow == nil || st.Workflow.Namespace+"/"+st.Workflow.Name != ns.Annotations[contract.WorkflowAnnotation] ||
		st.Workflow.Phase != "Succeeded" || st.Workflow.Error != "" || len(st.Workflow.Steps) < 3 {
		t.Fatalf("status -o json workflow: %+v", st.Workflow)
	}
	steps := map[string]string{}
	for _, s := range st.Workflow.Steps {
		steps[s.Name] = s.State
		if s.State != "done" && s.State != "skipped" && s.State != "omitted" {
			t.Errorf("step %s is %s in a succeeded Workflow", s.Name, s.State)
		}
	}
	if steps["quota"] != "done" || steps["limits"] != "done" {
		t.Errorf("steps %v lack quota and limits", steps)
	}
	r = a.run(t, "status", name, "-o", "yaml")
	var fromYAML statusJSON
	if err := yaml.Unmarshal([]byte(r.out), &fromYAML); r.code != app.ExitOK || err != nil || fromYAML.Condition == nil || fromYAML.Condition.Status != "True" {
		t.Fatalf("status -o yaml (%v): %s", err, r)
	}

	// The list: alice's own namespaces by default.
	r = a.run(t, "status")
	if r.code != app.ExitOK || !strings.Contains(r.out, "NAME") || !strings.Contains(GrepLine(r.out, name), "True") {
		t.Errorf("alice's status list: %s", r)
	}
	// bob requested nothing; the chart's requester role lets him read every
	// namespace, alice's Workflows and the reports, so -A and NAME show hers.
	b := bob(t)
	if r = b.run(t, "status"); r.code != app.ExitOK || strings.Contains(r.out, name) || !strings.Contains(r.out, "you (bob) requested") {
		t.Errorf("bob's status list: %s", r)
	}
	if r = b.run(t, "status", "-A", "--team", "payments"); r.code != app.ExitOK || !strings.Contains(r.out, name) {
		t.Errorf("bob's status -A --team payments: %s", r)
	}
	if r = b.run(t, "status", name); r.code != app.ExitOK || !regexp.MustCompile(`(?m)^Provisioned: +True \(Succeeded\)`).MatchString(r.out) {
		t.Errorf("bob's status of %s: %s", name, r)
	}
	// eve is in no requester group: RBAC lets her read nothing.
	if r = eve(t).run(t, "status", name); r.code == app.ExitOK || !strings.Contains(r.err, "forbidden") {
		t.Errorf("eve's status of %s: %s", name, r)
	}
}

// GrepLine returns the first line of s that contains sub.
func GrepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// kubectl's connection flags work: --context picks a context of the
// kubeconfig, an unknown one is a clear error.
func TestContextFlag(t *testing.T) {
	a := alice(t)
	cfg, err := clientcmd.LoadFromFile(a.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if r := a.run(t, "status", "--context", cfg.CurrentContext); r.code != app.ExitOK {
		t.Errorf("status --context %s: %s", cfg.CurrentContext, r)
	}
	if r := a.run(t, "status", "--context", "no-such-context"); r.code != app.ExitBadUsage || !strings.Contains(r.err, "no-such-context") {
		t.Errorf("status --context no-such-context: %s", r)
	}
}

// A step that fails shows as failed with its message, and status --watch
// ends with exit code 1 when the condition is False.
func TestStatusShowsFailedStep(t *testing.T) {
	const name = "plug-broken-dev"
	envtest.BlockQuotas(t, env.Client, name)
	a := alice(t)
	if r := a.run(t, "request", name, "--team", "payments", "--environment", "development"); r.code != app.ExitOK {
		t.Fatalf("request: %s", r)
	}
	w := a.run(t, "status", name, "--watch", "--timeout", "3m", "--interval", "200ms")
	if w.code != app.ExitDenied || !strings.Contains(w.err, "namespace "+name+" is not provisioned: False (Failed)") {
		t.Fatalf("status --watch of a failing namespace: %s", w)
	}
	t.Logf("status --watch of a failing namespace printed:\n%s", w)
	if line := GrepLine(w.out, "step quota: failed"); !strings.Contains(line, "quotas are blocked here by the test") {
		t.Errorf("status --watch does not show the failed step with its message:\n%s", w)
	}
	if line := GrepLine(w.out, "  quota "); !strings.Contains(line, "failed") || !strings.Contains(line, "quotas are blocked here by the test") {
		t.Errorf("the steps table does not show the failed step with its message:\n%s", w)
	}
}

// whyJSON is what the tests read of `why -o json`.
type whyJSON struct {
	Name    string `json:"name"`
	Exists  bool   `json:"exists"`
	Denials []struct {
		User       string `json:"user"`
		Operation  string `json:"operation"`
		Violations []struct{ Rule, Message string }
	} `json:"denials"`
	Audit *struct {
		Violations []struct{ Rule, Message string }
	} `json:"audit"`
}

// why shows a recorded denial with its rule and the message alice was given;
// eve, in no requester group, may not read the report.
func TestWhyShowsRecordedDenial(t *testing.T) {
	const name = "plug-why-live"
	a := alice(t)
	if r := a.run(t, "request", name, "--team", "payments", "--environment", "production"); r.code != app.ExitDenied {
		t.Fatalf("request: %s", r)
	}
	var r result
	envtest.Eventually(t, 30*time.Second, "the denial in why's output", func() error {
		r = a.run(t, "why", name)
		if r.code != app.ExitOK || !strings.Contains(r.out, "by alice") {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	t.Logf("why printed:\n%s", r.out)
	for _, want := range []string{
		"Namespace " + name + " does not exist.",
		"Denied requests for " + name,
		"CREATE by alice",
		"- name-environment-suffix:",
		`must end with "-prod", for example plug-why-live-prod`,
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("why does not show %q:\n%s", want, r)
		}
	}
	r = a.run(t, "why", name, "-o", "json")
	var got whyJSON
	if err := json.Unmarshal([]byte(r.out), &got); r.code != app.ExitOK || err != nil {
		t.Fatalf("why -o json (%v): %s", err, r)
	}
	if got.Name != name || got.Exists || len(got.Denials) != 1 || got.Denials[0].User != "alice" || got.Denials[0].Operation != "CREATE" ||
		len(got.Denials[0].Violations) != 1 || got.Denials[0].Violations[0].Rule != "name-environment-suffix" ||
		!strings.Contains(got.Denials[0].Violations[0].Message, "-prod") {
		t.Errorf("why -o json: %+v", got)
	}
	if r = eve(t).run(t, "why", name); r.code == app.ExitOK || !strings.Contains(r.err, "forbidden") {
		t.Errorf("eve's why: %s", r)
	}
}

// why shows what the background audit found about an existing namespace
// that a tightened policy no longer allows.
func TestWhyShowsAuditFindings(t *testing.T) {
	ctx := context.Background()
	const name = "plug-medium-dev"
	a := alice(t)
	if r := a.run(t, "request", name, "--team", "payments", "--environment", "development", "--tier", "medium"); r.code != app.ExitOK {
		t.Fatalf("request: %s", r)
	}
	// Development no longer allows medium.
	file := filepath.Join(policyDir, "config", "environments.yaml")
	original, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const loose, tight = "allowed_tiers: [micro, small, medium]", "allowed_tiers: [micro, small]"
	if strings.Count(string(original), loose) != 1 {
		t.Fatalf("%s does not list development's tiers as %q", file, loose)
	}
	before := env.Policies.Bundle().Revision
	defer func() {
		_ = os.WriteFile(file, original, 0o644)
		envtest.Eventually(t, 30*time.Second, "the original policy to load again", func() error {
			if env.Policies.Bundle().Revision != before {
				return fmt.Errorf("revision %s, want %s", env.Policies.Bundle().Revision, before)
			}
			return nil
		})
	}()
	if err := os.WriteFile(file, []byte(strings.Replace(string(original), loose, tight, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 30*time.Second, "the tightened policy to load", func() error {
		if env.Policies.Bundle().Revision == before {
			return fmt.Errorf("still revision %s", before)
		}
		return nil
	})
	cfg, err := env.User(envtest.ControllerUser, "system:serviceaccounts", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := audit.NewAuditor(cfg, env.Policies, audit.AuditorOptions{Username: envtest.ControllerUser})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditor.Run(ctx); err != nil {
		t.Fatal(err)
	}
	r := a.run(t, "why", name)
	if r.code != app.ExitOK {
		t.Fatalf("why: %s", r)
	}
	for _, want := range []string{"Namespace " + name + " exists", "Denied requests: none recorded for " + name, "Audit: " + name + " breaks these rules", "- tier-not-allowed-in-environment:"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("why does not show %q:\n%s", want, r)
		}
	}
	r = a.run(t, "why", name, "-o", "yaml")
	var got whyJSON
	if err := yaml.Unmarshal([]byte(r.out), &got); r.code != app.ExitOK || err != nil {
		t.Fatalf("why -o yaml (%v): %s", err, r)
	}
	if !got.Exists || len(got.Denials) != 0 || got.Audit == nil || len(got.Audit.Violations) != 1 ||
		got.Audit.Violations[0].Rule != "tier-not-allowed-in-environment" || got.Audit.Violations[0].Message == "" {
		t.Errorf("why -o yaml: %+v", got)
	}
}

// cancel stops a provisioning that runs (its quota step blocked), status
// --watch then ends on Cancelled, a second cancel has nothing to stop; once
// the cause is gone, reprovision runs the plan again to success. Someone
// who may not read the namespace may do neither.
func TestCancelAndReprovision(t *testing.T) {
	const name = "plug-cancel-dev"
	unblock := envtest.BlockQuotas(t, env.Client, name)
	a := alice(t)
	if r := a.run(t, "request", name, "--team", "payments", "--environment", "development"); r.code != app.ExitOK {
		t.Fatalf("request: %s", r)
	}
	envtest.Eventually(t, 2*time.Minute, "the provisioning running", func() error {
		r := a.run(t, "status", name, "-o", "json")
		var st statusJSON
		if err := json.Unmarshal([]byte(r.out), &st); err != nil {
			return fmt.Errorf("%v: %s", err, r)
		}
		if st.Condition == nil || st.Condition.Reason != contract.ReasonRunning {
			return fmt.Errorf("condition %+v", st.Condition)
		}
		return nil
	})
	r := a.run(t, "cancel", name)
	if r.code != app.ExitOK || !strings.Contains(r.out, "cancel requested") {
		t.Fatalf("cancel: %s", r)
	}
	w := a.run(t, "status", name, "--watch", "--timeout", "2m", "--interval", "200ms")
	if w.code != app.ExitDenied || !strings.Contains(w.err, "False (Cancelled)") {
		t.Fatalf("status --watch after cancel: %s", w)
	}
	envtest.Eventually(t, 30*time.Second, "the cancel consumed", func() error {
		ns := exists(t, name)
		if _, ok := ns.Annotations[contract.CancelAnnotation]; ok || ns.Annotations[contract.ProvisioningAnnotation] != contract.ProvisioningCancelled {
			return fmt.Errorf("annotations %v", ns.Annotations)
		}
		return nil
	})
	if r = a.run(t, "cancel", name); r.code != app.ExitDenied || !strings.Contains(r.err, "nothing to cancel") ||
		!strings.Contains(r.err, "Cancelled") || !strings.Contains(r.err, "kubectl nsprov reprovision "+name) {
		t.Errorf("a second cancel: %s", r)
	}
	if _, ok := exists(t, name).Annotations[contract.CancelAnnotation]; ok {
		t.Errorf("a refused cancel set %s", contract.CancelAnnotation)
	}

	// eve may not read the namespace, so she may not act on it.
	if r = eve(t).run(t, "reprovision", name); r.code != app.ExitDenied || !strings.Contains(r.err, "you may not reprovision") {
		t.Errorf("eve's reprovision: %s", r)
	}
	// bob reads every namespace, but the requester admission policy keeps
	// him from changing another team's.
	if r = bob(t).run(t, "reprovision", name); r.code != app.ExitDenied || !strings.Contains(r.err, "you may not reprovision") {
		t.Errorf("bob's reprovision of alice's namespace: %s", r)
	}
	if ns := exists(t, name); ns.Annotations[contract.ReprovisionAnnotation] != "" {
		t.Errorf("bob's refused reprovision set %s: %v", contract.ReprovisionAnnotation, ns.Annotations)
	}
	if r = a.run(t, "cancel", "plug-no-such-dev"); r.code != app.ExitDenied || !strings.Contains(r.err, "does not exist") {
		t.Errorf("cancel of a namespace that does not exist: %s", r)
	}
	if r = a.run(t, "reprovision", "Not_A_Name"); r.code != app.ExitBadUsage || !strings.Contains(r.err, "is not valid") {
		t.Errorf("reprovision of an invalid name: %s", r)
	}

	unblock()
	if r = a.run(t, "reprovision", name); r.code != app.ExitOK || !strings.Contains(r.out, "reprovision requested") {
		t.Fatalf("reprovision: %s", r)
	}
	if ns := exists(t, name); ns.Annotations[contract.ReprovisionAnnotation] == "" {
		t.Errorf("reprovision left no %s: %v", contract.ReprovisionAnnotation, ns.Annotations)
	}
	w = a.run(t, "status", name, "--watch", "--timeout", "3m", "--interval", "200ms")
	if w.code != app.ExitOK || !regexp.MustCompile(`(?m)^Provisioned: +True \(Succeeded\)`).MatchString(w.out) {
		t.Fatalf("status --watch after reprovision: %s", w)
	}
}
