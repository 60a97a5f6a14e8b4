package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryMetricName is the gauge of the served certificate's expiry.
const ExpiryMetricName = "nsprov_webhook_certificate_expiry_timestamp_seconds"

// ExpirySource returns when the served certificate expires, or an error
// when no certificate can be read (then the metric is absent from the scrape
// and an alert on it sees that).
type ExpirySource func() (time.Time, error)

// expiryCollector reads the expiry at scrape time from a replaceable source.
type expiryCollector struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	source ExpirySource
}

var expiry = &expiryCollector{desc: prometheus.NewDesc(ExpiryMetricName,
	"When the webhook's serving certificate expires, in seconds since the Unix epoch.", nil, nil)}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	source := c.source
	c.mu.Unlock()
	if source == nil {
		return
	}
	t, err := source()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Unix()))
}

// RegisterExpiryMetric registers the expiry gauge with reg, reading from
// source. Registering again (a second server in one process, as in tests)
// replaces the source.
func RegisterExpiryMetric(reg prometheus.Registerer, source ExpirySource) error {
	expiry.mu.Lock()
	expiry.source = source
	expiry.mu.Unlock()
	if err := reg.Register(expiry); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return fmt.Errorf("registering %s: %w", ExpiryMetricName, err)
		}
	}
	return nil
}

// FileExpiry reads the expiry of the first certificate in the PEM file at
// path, as served from files (cert-manager's Secret mounted as --cert-dir).
func FileExpiry(path string) ExpirySource {
	return func() (time.Time, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return time.Time{}, fmt.Errorf("reading the serving certificate: %w", err)
		}
		b, _ := pem.Decode(data)
		if b == nil {
			return time.Time{}, fmt.Errorf("%s holds no PEM certificate", path)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", path, err)
		}
		return c.NotAfter, nil
	}
}

// Expiry reads the expiry of the certificate the Manager serves.
func (m *Manager) Expiry() (time.Time, error) {
	c, err := m.GetCertificate(nil)
	if err != nil {
		return time.Time{}, err
	}
	return c.Leaf.NotAfter, nil
}
