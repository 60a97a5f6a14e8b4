package app

import (
	"strings"
	"testing"
	"time"

	"github.com/nsprov/nsprov/internal/server"
)

// defaultCertOptions are the certificate flags' defaults.
var defaultCertOptions = server.CertOptions{
	Mode: server.CertModeFiles, Secret: "nsprov-webhook-tls", Service: "nsprov", WebhookConfiguration: "nsprov",
	Validity: 90 * 24 * time.Hour, CAValidity: 10 * 365 * 24 * time.Hour, CheckInterval: time.Minute,
}

func TestCertOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown mode", []string{"--cert-mode", "acme"}, `--cert-mode "acme" is not supported; use files or self-managed`},
		{"files mode needs --cert-dir", []string{"--cert-mode", "files"}, "--cert-dir is required with --cert-mode=files: the directory with the serving certificate and key (or use --cert-mode=self-managed)"},
		{"empty secret", []string{"--cert-mode", "self-managed", "--cert-namespace", "nsprov-system", "--cert-secret", ""}, "--cert-secret, --cert-service and --webhook-configuration must not be empty"},
		{"validity too short", []string{"--cert-mode", "self-managed", "--cert-validity", "1s"}, "--cert-validity 1s must be at least 2s"},
		{"CA shorter than the certificate", []string{"--cert-mode", "self-managed", "--cert-validity", "48h", "--ca-validity", "24h"}, "--ca-validity 24h0m0s at least as long"},
		{"check interval too long", []string{"--cert-mode", "self-managed", "--cert-validity", "1h", "--cert-check-interval", "30m"}, "--cert-check-interval 30m0s must be positive and at most a third of --cert-validity 1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := runServeCommand(t, tt.args...); r.code != ExitBadUsage || !strings.Contains(r.errOut, tt.want) {
				t.Fatalf("want exit 2 saying %q\n%s", tt.want, r)
			}
		})
	}
}

// Self-managed certificates need no --cert-dir; outside a cluster they need
// the namespace of their Secret.
func TestSelfManagedWithoutCertDir(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	r := runServeCommand(t, "--cert-mode", "self-managed", "--cert-validity", "1h", "--cert-check-interval", "10s")
	if strings.Contains(r.errOut, "--cert-dir") {
		t.Errorf("self-managed mode asked for --cert-dir:\n%s", r)
	}
	if r.code != ExitBadUsage || !strings.Contains(r.errOut, "--cert-namespace is required outside a cluster") {
		t.Errorf("want exit 2 asking for --cert-namespace\n%s", r)
	}
}
