package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Options configure a Manager.
type Options struct {
	// Client reads and writes the Secret and the webhook configurations. Give
	// it a client without a cache: a cache would list and watch every Secret.
	Client client.Client
	// Namespace of the Secret and of the Service.
	Namespace string
	// SecretName is the Secret that holds the CA and the serving certificate.
	SecretName string
	// ServiceName is the Service in front of the webhook server; the
	// certificate is valid for its cluster DNS names.
	ServiceName string
	// Hosts are further DNS names or IP addresses the certificate is valid
	// for (for example 127.0.0.1 when the API server calls a local URL).
	Hosts []string
	// WebhookConfiguration names both the mutating and the validating webhook
	// configuration whose webhooks get the CA bundle.
	WebhookConfiguration string
	// Validity is the serving certificate's lifetime; it is renewed at two
	// thirds of it.
	Validity time.Duration
	// CAValidity is the CA's lifetime; it is renewed at two thirds of it.
	CAValidity time.Duration
	// CheckInterval is how often the Secret is read; a renewal by another
	// replica is served within this time.
	CheckInterval time.Duration
}

// Manager keeps the serving certificate. Start runs it; GetCertificate
// serves the current certificate.
type Manager struct {
	o       Options
	hosts   []string
	current atomic.Pointer[tls.Certificate]
	mu      sync.Mutex // serializes Sync
	// inPlace is the CA bundle both webhook configurations held at the end
	// of the previous Sync.
	inPlace []byte
}

// New checks the options and returns a Manager that serves nothing until its
// first Sync.
func New(o Options) (*Manager, error) {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("a client is required"))
	}
	if o.Namespace == "" || o.SecretName == "" || o.ServiceName == "" || o.WebhookConfiguration == "" {
		errs = append(errs, errors.New("the namespace, secret name, service name and webhook configuration name must not be empty"))
	}
	if o.Validity < 2*time.Second || o.CAValidity < o.Validity {
		errs = append(errs, fmt.Errorf("certificate validity %s must be at least 2s and the CA's (%s) at least as long", o.Validity, o.CAValidity))
	}
	if o.CheckInterval <= 0 || o.CheckInterval > o.Validity/3 {
		errs = append(errs, fmt.Errorf("check interval %s must be positive and at most a third of the validity %s, so a renewal is seen before the certificate expires", o.CheckInterval, o.Validity))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("self-managed certificates: %w", errors.Join(errs...))
	}
	svc := o.ServiceName + "." + o.Namespace
	hosts := append([]string{svc + ".svc", svc + ".svc.cluster.local", svc, o.ServiceName}, o.Hosts...)
	return &Manager{o: o, hosts: hosts}, nil
}

// GetCertificate serves the current certificate; it fits
// tls.Config.GetCertificate.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.current.Load()
	if c == nil {
		return nil, fmt.Errorf("no serving certificate yet: secret %s/%s has not been read", m.o.Namespace, m.o.SecretName)
	}
	return c, nil
}

// Checker is a readiness check: it fails until a certificate is served.
func (m *Manager) Checker(*http.Request) error {
	_, err := m.GetCertificate(nil)
	return err
}

// Start syncs at once and then every CheckInterval until ctx ends. A failed
// sync is logged and retried; the certificate being served stays. It
// satisfies controller-runtime's Runnable.
func (m *Manager) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithValues("secret", m.o.Namespace+"/"+m.o.SecretName)
	t := time.NewTicker(m.o.CheckInterval)
	defer t.Stop()
	for {
		if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "self-managed certificate: sync failed; retrying", "retryIn", m.o.CheckInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection is false: every replica serves the webhooks, so every
// replica keeps its certificate current.
func (m *Manager) NeedLeaderElection() bool { return false }

// Sync reads the Secret, creates or renews what it holds when needed, makes
// both webhook configurations trust its CA bundle, and then serves its
// certificate.
func (m *Manager) Sync(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	log := logr.FromContextOrDiscard(ctx).WithValues("secret", m.o.Namespace+"/"+m.o.SecretName)
	var data map[string][]byte
	// Another replica may write between our read and our write; then the
	// write conflicts and the next round reads what it wrote.
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return fmt.Errorf("secret %s/%s kept changing under five attempts to write it", m.o.Namespace, m.o.SecretName)
		}
		var err error
		data, err = m.ensureSecret(ctx, log)
		if err == nil {
			break
		}
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	bundle := data[CAKey]
	changed, err := m.inject(ctx, log, bundle)
	if err != nil {
		return err
	}
	// A certificate from a new CA is served only once the API server has had
	// a CheckInterval to see the bundle that trusts it: the bundle must have
	// been in place at the previous Sync already.
	settled := !changed && bytes.Equal(m.inPlace, bundle)
	m.inPlace = bundle
	return m.load(log, data, settled)
}

