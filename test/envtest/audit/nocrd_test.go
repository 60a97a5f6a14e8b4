package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/test/envtest"
)

// On a control plane without the OpenReports CRD the writer and the auditor
// say so in exactly one log line, keep going without crashing, and the
// Events are still emitted.
func TestMissingCRD(t *testing.T) {
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	bare := &crenvtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 2 * time.Minute}
	defer func() { _ = bare.Stop() }() // also after a Start that failed half-way
	cfg, err := bare.Start()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: audit.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	var log envtest.SyncBuffer
	s := audit.NewSink(audit.Options{
		DecisionLog: &bytes.Buffer{}, Logger: bufferLogger(&log),
		FlushInterval: 50 * time.Millisecond, RetryInterval: 200 * time.Millisecond,
	})
	stop, err := startWriter(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := audit.NewAuditor(cfg, policy.StaticStore(b), audit.AuditorOptions{Logger: bufferLogger(&log)})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = auditor.Start(actx) })
	defer func() { cancel(); wg.Wait() }()

	// Denials in several batches, each a failed write of the report.
	for round := range 5 {
		start := time.Now()
		s.Record(context.Background(), &admission.Record{
			Time: time.Now(), Webhook: "validate", UID: fmt.Sprintf("nocrd-%d", round), Operation: "CREATE",
			Namespace: fmt.Sprintf("nocrd-%d-dev", round), Username: "mallory", Allowed: false,
			Violations: []policy.Violation{{Rule: "team-required", Message: "no team"}},
		})
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Record took %s", d)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := auditor.Run(context.Background()); err == nil {
		t.Error("an audit without the CRD succeeded")
	}

	envtest.Eventually(t, 30*time.Second, "the Events", func() error {
		evs, err := deniedEvents(context.Background(), c)
		if err != nil {
			return err
		}
		if len(evs) != 5 {
			return fmt.Errorf("%d Events, want 5", len(evs))
		}
		return nil
	})
	if n := strings.Count(log.String(), audit.CRDMissingMessage); n != 1 {
		t.Errorf("the missing CRD is logged %d times, want once:\n%s", n, log.String())
	}
	for _, want := range []string{"clusterreports.openreports.io", "the decision log, the metrics and the NamespaceRequestDenied Events go on", "Install the OpenReports CRDs"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log line lacks %q:\n%s", want, log.String())
		}
	}
	if s.Pending() != 5 {
		t.Errorf("%d denials pending, want the 5 kept in the queue until the CRD is installed", s.Pending())
	}

	// nsprov audit explains why there is no report.
	u, err := bare.AddUser(crenvtest.User{Name: "auditor", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := app.Run(context.Background(), []string{"audit", "--kubeconfig", path}, strings.NewReader(""), &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "OpenReports is not installed in this cluster") ||
		!strings.Contains(errOut.String(), "--field-selector reason=NamespaceRequestDenied") {
		t.Errorf("nsprov audit exited %d: %s%s", code, out.String(), errOut.String())
	}
}
