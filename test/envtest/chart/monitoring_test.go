package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// prometheus-operator's CRDs are in no module go.mod pins, so the API server
// cannot check ServiceMonitor and PrometheusRule; these structs mirror the
// fields the chart uses, and strict decoding refuses any other (a typo).
type serviceMonitor struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func strictDecode(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

var metricName = regexp.MustCompile(`nsprov_[a-z_]+`)

// queriedMetrics are the nsprov metrics the PrometheusRule and the Grafana
// dashboard query, without the _bucket, _sum and _count of histograms.
func queriedMetrics(t *testing.T) []string {
	t.Helper()
	var exprs []string
	var rule prometheusRule
	strictDecode(t, find(t, render(t, monitoringValues(t)), "PrometheusRule", "nsprov"), &rule)
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	dashboard, err := os.ReadFile(filepath.Join(chartrender.ChartDir(), "files", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(dashboard))
	var names []string
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				m = strings.TrimSuffix(m, suffix)
			}
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
	}
	return names
}

func monitoringValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := chartrender.ValuesFile(filepath.Join(chartrender.ChartDir(), "ci", "monitoring-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMonitoring checks the ServiceMonitor, the PrometheusRule and the
// dashboard structurally: known fields only, the metrics port, an alert
// for each failure the issue names, valid durations, and a dashboard that
// parses.
func TestMonitoring(t *testing.T) {
	objs := render(t, monitoringValues(t))
	var sm serviceMonitor
	strictDecode(t, find(t, objs, "ServiceMonitor", "nsprov"), &sm)
	if sm.APIVersion != "monitoring.coreos.com/v1" || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" {
		t.Errorf("ServiceMonitor %+v does not scrape the metrics port", sm)
	}
	svc := find(t, objs, "Service", "nsprov")
	selector, _, _ := unstructured.NestedStringMap(svc.Object, "metadata", "labels")
	for k, v := range sm.Spec.Selector.MatchLabels {
		if selector[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the Service lacks", k, v)
		}
	}

	var rule prometheusRule
	strictDecode(t, find(t, objs, "PrometheusRule", "nsprov"), &rule)
	covered := map[string]bool{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v lacks an alert name, expression, severity or summary", r)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("alert %s: unbalanced parentheses in %s", r.Alert, r.Expr)
			}
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				covered[m] = true
			}
		}
	}
	for what, metric := range map[string]string{
		"webhook errors":        "nsprov_admission_requests_total",
		"webhook latency":       "nsprov_admission_duration_seconds_bucket",
		"provisioning failures": "nsprov_provisioning_runs_total",
		"certificate expiry":    "nsprov_webhook_certificate_expiry_timestamp_seconds",
	} {
		if !covered[metric] {
			t.Errorf("no alert on %s (%s)", what, metric)
		}
	}

	cm := find(t, objs, "ConfigMap", "nsprov-dashboard")
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	var dashboard struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(data["nsprov.json"]), &dashboard); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dashboard.UID == "" || len(dashboard.Panels) < 6 {
		t.Errorf("dashboard uid %q with %d panels", dashboard.UID, len(dashboard.Panels))
	}
}
