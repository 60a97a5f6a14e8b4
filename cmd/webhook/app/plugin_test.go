package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/internal/contract"
)

func TestIsPlugin(t *testing.T) {
	tests := []struct {
		argv0 string
		want  bool
	}{
		{"kubectl-nsprov", true},
		{"/usr/local/bin/kubectl-nsprov", true},
		{`C:\bin\kubectl-nsprov.exe`, filepath.Separator == '\\'},
		{"kubectl-nsprov.exe", true},
		{"nsprov", false},
		{"/usr/bin/nsprov", false},
		{"kubectl-nsprov-old", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isPlugin(tt.argv0); got != tt.want {
			t.Errorf("isPlugin(%q) = %v, want %v", tt.argv0, got, tt.want)
		}
	}
}

// Invoked as kubectl-nsprov, the binary offers the requester commands at
// the top level; as nsprov, under `nsprov plugin`.
func TestPluginCommandTree(t *testing.T) {
	tests := []struct {
		argv0 string
		args  []string
		want  []string
	}{
		{PluginName, []string{"--help"}, []string{"kubectl nsprov [command]", "request", "status", "why", "--context", "--kubeconfig"}},
		{"/opt/bin/" + PluginName, []string{"status", "--help"}, []string{"kubectl nsprov status [NAME] [flags]", "--watch", "--output"}},
		{"nsprov", []string{"plugin", "--help"}, []string{"nsprov plugin [command]", "request", "status", "why"}},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if code := RunAs(context.Background(), tt.argv0, tt.args, strings.NewReader(""), &out, &errOut); code != ExitOK {
			t.Fatalf("%s %v: exit %d: %s", tt.argv0, tt.args, code, errOut.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s %v does not print %q:\n%s", tt.argv0, tt.args, w, out.String())
			}
		}
	}
	// serve is nsprov's, not the plugin's.
	var out, errOut bytes.Buffer
	if code := RunAs(context.Background(), PluginName, []string{"serve"}, strings.NewReader(""), &out, &errOut); code != ExitBadUsage {
		t.Errorf("kubectl nsprov serve: exit %d, want %d", code, ExitBadUsage)
	}
}

// Bad input is refused before anything is sent, with what to do instead.
func TestPluginUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"request", "x"}, "--team is required"},
		{[]string{"request", "x", "--team", "a"}, "--environment is required"},
		{[]string{"request", "Bad_Name", "--team", "a", "--environment", "development"}, `namespace name "Bad_Name" is not valid`},
		{[]string{"request", "x-dev", "--team", "a", "--environment", "development", "--dry-run", "maybe"}, `--dry-run="maybe": use none, server or client`},
		{[]string{"request", "x-dev", "--team", "a", "--environment", "development", "-o", "wide"}, `-o "wide" is not a known output format`},
		{[]string{"request"}, "accepts 1 arg(s)"},
		{[]string{"status", "--watch"}, "--watch follows one namespace"},
		{[]string{"status", "x", "-A"}, "leave them out with a NAME"},
		{[]string{"status", "x", "--timeout", "-1s"}, "--timeout -1s must not be negative"},
		{[]string{"why", "x", "--limit", "-1"}, "--limit -1 must not be negative"},
		{[]string{"status", "x", "--kubeconfig", "/nonexistent/kubeconfig"}, "no Kubernetes API configuration"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := RunAs(context.Background(), PluginName, tt.args, strings.NewReader(""), &out, &errOut)
		if code != ExitBadUsage || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("kubectl nsprov %v: exit %d, stderr %q; want exit %d and %q", tt.args, code, errOut.String(), ExitBadUsage, tt.want)
		}
	}
}

