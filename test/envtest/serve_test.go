package envtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nsprov/nsprov/cmd/webhook/app"
)

func freePort(t *testing.T) int {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestServe runs the real `nsprov serve` command against the control plane:
// probes, metrics, a webhook call over TLS, and a certificate rotation that
// the running server picks up without a restart.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	caPEM, serial, err := ServingCert(certDir)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := env.UserKubeconfig("system:serviceaccount:nsprov-system:nsprov", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	webhookPort, metricsPort, probePort := freePort(t), freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut SyncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- app.Run(ctx, []string{"serve",
			"--kubeconfig", kcPath,
			"--cert-dir", certDir,
			"--webhook-host", "127.0.0.1",
			"--webhook-port", fmt.Sprint(webhookPort),
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
			"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
			"--leader-election-namespace", "default",
		}, strings.NewReader(""), &out, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("serve exited with %d after the context ended\n%s", code, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of the context ending")
		}
	}()

	probe := fmt.Sprintf("http://127.0.0.1:%d", probePort)
	for _, path := range []string{"/healthz", "/readyz"} {
		Eventually(t, 30*time.Second, "GET "+path, func() error {
			select {
			case code := <-exited:
				t.Fatalf("serve exited with %d\n%s", code, errOut.String())
			default:
			}
			resp, err := http.Get(probe + path + "?verbose")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d: %s\nlog:\n%s", resp.StatusCode, b, errOut.String())
			}
			return nil
		})
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	webhookURL := fmt.Sprintf("https://127.0.0.1:%d", webhookPort)

	review := admissionReview(t, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"open-prod","annotations":{"nsprov.io/team":"payments","nsprov.io/environment":"production","nsprov.io/network-policy":"open"}}}`)
	resp, err := httpc.Post(webhookURL+"/validate-namespace", "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatalf("calling the validating webhook over TLS: %v", err)
	}
	var got admissionv1.AdmissionReview
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, body)
	}
	if got.Response == nil || got.Response.Allowed || got.Response.Result.Code != http.StatusForbidden ||
		!strings.Contains(got.Response.Result.Message, "network-policy-not-allowed-in-environment: ") ||
		!strings.Contains(got.Response.Result.Message, "requester-not-in-team: ") {
		t.Fatalf("response = %s, want a 403 denial naming network-policy-not-allowed-in-environment and requester-not-in-team", body)
	}

	metrics, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	// The registry is the process's, shared with the harness's webhook server,
	// so the count includes the suite's own requests: at least this one.
	if !regexp.MustCompile(`controller_runtime_webhook_requests_total\{code="200",webhook="/validate-namespace"\} [1-9]`).Match(mbody) {
		t.Errorf("metrics do not count the webhook request:\n%s", GrepLines(string(mbody), "webhook_requests_total"))
	}

	// This control plane serves Argo's CRDs: serve wins the leader election
	// and runs the provisioning controller beside the harness's own, as a
	// second replica would. (test/envtest/noargo covers a cluster without Argo.)
	Eventually(t, 30*time.Second, "the controller starting", func() error {
		if !strings.Contains(errOut.String(), `"controller":"nsprov-trigger"`) || !strings.Contains(errOut.String(), "Successfully acquired lease") {
			return fmt.Errorf("no leader election and controller start in the log yet")
		}
		return nil
	})

	// Rotate the certificate: the running server serves the new one.
	if served := servedSerial(t, webhookURL); served.Cmp(serial) != 0 {
		t.Fatalf("served certificate serial %v, want %v", served, serial)
	}
	_, newSerial, err := ServingCert(certDir)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "serving the rotated certificate", func() error {
		if s := servedSerial(t, webhookURL); s.Cmp(newSerial) != 0 {
			return fmt.Errorf("still serving serial %v, want %v", s, newSerial)
		}
		return nil
	})
}

func admissionReview(t *testing.T, object string) []byte {
	t.Helper()
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "test-uid",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
			Name:      "open-prod",
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "bob", Groups: []string{"team-web"}},
			Object:    runtime.RawExtension{Raw: []byte(object)},
		},
	}
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func servedSerial(t *testing.T, url string) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the served certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
