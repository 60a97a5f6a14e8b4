package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