// --dry-run=client prints the Namespace without reading any kubeconfig.
func TestRequestClientDryRun(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"request", "pay-dev", "--team", "payments", "--environment", "development", "--tier", "small",
		"--network-policy", "team", "--features", "istio", "--features", " monitoring-enhanced", "--dry-run=client",
		"--kubeconfig", "/nonexistent/kubeconfig"}
	if code := RunAs(context.Background(), PluginName, args, strings.NewReader(""), &out, &errOut); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var ns corev1.Namespace
	if err := yaml.Unmarshal(out.Bytes(), &ns); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development", contract.TierAnnotation: "small",
		contract.NetworkPolicyAnnotation: "team", contract.FeaturesAnnotation: "istio,monitoring-enhanced",
	}
	if ns.Kind != "Namespace" || ns.Name != "pay-dev" || !equalMaps(ns.Annotations, want) {
		t.Errorf("printed %+v, want annotations %v", ns, want)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// webhookDenial is an error as the API server returns a denial of nsprov's
// validating webhook: the message prefixed by the webhook's name, the
// causes as the webhook wrote them.
func webhookDenial(violations ...ruleViolation) error {
	causes := make([]metav1.StatusCause, len(violations))
	parts := make([]string, len(violations))
	for i, v := range violations {
		causes[i] = metav1.StatusCause{Type: metav1.CauseType(v.Rule), Message: v.Message}
		parts[i] = v.Rule + ": " + v.Message
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
		Message: `admission webhook "validate.nsprov.io" denied the request: ` + strings.Join(parts, "; "),
		Details: &metav1.StatusDetails{Name: "pay", Kind: "namespaces", Causes: causes},
	}}
}

func TestRequestFailed(t *testing.T) {
	suffix := ruleViolation{Rule: "name-environment-suffix", Message: `namespace "pay" is in production and must end with "-prod", for example pay-prod`}
	team := ruleViolation{Rule: "requester-not-in-team", Message: `user "bob" is not in group "team-payments"; ask a member of the team`}
	tests := []struct {
		name     string
		err      error
		dryRun   bool
		code     int
		stderr   []string
		errorMsg string
	}{
		{
			name: "policy denial", err: webhookDenial(suffix, team), code: ExitDenied,
			stderr: []string{"namespace/pay denied by nsprov's policy (2 rule(s) broken):", "  - " + suffix.Rule + ": " + suffix.Message,
				"  - " + team.Rule + ": " + team.Message, "kubectl nsprov why pay"},
		},
		{
			name: "dry-run policy denial", err: webhookDenial(suffix), dryRun: true, code: ExitDenied,
			stderr: []string{"  - " + suffix.Rule + ": " + suffix.Message, "a dry run is not recorded"},
		},
		{
			name: "RBAC", err: apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "pay", errors.New(`User "eve" cannot create resource "namespaces"`)),
			code: ExitDenied, errorMsg: `namespace pay was refused: namespaces "pay" is forbidden: User "eve" cannot create resource "namespaces"`,
		},
		{
			name: "exists", err: apierrors.NewAlreadyExists(schema.GroupResource{Resource: "namespaces"}, "pay"),
			code: ExitDenied, errorMsg: "namespace pay already exists; see it with: kubectl nsprov status pay",
		},
		{
			name: "invalid", err: apierrors.NewInvalid(schema.GroupKind{Kind: "Namespace"}, "pay", nil),
			code: ExitDenied, errorMsg: "namespace pay was refused: Namespace \"pay\" is invalid",
		},
		{
			name: "connection", err: errors.New("dial tcp: connection refused"),
			code: ExitBadUsage, errorMsg: "requesting namespace pay: dial tcp: connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := requestFailed(&stderr, "pay", tt.dryRun, tt.err)
			code := ExitBadUsage
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			}
			if code != tt.code {
				t.Errorf("exit code %d, want %d (%v)", code, tt.code, err)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr.String())
				}
			}
			if tt.errorMsg != "" && (ee == nil || ee.err == nil || !strings.Contains(err.Error(), tt.errorMsg)) && !strings.Contains(err.Error(), tt.errorMsg) {
				t.Errorf("error %v, want %q", err, tt.errorMsg)
			}
			if tt.errorMsg == "" && ee != nil && ee.err != nil {
				t.Errorf("the denial is printed and also returned as %v", ee.err)
			}
		})
	}
}

