// Package audit tests nsprov's audit of admission decisions end to end: the
// real webhooks, served by the harness over TLS to a real kube-apiserver,
// record to an audit.Sink whose Writer keeps the denials in the OpenReports
// ClusterReport nsprov-admission-denials and emits Events; an Auditor
// publishes nsprov-namespace-audit. The package starts one control plane
// with nsprov's CRDs, a policy directory of its own (a copy of the embedded
// bundle, edited by the tightening test) and, for the missing-CRD test, a
// second bare one.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
)

// reportSize is the bound of the package's denial report: small, so that
// the flood test fills it quickly.
const reportSize = 200

var (
	env *envtest.Env
	// sink is the webhooks' recorder; decisions is its decision log and
	// sinkLog its own log.
	sink      *audit.Sink
	decisions envtest.SyncBuffer
	sinkLog   envtest.SyncBuffer
	// policyDir is the policy bundle the webhooks serve and watch.
	policyDir string
	// admin reads the reports and Events.
	admin client.Client
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "nsprov-audit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	policyDir = filepath.Join(dir, "policies")
	if err := policies.Export(policyDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sink = audit.NewSink(audit.Options{DecisionLog: &decisions, Logger: bufferLogger(&sinkLog), ReportSize: reportSize})
	env, err = envtest.Start(ctx, envtest.Options{PolicyDir: policyDir, Recorder: sink, NoRunner: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "envtest: stopping the control plane: %v\n", err)
		}
	}()
	if admin, err = client.New(env.Config, client.Options{Scheme: audit.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The writer runs as nsprov's service account would.
	cfg, err := env.User(envtest.ControllerUser, "system:serviceaccounts", "system:masters")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := startWriter(cfg, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startWriter runs a Writer for s until the returned function is called,
// which waits for it to return.
func startWriter(cfg *rest.Config, s *audit.Sink) (func(), error) {
	w, err := audit.NewWriter(cfg, s)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Start(ctx) })
	return func() { cancel(); wg.Wait() }, nil
}

// bufferLogger logs one line per message into buf.
func bufferLogger(buf *envtest.SyncBuffer) logr.Logger {
	return funcr.New(func(prefix, args string) {
		fmt.Fprintf(buf, "%s %s\n", prefix, args)
	}, funcr.Options{})
}

// decisionLine is what the tests read of a decision log line.
type decisionLine struct {
	Time       time.Time `json:"time"`
	Webhook    string    `json:"webhook"`
	UID        string    `json:"uid"`
	Operation  string    `json:"operation"`
	Namespace  string    `json:"namespace"`
	User       string    `json:"user"`
	Groups     []string  `json:"groups"`
	Allowed    bool      `json:"allowed"`
	Violations []struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"violations"`
	DryRun         bool    `json:"dryRun"`
	PolicyRevision string  `json:"policyRevision"`
	LatencySeconds float64 `json:"latencySeconds"`
}

// validations returns the validating webhook's decisions about the
// namespaces that keep says yes to.
func validations(t *testing.T, keep func(namespace string) bool) []decisionLine {
	t.Helper()
	var out []decisionLine
	for _, l := range strings.Split(decisions.String(), "\n") {
		if l == "" {
			continue
		}
		var d decisionLine
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("decision log line is not JSON: %v: %s", err, l)
		}
		if d.Webhook == "validate" && keep(d.Namespace) {
			out = append(out, d)
		}
	}
	return out
}

// getReport reads a ClusterReport; nil when it does not exist.
func getReport(ctx context.Context, t *testing.T, name string) *reportsv1alpha1.ClusterReport {
	t.Helper()
	r := &reportsv1alpha1.ClusterReport{}
	if err := admin.Get(ctx, client.ObjectKey{Name: name}, r); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatalf("reading ClusterReport %s: %v", name, err)
	}
	return r
}

// waitIdle waits until s has written everything it queued.
func waitIdle(t *testing.T, s *audit.Sink, timeout time.Duration) {
	t.Helper()
	envtest.Eventually(t, timeout, "the audit queue to empty", func() error {
		if n := s.Pending(); n > 0 {
			return fmt.Errorf("%d results pending", n)
		}
		return nil
	})
}

// counter sums a counter of controller-runtime's registry over the label
// values that match (nil matches all).
func counter(t *testing.T, name string, match map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if v, ok := match[l.GetName()]; ok && v != l.GetValue() {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// deniedEvents lists the NamespaceRequestDenied Events of every namespace,
// selected by the API server, as
// `kubectl get events -A --field-selector reason=NamespaceRequestDenied`.
func deniedEvents(ctx context.Context, c client.Client) ([]corev1.Event, error) {
	list := &corev1.EventList{}
	if err := c.List(ctx, list, client.MatchingFields{"reason": audit.EventReason}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// writeKubeconfig writes an admin kubeconfig for `nsprov audit`.
func writeKubeconfig(t *testing.T, kubeconfig []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
