package trust

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest"
)

// replica is one `nsprov serve` process (run in the test's process) on the
// port the API server calls.
type replica struct {
	cancel context.CancelFunc
	exited chan int
	log    *envtest.SyncBuffer
	probe  string
}

// startReplica runs `nsprov serve` as nsprov's service account in
// releaseNamespace, without the controller and leader election, on the
// webhook port the API server calls, with policyDir (if set) and extra
// flags. It does not wait for the server to be ready.
func startReplica(t *testing.T, policyDir string, extra ...string) *replica {
	t.Helper()
	kc, err := envtest.UserKubeconfig(cp, "system:serviceaccount:nsprov-system:nsprov", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	probePort, err := envtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	wio := &cp.WebhookInstallOptions
	args := []string{"serve",
		"--kubeconfig", kcPath,
		"--cert-dir", wio.LocalServingCertDir,
		"--webhook-host", wio.LocalServingHost,
		"--webhook-port", strconv.Itoa(wio.LocalServingPort),
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
		"--leader-elect=false", "--controller=false",
		"--policy-poll-interval", "200ms",
		"--log-format", "json", "--verbosity", "1",
	}
	if policyDir != "" {
		args = append(args, "--policy-dir", policyDir)
	}
	args = append(args, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{cancel: cancel, exited: make(chan int, 1), log: &envtest.SyncBuffer{}, probe: fmt.Sprintf("http://127.0.0.1:%d", probePort)}
	go func() { r.exited <- app.Run(ctx, args, strings.NewReader(""), io.Discard, r.log) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// waitReady waits until the replica's webhook server has started; the test
// fails when the replica exits first.
func (r *replica) waitReady(t *testing.T) {
	t.Helper()
	envtest.Eventually(t, 60*time.Second, "the replica being ready", func() error {
		select {
		case code := <-r.exited:
			r.exited <- code
			t.Fatalf("serve exited with %d:\n%s", code, r.log.String())
		default:
		}
		resp, err := http.Get(r.probe + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		return nil
	})
}

// stop ends the replica and waits for it; stopping twice is harmless.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.exited:
		r.exited <- code
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not stop within 30s")
	}
}