func at(sec int) metav1.Time { return metav1.NewTime(time.Date(2026, 1, 2, 3, 4, sec, 0, time.UTC)) }

// stepsOf keeps the nodes that do work, in the order they started, names
// their state as status prints it, and shows a retried step once, with its
// latest attempt's message and the number of attempts.
func TestStepsOf(t *testing.T) {
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-pay-dev"}}
	wf.Status.Nodes = wfv1.Nodes{
		"nsprov-pay-dev":    {Name: "nsprov-pay-dev", DisplayName: "nsprov-pay-dev", Type: wfv1.NodeTypeDAG, Phase: wfv1.NodeFailed, StartedAt: at(0)},
		"nsprov-pay-dev-1":  {DisplayName: "quota", TemplateName: "apply", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded, StartedAt: at(1), FinishedAt: at(2)},
		"nsprov-pay-dev-2":  {DisplayName: "rbac", Type: wfv1.NodeTypeTaskGroup, Phase: wfv1.NodeFailed, StartedAt: at(1)},
		"nsprov-pay-dev-3":  {DisplayName: "rbac(0:edit)", TemplateName: "apply", Type: wfv1.NodeTypePod, Phase: wfv1.NodeFailed, Message: "forbidden: nope", StartedAt: at(3)},
		"nsprov-pay-dev-4":  {DisplayName: "limits", Type: wfv1.NodeTypePod, Phase: wfv1.NodeRunning, StartedAt: at(2)},
		"nsprov-pay-dev-5":  {DisplayName: "allow-team", Type: wfv1.NodeTypeSkipped, Phase: wfv1.NodeSkipped},
		"nsprov-pay-dev-6":  {DisplayName: "labels", Type: wfv1.NodeTypePod, Phase: wfv1.NodePending},
		"nsprov-pay-dev-7":  {DisplayName: "dns", Type: wfv1.NodeTypeRetry, Phase: wfv1.NodeRunning, StartedAt: at(4), Children: []string{"nsprov-pay-dev-70", "nsprov-pay-dev-71"}},
		"nsprov-pay-dev-70": {DisplayName: "dns(0)", TemplateName: "apply", Type: wfv1.NodeTypePod, Phase: wfv1.NodeFailed, Message: "first", StartedAt: at(4)},
		"nsprov-pay-dev-71": {DisplayName: "dns(1)", TemplateName: "apply", Type: wfv1.NodeTypePod, Phase: wfv1.NodeFailed, Message: "blocked", StartedAt: at(5)},
		"nsprov-pay-dev-8":  {DisplayName: "egress", Type: wfv1.NodeTypeRetry, Phase: wfv1.NodeSucceeded, StartedAt: at(6), Children: []string{"nsprov-pay-dev-80"}},
		"nsprov-pay-dev-80": {DisplayName: "egress(0)", TemplateName: "apply", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded, StartedAt: at(6)},
	}
	var got []string
	for _, s := range stepsOf(wf) {
		got = append(got, fmt.Sprintf("%s=%s:%s:%d:%s", s.Name, s.State, s.Message, s.Attempts, s.Template))
	}
	want := []string{"quota=done::0:apply", "limits=running::0:", "rbac(0:edit)=failed:forbidden: nope:0:apply", "dns=running:blocked:2:apply",
		"egress=done::1:apply", "allow-team=skipped::0:", "labels=pending::0:"}
	if !slices.Equal(got, want) {
		t.Errorf("steps\n%v\nwant\n%v", got, want)
	}
	if c := stepCounts(stepsOf(wf)); c != "3/7 done, 2 running, 1 pending, 1 failed" {
		t.Errorf("stepCounts = %q", c)
	}
}

