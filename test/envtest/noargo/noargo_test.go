// Package noargo checks nsprov serve on a cluster without Argo Workflows: it
// says provisioning is off and keeps answering admission requests. It starts
// a control plane of its own, without Argo's CRDs.
package noargo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest"
)

func freePort(t *testing.T) int {
	t.Helper()
	port, err := envtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestServeWithoutArgo(t *testing.T) {
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &crenvtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 2 * time.Minute}
	defer func() { _ = env.Stop() }() // also after a Start that failed half-way
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	u, err := env.AddUser(crenvtest.User{Name: "system:serviceaccount:nsprov-system:nsprov", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	caPEM, _, err := envtest.ServingCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	webhookPort, probePort := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var errOut envtest.SyncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- app.Run(ctx, []string{"serve", "--kubeconfig", kcPath, "--cert-dir", dir,
			"--webhook-host", "127.0.0.1", "--webhook-port", fmt.Sprint(webhookPort),
			"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
			"--leader-election-namespace", "default",
		}, strings.NewReader(""), io.Discard, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("serve exited with %d\n%s", code, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop")
		}
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never became ready: %v\n%s", err, errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	log := errOut.String()
	for _, want := range []string{"provisioning is off; the admission webhooks keep serving", "install Argo Workflows and its CRDs"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// The webhooks answer.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Namespace"},"resource":{"group":"","version":"v1","resource":"namespaces"},"name":"x-prod","operation":"CREATE","userInfo":{"username":"bob"},"object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x-prod","annotations":{"nsprov.io/team":"web","nsprov.io/environment":"production","nsprov.io/network-policy":"open"}}}}}`
	resp, err := c.Post(fmt.Sprintf("https://127.0.0.1:%d/validate-namespace", webhookPort), "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "network-policy-not-allowed-in-environment: ") {
		t.Errorf("validating webhook answered %s, want a denial", body)
	}
}
