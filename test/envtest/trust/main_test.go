package trust

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/nsprov/nsprov/test/envtest"
)

// The control plane of the package's tests, and what its API server trusts.
var (
	cp *crenvtest.Environment
	// admin is a system:masters client.
	admin client.Client
	// clientCA signs the client certificate the API server presents to the
	// webhooks; clientCAFile holds it in PEM.
	clientCA     *testCA
	clientCAFile string
	// apiServerCert is the API server's client certificate for the webhooks.
	apiServerCert tls.Certificate
	// workDir holds the files of the package's tests.
	workDir string
)

// releaseNamespace stands for the namespace nsprov is installed in.
const releaseNamespace = "nsprov-system"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	crlog.SetLogger(logr.Discard())
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "trust: %v\n", err)
		return 1
	}
	var err error
	if workDir, err = os.MkdirTemp("", "nsprov-trust-"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(workDir)
	if clientCA, err = newCA("webhook client CA"); err != nil {
		return fail(err)
	}
	clientCAFile = filepath.Join(workDir, "client-ca.crt")
	if err := os.WriteFile(clientCAFile, clientCA.certPEM, 0o600); err != nil {
		return fail(err)
	}
	certPEM, keyPEM, err := clientCA.issue("kube-apiserver-webhook-client")
	if err != nil {
		return fail(err)
	}
	if apiServerCert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fail(err)
	}
	admissionConfig, err := writeAdmissionConfig(workDir, certPEM, keyPEM)
	if err != nil {
		return fail(err)
	}

	assets, err := envtest.AssetsDir()
	if err != nil {
		return fail(err)
	}
	mutating, validating, err := envtest.WebhookConfigurations()
	if err != nil {
		return fail(err)
	}
	cp, err = envtest.NewControlPlane(assets)
	if err != nil {
		return fail(err)
	}
	// Only OpenReports' CRD: the denial report. No Argo, no cert-manager.
	reports, err := envtest.ModuleDir("github.com/openreports/reports-api")
	if err != nil {
		return fail(err)
	}
	cp.CRDInstallOptions.Paths = []string{filepath.Join(reports, "config", "crd")}
	cp.WebhookInstallOptions = crenvtest.WebhookInstallOptions{
		MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{mutating},
		ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{validating},
	}
	// The API server authenticates to every webhook with apiServerCert, as
	// a cluster admin configures it (kube-apiserver
	// --admission-control-config-file).
	cp.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", admissionConfig)
	defer func() { _ = cp.Stop() }() // also after a Start that failed half-way
	cfg, err := cp.Start()
	if err != nil {
		return fail(fmt.Errorf("starting the control plane: %w", err))
	}
	if admin, err = client.New(cfg, client.Options{Scheme: envtest.Scheme}); err != nil {
		return fail(err)
	}
	if err := setUp(context.Background()); err != nil {
		return fail(err)
	}
	return m.Run()
}

// setUp creates the release namespace and lets every authenticated user
// create namespaces, as a cluster offering namespace self-service would.
func setUp(ctx context.Context) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "nsprov-requester"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"namespaces"},
			Verbs: []string{"create", "get", "list", "watch", "update", "patch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "nsprov-requester"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:authenticated"}},
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace}}
	for _, obj := range []client.Object{role, binding, ns} {
		if err := admin.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	return nil
}

// writeAdmissionConfig writes the API server's admission configuration: both
// webhook plugins authenticate to every webhook ("*") with the client
// certificate certPEM and keyPEM. It returns the configuration's path.
func writeAdmissionConfig(dir string, certPEM, keyPEM []byte) (string, error) {
	kubeconfig := filepath.Join(dir, "webhook-client.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
users:
  - name: "*"
    user:
      client-certificate: %s
      client-key: %s
`, filepath.Join(dir, "webhook-client.crt"), filepath.Join(dir, "webhook-client.key"))
	files := map[string][]byte{
		"webhook-client.crt":        certPEM,
		"webhook-client.key":        keyPEM,
		"webhook-client.kubeconfig": []byte(kc),
	}
	cfg := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"
	for _, plugin := range []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"} {
		cfg += fmt.Sprintf(`  - name: %s
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: %s
`, plugin, kubeconfig)
	}
	files["admission.yaml"] = []byte(cfg)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "admission.yaml"), nil
}

// testCA is a certificate authority that issues client certificates.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA(name string) (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// issue returns a client certificate for cn and its key, in PEM.
func (ca *testCA) issue(cn string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