// ensureSecret returns valid Secret data, writing new data when the Secret
// is missing, broken or due for renewal.
func (m *Manager) ensureSecret(ctx context.Context, log logr.Logger) (map[string][]byte, error) {
	key := types.NamespacedName{Namespace: m.o.Namespace, Name: m.o.SecretName}
	secret := &corev1.Secret{}
	err := m.o.Client.Get(ctx, key, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading secret %s: %w", key, err)
	}
	now := time.Now()
	old, perr := parse(secret.Data)
	reason := ""
	switch {
	case !exists:
		reason = "the secret does not exist"
	case perr != nil:
		reason = perr.Error()
		old = nil
	default:
		reason = old.problem(m.hosts, now)
	}
	if reason == "" {
		return secret.Data, nil
	}
	data, err := issue(old, m.hosts, m.o.Validity, m.o.CAValidity, now)
	if err != nil {
		return nil, err
	}
	if !exists {
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: m.o.Namespace, Name: m.o.SecretName, Labels: map[string]string{"app.kubernetes.io/managed-by": "nsprov"}},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if err := m.o.Client.Create(ctx, secret); err != nil {
			return nil, fmt.Errorf("creating secret %s: %w", key, err)
		}
	} else {
		// Update carries the resourceVersion read above: a replica that
		// renewed in between makes this a conflict, and its data wins.
		secret.Data = data
		if err := m.o.Client.Update(ctx, secret); err != nil {
			return nil, fmt.Errorf("updating secret %s: %w", key, err)
		}
	}
	log.Info("self-managed certificate issued", "reason", reason, "caRenewed", old.caDue(now))
	return data, nil
}

// inject writes bundle into every webhook of both configurations that does
// not have it yet, and says whether it wrote.
func (m *Manager) inject(ctx context.Context, log logr.Logger, bundle []byte) (bool, error) {
	name := types.NamespacedName{Name: m.o.WebhookConfiguration}
	wrote := false
	for _, c := range []struct {
		kind string
		obj  client.Object
	}{
		{"MutatingWebhookConfiguration", &admissionregistrationv1.MutatingWebhookConfiguration{}},
		{"ValidatingWebhookConfiguration", &admissionregistrationv1.ValidatingWebhookConfiguration{}},
	} {
		obj := c.obj
		err := retryOnConflict(func() error {
			if err := m.o.Client.Get(ctx, name, obj); err != nil {
				return err
			}
			changed := false
			set := func(cc *admissionregistrationv1.WebhookClientConfig) {
				if !bytes.Equal(cc.CABundle, bundle) {
					cc.CABundle, changed = bundle, true
				}
			}
			switch w := obj.(type) {
			case *admissionregistrationv1.MutatingWebhookConfiguration:
				for i := range w.Webhooks {
					set(&w.Webhooks[i].ClientConfig)
				}
			case *admissionregistrationv1.ValidatingWebhookConfiguration:
				for i := range w.Webhooks {
					set(&w.Webhooks[i].ClientConfig)
				}
			}
			if !changed {
				return nil
			}
			if err := m.o.Client.Update(ctx, obj); err != nil {
				return err
			}
			wrote = true
			log.Info("CA bundle written", "kind", c.kind, "name", name.Name)
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("writing the CA bundle into %s %s (it must exist; the chart creates it): %w", c.kind, name.Name, err)
		}
	}
	return wrote, nil
}

func retryOnConflict(f func() error) error {
	var err error
	for range 5 {
		if err = f(); !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

// load serves the Secret's certificate when it differs from the served one.
// A certificate from another CA than the served one waits until the bundle
// has settled; the first certificate is served at once, as nothing is
// served before it.
func (m *Manager) load(log logr.Logger, data map[string][]byte, settled bool) error {
	cur := m.current.Load()
	if cur != nil && bytes.Equal(cur.Certificate[0], leafDER(data[CertKey])) {
		return nil
	}
	pair, err := tls.X509KeyPair(data[CertKey], data[KeyKey])
	if err != nil {
		return fmt.Errorf("secret %s/%s: tls.crt and tls.key: %w", m.o.Namespace, m.o.SecretName, err)
	}
	if cur != nil && !settled && !bytes.Equal(cur.Leaf.AuthorityKeyId, pair.Leaf.AuthorityKeyId) {
		log.Info("a certificate from a new CA waits one check interval for the API server to trust its CA", "serial", pair.Leaf.SerialNumber.String())
		return nil
	}
	m.current.Store(&pair)
	log.Info("serving certificate loaded", "serial", pair.Leaf.SerialNumber.String(), "notAfter", pair.Leaf.NotAfter)
	return nil
}

// leafDER is the first certificate of a PEM chain.
func leafDER(certPEM []byte) []byte {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil
	}
	return b.Bytes
}
