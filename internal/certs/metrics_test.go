package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The expiry gauge reads the served certificate file at scrape time, so it
// follows a renewal by cert-manager without a restart; a registry that gets
// the gauge twice keeps one, with the latest source.
func TestExpiryMetricFromFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tls.crt")
	reg := prometheus.NewRegistry()
	if err := RegisterExpiryMetric(reg, FileExpiry(path)); err != nil {
		t.Fatal(err)
	}
	if err := RegisterExpiryMetric(reg, FileExpiry(path)); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	now := time.Now()
	for _, validity := range []time.Duration{time.Hour, 48 * time.Hour} {
		data, err := issue(nil, hosts, validity, 2*validity, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data[CertKey], 0o600); err != nil {
			t.Fatal(err)
		}
		if got, want := testutil.ToFloat64(expiry), float64(now.Add(validity).Unix()); got != want {
			t.Errorf("validity %s: %s = %v, want %v", validity, ExpiryMetricName, got, want)
		}
		if n, err := testutil.GatherAndCount(reg, ExpiryMetricName); err != nil || n != 1 {
			t.Errorf("the registry serves %d samples of %s (%v), want 1", n, ExpiryMetricName, err)
		}
	}

	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("gathering with a broken file: %v, want an error naming it", err)
	}
}
