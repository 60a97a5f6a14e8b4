package trust

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
)

// TestClientVerification: with --client-ca-file, a POST without a client
// certificate, or with one from another CA, gets no decision (and leaves no
// record); a caller with a certificate from the CA, and the API server
// configured with one, get their decisions, which the denial report marks
// as coming from a verified caller. Without the flag the report marks them
// unverified.
func TestClientVerification(t *testing.T) {
	policyDir := t.TempDir()
	if err := policies.Export(policyDir); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, policyDir, "--client-ca-file", clientCAFile)
	r.waitReady(t)

	otherCA, err := newCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, otherKey, err := otherCA.issue("kube-apiserver-webhook-client")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tls.X509KeyPair(otherPEM, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	rightPEM, rightKey, err := clientCA.issue("another client of the CA")
	if err != nil {
		t.Fatal(err)
	}
	right, err := tls.X509KeyPair(rightPEM, rightKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, ns string
		cert     *tls.Certificate
	}{
		{"no client certificate", "forged-nocert-prod", nil},
		{"a certificate from another CA", "forged-otherca-prod", &other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, body, err := postReview(tc.cert, tc.ns)
			if err == nil {
				t.Fatalf("a POST with %s got an answer: %+v\n%s", tc.name, got, body)
			}
			t.Logf("refused as wanted: %v", err)
		})
	}

	// A caller with a certificate from the CA is heard.
	got, body, err := postReview(&right, "verified-post-prod")
	if err != nil {
		t.Fatalf("a POST with a certificate from the client CA: %v", err)
	}
	if got.Response == nil || got.Response.Allowed || !strings.Contains(got.Response.Result.Message, "network-policy-not-allowed-in-environment") {
		t.Fatalf("response = %s, want a denial naming network-policy-not-allowed-in-environment", body)
	}

	// So is the API server, which presents its certificate from the CA.
	bob := userClient(t, "bob", "team-web")
	err = bob.Create(context.Background(), openProd("trust-apiserver-prod"))
	if err == nil || !strings.Contains(err.Error(), "network-policy-not-allowed-in-environment") {
		t.Fatalf("creating a namespace through the API server: %v, want a denial by nsprov naming network-policy-not-allowed-in-environment\n%s",
			err, envtest.GrepLines(r.log.String(), "error"))
	}
	waitForDenial(t, "trust-apiserver-prod", audit.ClientCertificateVerified)
	waitForDenial(t, "verified-post-prod", audit.ClientCertificateVerified)
	for _, ns := range []string{"forged-nocert-prod", "forged-otherca-prod"} {
		if res := denialsOf(t, ns); len(res) != 0 {
			t.Errorf("the refused POST about %s was recorded: %+v", ns, res)
		}
	}

	// Without client verification, anyone is heard, and its denials are
	// marked unverified.
	r.stop(t)
	r = startReplica(t, policyDir)
	r.waitReady(t)
	if _, body, err := postReview(nil, "unverified-post-prod"); err != nil {
		t.Fatalf("without --client-ca-file a POST without a client certificate is answered, got %v: %s", err, body)
	}
	waitForDenial(t, "unverified-post-prod", audit.ClientCertificateUnverified)
}

// postReview POSTs a review of a namespace that the policy denies to the
// validating webhook, presenting cert (if any).
func postReview(cert *tls.Certificate, ns string) (*admissionv1.AdmissionReview, []byte, error) {
	wio := &cp.WebhookInstallOptions
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(wio.LocalServingCAData)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	obj, err := json.Marshal(openProd(ns))
	if err != nil {
		return nil, nil, err
	}
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("forged-" + ns),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
			Name:      ns,
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "bob", Groups: []string{"team-web"}},
			Object:    runtime.RawExtension{Raw: obj},
		},
	})
	if err != nil {
		return nil, nil, err
	}
	url := "https://" + wio.LocalServingHost + ":" + strconv.Itoa(wio.LocalServingPort) + "/validate-namespace"
	resp, err := httpc.Post(url, "application/json", bytes.NewReader(review))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	var got admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &got); err != nil {
		return nil, body, fmt.Errorf("the answer is not an AdmissionReview: %w", err)
	}
	return &got, body, nil
}

// openProd is a production namespace of team payments asking for an open
// network policy, which the embedded policy denies.
func openProd(name string) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"nsprov.io/team": "payments", "nsprov.io/environment": "production", "nsprov.io/network-policy": "open",
		}},
	}
}

func userClient(t *testing.T, name string, groups ...string) client.Client {
	t.Helper()
	cfg, err := envtest.UserConfig(cp, name, groups...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// denialsOf returns the results of the denial report about namespace ns.
func denialsOf(t *testing.T, ns string) []reportsv1alpha1.ReportResult {
	t.Helper()
	report := &reportsv1alpha1.ClusterReport{}
	if err := admin.Get(context.Background(), client.ObjectKey{Name: audit.DenialsReportName}, report); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil
		}
		t.Fatal(err)
	}
	var out []reportsv1alpha1.ReportResult
	for _, res := range report.Results {
		if len(res.Subjects) > 0 && res.Subjects[0].Name == ns {
			out = append(out, res)
		}
	}
	return out
}

// waitForDenial waits until the denial report holds the denial of ns, and
// checks that every one of its results says the caller's certificate was
// want.
func waitForDenial(t *testing.T, ns, want string) {
	t.Helper()
	envtest.Eventually(t, 30*time.Second, "the denial of "+ns+" in the report", func() error {
		res := denialsOf(t, ns)
		if len(res) == 0 {
			return fmt.Errorf("no result about %s yet", ns)
		}
		for _, r := range res {
			if got := r.Properties[audit.PropClientCertificate]; got != want {
				t.Fatalf("result %s about %s: %s=%q, want %q", r.Rule, ns, audit.PropClientCertificate, got, want)
			}
		}
		return nil
	})
}
