package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/certs"
)

// Certificate modes of `nsprov serve`.
const (
	// CertModeFiles serves the certificate and key in --cert-dir (cert-manager
	// or another tool writes them), reloaded when they change.
	CertModeFiles = "files"
	// CertModeSelfManaged makes nsprov create, renew and inject its own CA
	// and certificate, kept in a Secret.
	CertModeSelfManaged = "self-managed"
)

// CertOptions are the flags of the webhook's serving certificate.
type CertOptions struct {
	// Mode is CertModeFiles or CertModeSelfManaged.
	Mode string
	// Secret holds the CA and serving certificate in self-managed mode.
	Secret string
	// Namespace of the Secret and of the Service (default: $POD_NAMESPACE or
	// the namespace nsprov runs in).
	Namespace string
	// Service is the Service in front of the webhook server; the certificate
	// is valid for its cluster DNS names.
	Service string
	// WebhookConfiguration names the mutating and the validating webhook
	// configuration that get the CA bundle.
	WebhookConfiguration string
	// Hosts are further DNS names or IP addresses for the certificate.
	Hosts []string
	// Validity is the serving certificate's lifetime (renewed at two thirds).
	Validity time.Duration
	// CAValidity is the CA's lifetime (renewed at two thirds).
	CAValidity time.Duration
	// CheckInterval is how often each replica reads the Secret.
	CheckInterval time.Duration
}

// AddFlags binds the options to a flag set.
func (c *CertOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Mode, "cert-mode", CertModeFiles, "serving certificate: files (from --cert-dir, e.g. written by cert-manager) or self-managed (nsprov keeps a CA and certificate in --cert-secret and injects the CA into the webhook configurations)")
	fs.StringVar(&c.Secret, "cert-secret", "nsprov-webhook-tls", "self-managed: the Secret holding the CA and serving certificate")
	fs.StringVar(&c.Namespace, "cert-namespace", "", "self-managed: namespace of --cert-secret and --cert-service (default: $POD_NAMESPACE, or the namespace nsprov runs in)")
	fs.StringVar(&c.Service, "cert-service", "nsprov", "self-managed: the Service in front of the webhooks; the certificate is valid for its DNS names")
	fs.StringVar(&c.WebhookConfiguration, "webhook-configuration", "nsprov", "self-managed: name of the mutating and the validating webhook configuration that get the CA bundle")
	fs.StringSliceVar(&c.Hosts, "cert-hosts", nil, "self-managed: further DNS names or IP addresses for the certificate")
	fs.DurationVar(&c.Validity, "cert-validity", 90*24*time.Hour, "self-managed: lifetime of the serving certificate; renewed at two thirds of it")
	fs.DurationVar(&c.CAValidity, "ca-validity", 10*365*24*time.Hour, "self-managed: lifetime of the CA; renewed at two thirds of it, the previous CA stays trusted until it expires")
	fs.DurationVar(&c.CheckInterval, "cert-check-interval", time.Minute, "self-managed: how often each replica reads the certificate Secret")
}

// Validate checks the mode and the self-managed options; files mode is
// checked with --cert-dir by WebhookOptions.Validate.
func (c *CertOptions) Validate() error {
	switch c.Mode {
	case CertModeFiles:
		return nil
	case CertModeSelfManaged:
	default:
		return fmt.Errorf("--cert-mode %q is not supported; use %s or %s", c.Mode, CertModeFiles, CertModeSelfManaged)
	}
	var errs []error
	if c.Secret == "" || c.Service == "" || c.WebhookConfiguration == "" {
		errs = append(errs, errors.New("--cert-secret, --cert-service and --webhook-configuration must not be empty with --cert-mode=self-managed"))
	}
	if c.Validity < 2*time.Second || c.CAValidity < c.Validity {
		errs = append(errs, fmt.Errorf("--cert-validity %s must be at least 2s and --ca-validity %s at least as long", c.Validity, c.CAValidity))
	}
	if c.CheckInterval <= 0 || c.CheckInterval > c.Validity/3 {
		errs = append(errs, fmt.Errorf("--cert-check-interval %s must be positive and at most a third of --cert-validity %s", c.CheckInterval, c.Validity))
	}
	if c.Namespace == "" && podNamespace() == "" {
		errs = append(errs, errors.New("--cert-namespace is required outside a cluster (no $POD_NAMESPACE and no service account namespace file)"))
	}
	return errors.Join(errs...)
}

// podNamespace is $POD_NAMESPACE or the namespace of the pod's service account.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// servingCerts is what a certificate mode adds to the server and manager.
type servingCerts struct {
	tlsOpts []func(*tls.Config)
	manager *certs.Manager // self-managed only
	expiry  certs.ExpirySource
}

