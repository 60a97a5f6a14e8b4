package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// alertsNamespace is the release namespace the alert tests render the chart
// into; charts/nsprov/tests/alerts_test.yaml's series carry it.
const alertsNamespace = "nsprov-system"

// alertRulesFile is the rule file charts/nsprov/tests/*_test.yaml read: the
// groups of the PrometheusRule the chart renders.
const alertRulesFile = "nsprov-alerts.rules.yaml"

// promtool returns Prometheus' promtool: PROMTOOL if set, else
// bin/prometheus/promtool, which `make promtool` (or `make test`) builds.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "bin", "prometheus", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no promtool at %s: run `make promtool` (or `make test`), or set PROMTOOL", p)
	}
	return p
}

// TestAlertRules runs the alerts' unit tests, charts/nsprov/tests/*_test.yaml
// in Prometheus' rule-test format, with `promtool test rules` against the
// rules the chart renders with its default thresholds, after `promtool check
// rules` on them; and checks every alert has a test.
func TestAlertRules(t *testing.T) {
	promtool := promtool(t)
	objs, err := chartrender.Render(map[string]any{
		"metrics": map[string]any{"prometheusRule": map[string]any{"enabled": true}},
	}, alertsNamespace)
	if err != nil {
		t.Fatal(err)
	}
	spec := find(t, objs, "PrometheusRule", "nsprov").Object["spec"]
	rules, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, alertRulesFile), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := filepath.Glob(filepath.Join(chartrender.ChartDir(), "tests", "*_test.yaml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in charts/nsprov/tests (%v)", err)
	}
	var names []string
	var testText strings.Builder
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		testText.Write(b)
		names = append(names, filepath.Base(f))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s\nrendered rules:\n%s", strings.Join(args, " "), err, out, rules)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
	run("check", "rules", alertRulesFile)
	run(append([]string{"test", "rules"}, names...)...)

	var rule prometheusRule
	strictDecode(t, find(t, objs, "PrometheusRule", "nsprov"), &rule)
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if !regexp.MustCompile(`alertname:\s*` + regexp.QuoteMeta(r.Alert) + `\s`).MatchString(testText.String()) {
				t.Errorf("alert %s has no test in charts/nsprov/tests", r.Alert)
			}
		}
	}
}