func TestFinished(t *testing.T) {
	tests := []struct {
		name     string
		st       namespaceStatus
		done     bool
		exitCode int
	}{
		{"no condition yet", namespaceStatus{Name: "a", Phase: "Active"}, false, ExitOK},
		{"running", namespaceStatus{Name: "a", Condition: &conditionStatus{Status: "Unknown", Reason: "Running"}}, false, ExitOK},
		{"a reason of the future, still Unknown", namespaceStatus{Name: "a", Condition: &conditionStatus{Status: "Unknown", Reason: "Queued"}}, false, ExitOK},
		{"provisioned", namespaceStatus{Name: "a", Condition: &conditionStatus{Status: "True", Reason: "Succeeded"}}, true, ExitOK},
		{"a changed request, the previous run's success", namespaceStatus{Name: "a", Annotations: map[string]string{"nsprov.io/provisioning": "Pending"}, Condition: &conditionStatus{Status: "True", Reason: "Succeeded"}}, false, ExitOK},
		{"this request's success", namespaceStatus{Name: "a", Annotations: map[string]string{"nsprov.io/provisioning": "Succeeded"}, Condition: &conditionStatus{Status: "True", Reason: "Succeeded"}}, true, ExitOK},
		{"failed", namespaceStatus{Name: "a", Condition: &conditionStatus{Status: "False", Reason: "Failed", Message: "step quota failed"}}, true, ExitDenied},
		{"terminating", namespaceStatus{Name: "a", Phase: "Terminating", Condition: &conditionStatus{Status: "Unknown"}}, true, ExitDenied},
	}
	for _, tt := range tests {
		done, err := finished(&tt.st)
		code := ExitOK
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if done != tt.done || code != tt.exitCode {
			t.Errorf("%s: finished = %v, exit %d (%v); want %v, exit %d", tt.name, done, code, err, tt.done, tt.exitCode)
		}
	}
}

// --watch prints a line per change: the condition, a new Workflow, a step
// that started, finished or failed; nothing when nothing changed.
func TestWriteChanges(t *testing.T) {
	elapsed := 5*time.Second + 300*time.Millisecond
	pending := &namespaceStatus{Condition: &conditionStatus{Status: "Unknown", Reason: "Pending", Message: "Workflow w is pending"},
		Workflow: &workflowStatus{Namespace: "argo", Name: "w"}}
	running := &namespaceStatus{Condition: &conditionStatus{Status: "Unknown", Reason: "Running", Message: "Workflow w is running (1/2)"},
		Workflow: &workflowStatus{Namespace: "argo", Name: "w", Steps: []stepStatus{{Name: "quota", State: "done"}, {Name: "limits", State: "running"}}}}
	failed := &namespaceStatus{Condition: &conditionStatus{Status: "False", Reason: "Failed", Message: "Workflow w failed"},
		Workflow: &workflowStatus{Namespace: "argo", Name: "w", Steps: []stepStatus{{Name: "quota", State: "done"}, {Name: "limits", State: "failed", Message: "denied:\n  quota blocked\n", Attempts: 2}}}}
	tests := []struct {
		name      string
		prev, cur *namespaceStatus
		want      string
	}{
		{"first", nil, pending, "   5s  Provisioned: Unknown (Pending): Workflow w is pending\n   5s  Workflow argo/w\n"},
		{"no change", pending, pending, ""},
		{"steps", pending, running, "   5s  Provisioned: Unknown (Running): Workflow w is running (1/2)\n   5s  step quota: done\n   5s  step limits: running\n"},
		{"failure", running, failed, "   5s  Provisioned: False (Failed): Workflow w failed\n   5s  step limits: failed (attempt 2): denied: quota blocked\n"},
		{"no condition yet", nil, &namespaceStatus{}, "   5s  Provisioned: not reported yet (nsprov's controller has not reported on the namespace)\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		writeChanges(&b, tt.prev, tt.cur, elapsed)
		if b.String() != tt.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tt.name, b.String(), tt.want)
		}
	}
}

