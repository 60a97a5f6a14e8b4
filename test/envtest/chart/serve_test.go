package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
	"github.com/nsprov/nsprov/test/envtest/devenv"
)

// Identities of nsprov's pods and of the provisioning steps, with the
// groups the API server gives service accounts. They get nothing but the
// chart's RBAC.
var (
	nsprovSA      = crenvtest.User{Name: "system:serviceaccount:nsprov-system:nsprov", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:nsprov-system"}}
	provisionerSA = crenvtest.User{Name: "system:serviceaccount:argo:nsprov-provisioner", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:argo"}}
)

// replica is one `nsprov serve` running in process, as one pod would.
type replica struct {
	webhook, metrics, probes string // host:port
	log                      envtest.SyncBuffer
}

// deploymentArgs are the arguments of the chart's Deployment, its mounted
// ConfigMaps written to local directories.
func deploymentArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	deployment := find(t, objs, "Deployment", "nsprov").DeepCopy()
	// The ConfigMaps the pod mounts (the chart's config/install.yaml, the
	// policy bundle) as local directories.
	if err := chartrender.Localize(deployment, objs, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	args, err := devenv.ServeArgs(deployment)
	if err != nil {
		t.Fatal(err)
	}
	return args
}

// kubeconfigFile writes a kubeconfig for u and returns its path.
func kubeconfigFile(t *testing.T, u crenvtest.User) string {
	t.Helper()
	apiServer(t)
	au, err := controlPlane.AddUser(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := au.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startReplica runs `nsprov serve` with the chart's arguments followed by
// overrides for a process outside a cluster, as nsprov's service account,
// until the test ends.
func startReplica(t *testing.T, chartArgs []string, overrides ...string) *replica {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		p, err := envtest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	r := &replica{
		webhook: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		metrics: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		probes:  fmt.Sprintf("127.0.0.1:%d", ports[2]),
	}
	args := append(append([]string{}, chartArgs...),
		"--kubeconfig", kubeconfigFile(t, nsprovSA),
		"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(ports[0]),
		"--metrics-bind-address", r.metrics, "--health-probe-bind-address", r.probes,
		"--leader-election-namespace", releaseNamespace, "--log-format", "text")
	args = append(args, overrides...)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- app.Run(ctx, args, strings.NewReader(""), io.Discard, &r.log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("serve exited with %d\n%s", code, r.log.String())
			}
		case <-time.After(time.Minute):
			t.Errorf("serve did not stop within a minute of the context ending")
		}
	})
	envtest.Eventually(t, time.Minute, "nsprov serve becoming ready", func() error {
		select {
		case code := <-exited:
			t.Fatalf("serve exited with %d\n%s", code, r.log.String())
		default:
		}
		resp, err := http.Get("http://" + r.probes + "/readyz?verbose")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s\nlog:\n%s", resp.StatusCode, b, r.log.String())
		}
		return nil
	})
	return r
}

// pointWebhooksAt makes the chart's webhook configurations (in objs) call
// addr instead of the chart's Service, as envtest does for its own webhooks.
// They are applied by the same field manager as install, so the next install
// puts the Service back.
func pointWebhooksAt(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured, addr string) {
	t.Helper()
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		obj := find(t, objs, kind, "nsprov").DeepCopy()
		if err := devenv.CallURL(obj, "https://"+addr); err != nil {
			t.Fatal(err)
		}
		if err := admin.Patch(ctx, obj, client.Apply, client.FieldOwner("helm"), client.ForceOwnership); err != nil {
			t.Fatalf("pointing %s at %s: %v", kind, addr, err)
		}
	}
}

func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// requested is a Namespace requested for team payments in development.
func requested(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "development",
	}}}
}

// checkWebhooksAnswer: bob (team-web) is denied by nsprov for team payments,
// and alice's server-side dry run comes back mutated by nsprov.
func checkWebhooksAnswer(ctx context.Context, bob, alice client.Client, name string) error {
	err := bob.Create(ctx, requested(name))
	want := `admission webhook "validate.namespaces.nsprov.io" denied the request: requester-not-in-team: `
	if err == nil || !strings.Contains(err.Error(), want) {
		return fmt.Errorf("bob's request for team payments: got %v, want a denial containing %q", err, want)
	}
	ns := requested(name)
	if err := alice.Create(ctx, ns, client.DryRunAll); err != nil {
		return fmt.Errorf("alice's dry run: %w", err)
	}
	if ns.Labels["nsprov.io/team"] != "payments" || ns.Annotations["nsprov.io/requested-by"] != "alice" {
		return fmt.Errorf("alice's dry run was not mutated by nsprov: labels %v, annotations %v", ns.Labels, ns.Annotations)
	}
	return nil
}

// secretMaterial reads the serving certificate and CA bundle nsprov keeps.
func secretMaterial(ctx context.Context, t *testing.T) (leaf *x509.Certificate, bundle []byte) {
	t.Helper()
	s := &corev1.Secret{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "nsprov-webhook-tls"}, s); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(s.Data["tls.crt"])
	if b == nil {
		t.Fatalf("secret tls.crt is not PEM: %q", s.Data["tls.crt"])
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c, s.Data["ca.crt"]
}

// served is the certificate addr serves, verified against bundle.
func served(addr string, bundle []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("the CA bundle holds no certificate")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// scrape reads a metrics endpoint.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	body, err := get(addr)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func get(addr string) ([]byte, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// metricValue reads one sample from a metrics endpoint.
func metricValue(addr, name string) (float64, error) {
	body, err := get(addr)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no sample of %s", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