// servingCertificates prepares the certificate mode of o.
func (o *WebhookOptions) servingCertificates(cfg *rest.Config, scheme *runtime.Scheme) (*servingCerts, error) {
	c := o.Certs
	if c.Mode == CertModeFiles {
		return &servingCerts{expiry: certs.FileExpiry(filepath.Join(o.CertDir, o.CertName))}, nil
	}
	ns := c.Namespace
	if ns == "" {
		ns = podNamespace()
	}
	// Reads go straight to the API server: a cache would list every Secret.
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the certificate client: %w", err)
	}
	m, err := certs.New(certs.Options{
		Client: cl, Namespace: ns, SecretName: c.Secret, ServiceName: c.Service, Hosts: c.Hosts,
		WebhookConfiguration: c.WebhookConfiguration,
		Validity:             c.Validity, CAValidity: c.CAValidity, CheckInterval: c.CheckInterval,
	})
	if err != nil {
		return nil, err
	}
	return &servingCerts{
		tlsOpts: []func(*tls.Config){func(t *tls.Config) { t.GetCertificate = m.GetCertificate }},
		manager: m,
		expiry:  m.Expiry,
	}, nil
}

// register adds the certificate manager (on every replica) to mgr and the
// expiry metric to reg.
func (s *servingCerts) register(mgr ctrl.Manager, reg prometheus.Registerer) error {
	if s.manager != nil {
		if err := mgr.Add(s.manager); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("certificate", s.manager.Checker); err != nil {
			return err
		}
	}
	return certs.RegisterExpiryMetric(reg, s.expiry)
}

// readClientCAs reads a PEM file of CA certificates.
func readClientCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate; give the CA that signs the API server's webhook client certificate", path)
	}
	return pool, nil
}

// clientCAs verifies the webhook's callers against the CAs of a file, read
// again when its modification time or size changes (a mounted Secret or
// ConfigMap is replaced by a symbolic link swap, which changes both of the
// file it points to). A changed file that holds no certificate is logged and
// the previous CAs stay.
type clientCAs struct {
	path string
	log  logr.Logger

	mu      sync.Mutex
	pool    *x509.CertPool
	modTime time.Time
	size    int64
}

func newClientCAs(path string, log logr.Logger) (*clientCAs, error) {
	c := &clientCAs{path: path, log: log}
	if _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

// current returns the CAs, reading the file again when it changed.
func (c *clientCAs) current() (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, err := os.Stat(c.path)
	if err != nil {
		if c.pool != nil {
			return c.pool, nil // a mount being swapped; keep the CAs
		}
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	if c.pool != nil && info.ModTime().Equal(c.modTime) && info.Size() == c.size {
		return c.pool, nil
	}
	pool, err := readClientCAs(c.path)
	if err != nil {
		if c.pool != nil {
			c.log.Error(err, "the changed --client-ca-file does not load; the previous CAs stay")
			c.modTime, c.size = info.ModTime(), info.Size()
			return c.pool, nil
		}
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	if c.pool != nil {
		c.log.Info("client CAs reloaded", "file", c.path)
	}
	c.pool, c.modTime, c.size = pool, info.ModTime(), info.Size()
	return pool, nil
}

// verify is the server's tls.Config.VerifyPeerCertificate: the caller's
// certificate must chain to one of the CAs and be meant for client
// authentication.
func (c *clientCAs) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("the webhook requires a client certificate (--client-ca-file)")
	}
	certsIn := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parsing the client certificate: %w", err)
		}
		certsIn[i] = cert
	}
	roots, err := c.current()
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, cert := range certsIn[1:] {
		inter.AddCert(cert)
	}
	_, err = certsIn[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("client certificate %q is not signed by --client-ca-file: %w", certsIn[0].Subject.CommonName, err)
	}
	return nil
}

// tlsOption makes the server require and verify client certificates.
func (c *clientCAs) tlsOption(t *tls.Config) {
	t.ClientAuth = tls.RequireAnyClientCert
	t.VerifyPeerCertificate = c.verify
}

// clientVerifiedKey is the context key of whether the caller of a webhook
// request presented a client certificate the server verified.
type clientVerifiedKey struct{}

// withClientVerified records in the request's context whether its caller
// presented a verified client certificate: only when the server verifies
// them (verifying) and the caller presented one.
func withClientVerified(verifying bool) func(context.Context, *http.Request) context.Context {
	return func(ctx context.Context, r *http.Request) context.Context {
		if !verifying || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return ctx // no value reads as not verified
		}
		return context.WithValue(ctx, clientVerifiedKey{}, true)
	}
}

// markingRecorder sets Record.ClientVerified from the request's context
// before passing the record on.
type markingRecorder struct{ next admission.Recorder }

// Record implements admission.Recorder.
func (m markingRecorder) Record(ctx context.Context, r *admission.Record) {
	r.ClientVerified, _ = ctx.Value(clientVerifiedKey{}).(bool)
	m.next.Record(ctx, r)
}