// status shows a condition's reason and message whatever the reason, and
// nsprov's other annotations on the namespace, so that reasons and
// annotations the controller adds later show without a change here.
func TestWriteStatusShowsAnyReasonAndAnnotation(t *testing.T) {
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "pay-dev", Annotations: map[string]string{
			contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development", contract.RequestedByAnnotation: "alice",
			"nsprov.io/cancel": "true", "example.com/other": "x",
		}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive, Conditions: []corev1.NamespaceCondition{{
			Type: contract.ConditionProvisioned, Status: corev1.ConditionUnknown, Reason: "Queued", Message: "waiting: 12 namespaces ahead",
		}}},
	}
	var b bytes.Buffer
	if err := writeStatus(&b, statusOf(ns), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Unknown (Queued): waiting: 12 namespaces ahead", "nsprov.io/cancel:", "Workflow:", "none yet"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("status does not show %q:\n%s", w, b.String())
		}
	}
	if strings.Contains(b.String(), "example.com/other") {
		t.Errorf("status shows an annotation that is not nsprov's:\n%s", b.String())
	}
}

// The krew manifest renders, with krew-release-bot's template functions,
// into a krew Plugin whose every platform installs the nsprov binary (krew
// links it as kubectl-nsprov).
func TestKrewManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "plugins", "nsprov.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("krew").Funcs(template.FuncMap{
		"addURIAndSha": func(url, tag string) (string, error) {
			u, err := template.New("uri").Parse(url)
			if err != nil {
				return "", err
			}
			var b strings.Builder
			if err := u.Execute(&b, map[string]string{"TagName": tag}); err != nil {
				return "", err
			}
			return "uri: " + b.String() + "\n      sha256: " + strings.Repeat("ab", 32), nil
		},
	}).Parse(string(data))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]string{"TagName": "v1.2.3"}); err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct{ Name string }
		Spec       struct {
			Version          string
			ShortDescription string `json:"shortDescription"`
			Description      string
			Homepage         string
			Platforms        []struct {
				Selector         struct{ MatchLabels map[string]string } `json:"selector"`
				URI, Sha256, Bin string
			}
		}
	}
	if err := yaml.UnmarshalStrict(out.Bytes(), &p); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != "nsprov" ||
		p.Spec.Version != "v1.2.3" || p.Spec.ShortDescription == "" || len(p.Spec.Platforms) == 0 {
		t.Fatalf("manifest: %+v", p)
	}
	for _, pl := range p.Spec.Platforms {
		os, arch := pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]
		if pl.Bin != "nsprov" || !strings.HasSuffix(pl.URI, "/v1.2.3/nsprov_v1.2.3_"+os+"_"+arch+".tar.gz") || len(pl.Sha256) != 64 {
			t.Errorf("platform %s/%s: %+v", os, arch, pl)
		}
	}
}

func TestStepDuration(t *testing.T) {
	now := at(50).Time
	s1, f1, s2 := at(1), at(6), at(40)
	tests := []struct {
		step stepStatus
		want string
	}{
		{stepStatus{}, "-"},
		{stepStatus{StartedAt: &s1, FinishedAt: &f1}, "5s"},
		{stepStatus{StartedAt: &s2}, "10s"},
		{stepStatus{StartedAt: &f1, FinishedAt: &s1}, "0s"},
	}
	for _, tt := range tests {
		if got := stepDuration(tt.step, now); got != tt.want {
			t.Errorf("stepDuration(%+v) = %q, want %q", tt.step, got, tt.want)
		}
	}
}

func TestTransient(t *testing.T) {
	gr := schema.GroupResource{Resource: "namespaces"}
	tests := []struct {
		err  error
		want bool
	}{
		{apierrors.NewServerTimeout(gr, "get", 1), true},
		{apierrors.NewTooManyRequests("slow down", 1), true},
		{apierrors.NewServiceUnavailable("restarting"), true},
		{context.DeadlineExceeded, true},
		{apierrors.NewNotFound(gr, "x"), false},
		{apierrors.NewForbidden(gr, "x", errors.New("no")), false},
		{errors.New("namespace x is not an nsprov request"), false},
	}
	for _, tt := range tests {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
